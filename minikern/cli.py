"""The frame every bin/ command shares; runs in the operator's shell, never in the system.

A command is a module with a docstring and a ``main(argv)``; ``Command`` gives
it the rest, the same for all of them:

- ``--help`` is the module docstring (first line, then the rest as written);
- ``--run-dir`` names the system (default /tmp/minikern-<uid>, or
  $MINIKERN_RUN_DIR; one that is a symlink or another user's is refused,
  exit 1: minikern/rundir.py), and ``--json`` is offered where a machine reads the answer;
- exit status 0 done, 1 failed or refused, 2 not attempted: a usage error
  (argparse's own code) or no system running in the run directory, said in the
  one message ``no system is running in DIR``;
- a system error (the kernel gone mid-command, a refused IPC call) is one line
  on stderr, ``PROG: what failed``, never a traceback: the codes a person
  meets (EDEADSRCDST, ECONNRESET, ...) in words with their name (``MEANINGS``),
  and the system stopping under a command (the kernel answers its tools
  EDEADSRCDST as it shuts down) as ``the system stopped``; Ctrl-C ends quietly.

bin/_launch maps each bin/ name to its module's ``main``.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from minikern import ipc

REPO_ROOT = Path(__file__).resolve().parents[1]

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and failed, or the system refused it
EXIT_NOT_RUN = 2  # a usage error (as argparse exits) or no system to run it against
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a command ended by SIGINT

Body = Callable[[argparse.Namespace], int]


class Command(argparse.ArgumentParser):
    """An argument parser with the commands' shared options, and ``run`` to call the body.

    ``needs_system``: the body talks to a running system, so without one the command
    exits 2 with the shared message before the body runs.  ``failures``: exception
    types (besides ``ipc.IpcError``) that mean "the system refused", printed as one line.
    """

    def __init__(self, prog: str, doc: str | None, *, json: str | None = None,
                 run_dir: bool = True, needs_system: bool = True,
                 failures: tuple[type[Exception], ...] = ()) -> None:
        self.needs_system = needs_system and run_dir
        self.has_run_dir = run_dir
        first, _, rest = (doc or prog).strip().partition("\n")
        status = ("exit status: 0 done, 1 failed or refused, 2 usage error"
                  + (" or no system running in the run directory" if self.needs_system else ""))
        epilog = [text for text in (textwrap.dedent(rest).strip("\n"), status) if text]
        super().__init__(prog=prog, description=first, epilog="\n\n".join(epilog),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
        if run_dir:
            add_run_dir(self)
        if json is not None:
            self.add_argument("--json", action="store_true", help=json)
        self.failures = failures

    def add_subparsers(self, **kwargs: Any) -> Any:
        # Subcommands are plain parsers: the shared options and the status belong to the command.
        kwargs.setdefault("parser_class", argparse.ArgumentParser)
        return super().add_subparsers(**kwargs)

    def run(self, argv: list[str] | None, body: Body) -> int:
        """Parse ``argv``, check for the system, run ``body``; the command's exit status."""
        return self.call(self.parse_args(argv), body)

    def call(self, args: argparse.Namespace, body: Body) -> int:
        """``run`` for arguments already parsed (and checked further by the command)."""
        from minikern import rundir
        try:
            if self.has_run_dir:
                rundir.check_reader(args.run_dir)  # never read what another user prepared
        except rundir.RunDirError as e:
            return self.fail(str(e))
        if self.needs_system and kernel_pid(args.run_dir) is None:
            return no_system(self.prog, args.run_dir)
        from minikern import ipc  # here, not at the top: `--help` needs no ZeroMQ
        refused: tuple[type[Exception], ...] = (ipc.IpcError, *self.failures)
        try:
            return body(args)
        except ipc.KernelGone:
            return self.fail("the system stopped (its kernel is gone)")
        except BrokenPipeError:  # the reader went away (`bin/ps | head -1`): not an error to show
            # (caught before ``refused``, which may name OSError, of which this is one)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_FAILED
        except refused as e:
            return self.fail(explain(e))
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED

    def fail(self, why: str) -> int:
        """Say on stderr, in one line, why the command failed; its exit status (1)."""
        return fail(self.prog, why)


