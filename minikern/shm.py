"""Names of the shared memory segments a system's drivers keep in ``params.SHM_DIR``.

Runs in the memory driver (drivers/memory/segment.py makes and maps them) and in
bin/halt (``remove_all`` once every process of the system is gone), so the
naming rule has one home.  A name is ``minikern-<uid>-<run dir tag>-<label>-<random>``:
the run directory's tag lets halt remove that system's segments and no other's.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from minikern import params

NAME = re.compile(r"minikern-\d+-[0-9a-f]{12}-[A-Za-z0-9_.-]{1,32}-[0-9a-f]{16}")


def shm_dir() -> Path:
    return Path(params.SHM_DIR)


def run_dir_tag(run_dir: Path) -> str:
    """Twelve hex digits naming the run directory (its real path)."""
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]


def prefix(run_dir: Path) -> str:
    return f"minikern-{os.getuid()}-{run_dir_tag(run_dir)}-"


def is_ours(run_dir: Path, name: str) -> bool:
    """A segment name of this user and this run directory; for root, also one a component
    made under its own uid (booted as root, minikern/domain.py)."""
    if NAME.fullmatch(name) is None:
        return False
    uid, tag = int(name.split("-")[1]), name.split("-")[2]
    domain = os.getuid() == 0 and params.DOMAIN_UID_FIRST <= uid <= params.DOMAIN_UID_LAST
    return (uid == os.getuid() or domain) and tag == run_dir_tag(run_dir)


def remove_named(run_dir: Path, name: str) -> bool:
    """Unlink one segment, if its name is one of this run directory's (else leave it)."""
    if not is_ours(run_dir, name):
        return False
    try:
        (shm_dir() / name).unlink()
    except OSError:
        return False
    return True


def segments(run_dir: Path) -> list[str]:
    """The names of this run directory's segments that exist now."""
    try:
        return sorted(p.name for p in shm_dir().iterdir() if is_ours(run_dir, p.name))
    except OSError:
        return []


def remove_all(run_dir: Path) -> list[str]:
    """At halt, once every process is gone: unlink this run directory's segments."""
    return [name for name in segments(run_dir) if remove_named(run_dir, name)]
