"""A benchmark's private system: etc/system.conf in a fresh folder, halted and removed after."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from minikern import cli
from minikern.boot import System


@contextlib.contextmanager
def standard_system(prefix: str) -> Iterator[System]:
    """etc/system.conf booted (no NIC wire) in a new temporary folder named ``prefix...``,
    once every service is up and settled; halted and its folder removed however the body
    ends."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    system = System(tmp / "run", cli.REPO_ROOT / "etc" / "system.conf", nic="none")
    try:
        if not system.wait_ready() or system.wait_services():
            raise RuntimeError("benchmark system did not come up")
        yield system
    finally:
        system.halt()
        shutil.rmtree(tmp, ignore_errors=True)