# What an error code means to the person at the shell (MINIX's strerror, in the words of
# this system), for the codes a command or user program meets from another process.
MEANINGS: dict[str, str] = {
    "EDEADSRCDST": "the process at the other end died or was replaced while the call was "
                   "under way",
    "ECONNRESET": "the connection was reset by the peer (it sent a RST: its end closed "
                  "abruptly, or its TCP/IP stack restarted and forgot the connection)",
    "ECONNREFUSED": "the connection was refused (nothing listens on that port)",
    "ETIMEDOUT": "the peer stopped answering (the connection timed out)",
    "ENOTCONN": "the socket is not connected",
    "EPIPE": "the connection is closed for sending",
    "EADDRINUSE": "the port is in use",
    "ECALLDENIED": "the kernel refused the call: the caller's privileges do not allow it",
    "ETRAPDENIED": "the kernel refused the trap: the caller's privileges do not allow it",
    "ELOCKED": "the call would deadlock (the other end is sending to the caller)",
    "ENOTREADY": "the other end is not ready yet",
}


def explain(e: Exception) -> str:
    """One line for a refused call: ``what: meaning (ENAME)`` when the code has a meaning
    above, else the exception's own text (RS's refusals carry RS's reason already)."""
    text = str(e)
    from minikern.const import err_name
    code = getattr(e, "code", None)
    name = err_name(code) if isinstance(code, int) else ""
    if name not in MEANINGS or not text.endswith(name):
        return text
    what = text[:-len(name)].rstrip(": ")
    return f"{what}: {MEANINGS[name]} ({name})" if what else f"{MEANINGS[name]} ({name})"


def fail(prog: str, why: str) -> int:
    """``PROG: why`` on stderr, one line; the exit status of a failed command (1)."""
    print(f"{prog}: {why}", file=sys.stderr)
    return EXIT_FAILED


def add_run_dir(parser: argparse.ArgumentParser) -> None:
    from minikern import params
    parser.add_argument("--run-dir", default=params.DEFAULT_RUN_DIR,
                        help="the system's run directory (default: %(default)s, "
                             "or $MINIKERN_RUN_DIR)")


def kernel_pid(run_dir: str | Path) -> int | None:
    """The pid of the kernel running in ``run_dir``, or None if none is alive (a pid file
    naming a process that is not this run directory's kernel names none: rundir.py)."""
    from minikern import rundir
    try:
        return rundir.kernel_pid(run_dir)
    except rundir.RunDirError:
        return None


def no_system(prog: str, run_dir: str | Path) -> int:
    """The one message of every command run where no system is; its exit status (2)."""
    print(f"{prog}: no system is running in {run_dir}", file=sys.stderr)
    return EXIT_NOT_RUN


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


@contextmanager
def connected(run_dir: str | Path, label: str,
              privileges: str = "operator") -> Iterator[ipc.Connection]:
    """``operator_connection`` for the length of a ``with`` block, closed however it ends."""
    conn = operator_connection(run_dir, label, privileges)
    try:
        yield conn
    except Exception as e:
        # The kernel answers a shutting-down system's tools EDEADSRCDST and forgets them;
        # that is the system stopping, not the server at the other end dying.
        from minikern.const import Err
        if getattr(e, "code", None) == Err.EDEADSRCDST and detached(conn):
            from minikern.ipc import KernelGone
            raise KernelGone() from None
        raise
    finally:
        conn.close()


def detached(conn: ipc.Connection) -> bool:
    """True if the kernel no longer knows ``conn`` (it shut down, or is shutting down).

    The probe is a SENDREC to oneself: an admitted process gets ELOCKED at once; the kernel
    does not answer one it has detached, and the wait ends when it is gone (KernelGone)."""
    from minikern.ipc import IpcError, KernelGone
    from minikern.proto import Message
    try:
        conn.sendrec(conn.endpoint, Message(0))
    except KernelGone:
        return True
    except IpcError:
        return False
    return False


def _stop(signo: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signo}")


def interruptible() -> None:
    """Ctrl-C, ``kill -INT`` and ``kill -TERM`` stop a long tool (bin/experiment, bin/bench)
    cleanly, its ``finally`` blocks run (its systems halted, its load processes and
    namespaces gone), also when a shell started it in the background, which makes its jobs
    ignore SIGINT.  Only in the main thread (a Dask worker runs trials in a thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop)
