"""What every bin/ command shares: the run directory option, the venv, the operator connection."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minikern import ipc

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


def reexec_in_venv() -> None:
    """Run under the repo's virtual environment (made by `make boot`/`make test`) if not already."""
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])


def add_run_dir(parser: argparse.ArgumentParser) -> None:
    from minikern import params
    parser.add_argument("--run-dir", default=params.DEFAULT_RUN_DIR,
                        help="the system's run directory (default: %(default)s, "
                             "or $MINIKERN_RUN_DIR)")


def kernel_pid(run_dir: str | Path) -> int | None:
    """The pid of the kernel running in ``run_dir``, or None if none is alive."""
    from minikern import params
    try:
        pid = int((Path(run_dir) / params.KERNEL_PIDFILE).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def require_system(run_dir: str | Path, prog: str) -> None:
    """Exit 2 with a clear message unless a system runs in ``run_dir`` (the commands' rule)."""
    if kernel_pid(run_dir) is None:
        print(f"{prog}: no system is running in {run_dir}", file=sys.stderr)
        raise SystemExit(2)


def operator_connection(run_dir: str | Path, label: str = "operator",
                        privileges: str = "operator") -> ipc.Connection:
    """Connect to the running system from the shell, with the privileges system.conf gives
    the service ``privileges`` (``operator`` for tools; ``nc`` etc. for user programs)."""
    from minikern import sysconf
    conf_path = Path(run_dir) / "system.conf"  # the configuration bin/boot booted with
    conf = sysconf.load(conf_path if conf_path.exists() else REPO_ROOT / "etc" / "system.conf")
    if privileges not in conf.services:
        raise SystemExit(f"system.conf has no service entry {privileges!r}")
    from minikern.ipc import Connection
    return Connection.operator(run_dir, label, conf.services[privileges].priv())
