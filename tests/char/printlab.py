"""A booted system with the printer and the spooler, for the printer tests and bin/bench print.

Runs in the test (or bench) process.  ``PrintRig`` wraps a ``System`` booted
with etc/system.conf: it submits jobs through the spooler as bin/lp does
(userland/spool.py, user privileges), waits for them with deadlines, reads
the paper (run_dir/lpt1.out) and sets the board's printer knobs.  ``compare``
tells bytes printed twice from bytes never printed.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from minikern import boardctl, cli, params
from minikern import rsctl as ctl
from minikern.boot import System
from minikern.const import RsReq
from minikern.deadline import wait_for
from minikern.ipc import Connection
from tests.conftest import BOOT_DEADLINE
from tests.net import lab
from userland import spool

PAPER = params.LPT1_PAPER
DRIVER = "printer"


class PrintRig:
    def __init__(self, system: System) -> None:
        self.system = system
        self.run_dir = system.run_dir
        self._conn: Connection | None = None

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = cli.operator_connection(self.run_dir, "printtest", privileges="user")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def service(self, label: str) -> dict[str, Any]:
        for s in ctl.request(self.run_dir, RsReq.STATUS)["services"]:
            if s["label"] == label:
                return dict(s)
        raise AssertionError(f"RS does not know {label}")

    def paper(self) -> bytes:
        return (self.run_dir / PAPER).read_bytes()

    def submit(self, data: bytes, name: str = "job") -> int:
        return spool.submit(self.conn, name, data)

    def status(self) -> dict[str, Any]:
        return spool.status(self.conn)

    def job(self, job: int) -> dict[str, Any] | None:
        """The job's row (held or done), or None if the spooler forgot it."""
        s = self.status()
        return next((j for j in s["jobs"] + s["done"] if j["job"] == job), None)

    def wait_done(self, job: int, timeout: float) -> dict[str, Any]:
        def done() -> dict[str, Any]:
            row = self.job(job)
            return row if row is not None and row["state"] == "done" else {}
        return wait_for(done, timeout, f"job {job} printed", interval=0.05)

    def knob(self, name: str, value: Any) -> None:
        ctl_ = boardctl.BoardCtl(self.run_dir)
        try:
            ctl_.set(name, value)
        finally:
            ctl_.sock.close()


def console(system: System) -> str:
    path = system.run_dir / params.CONSOLE_LOG
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@contextlib.contextmanager
def booted(work: Path) -> Iterator[PrintRig]:
    """etc/system.conf booted in ``work/run``; halted however the body ends."""
    system = System(work / "run", cli.REPO_ROOT / "etc" / "system.conf", nic="none")
    rig = PrintRig(system)
    try:
        if not system.wait_ready(timeout=BOOT_DEADLINE):
            raise RuntimeError(f"the system did not come up:\n{console(system)}")
        if bad := system.wait_services(timeout=BOOT_DEADLINE):
            raise RuntimeError(f"services not up: {[s['label'] for s in bad]}\n{console(system)}")
        wait_for(lambda: rig.status()["printer"]["state"] == "idle", 30, "the spooler ready",
                 interval=0.05)
        yield rig
    finally:
        rig.close()
        system.halt()


@contextlib.contextmanager
def killing(rig: PrintRig, on: bool, interval: float) -> Iterator[lab.Injector | None]:
    """SIGKILL the printer driver every ``interval`` for the body (nothing when ``on`` is False)."""
    if not on:
        yield None
        return
    inj = lab.Injector(rig, "sigkill", interval, label=DRIVER)  # type: ignore[arg-type]
    inj.start()
    try:
        yield inj
    finally:
        inj.stop()


def compare(job: bytes, paper: bytes, probe: int = 32) -> tuple[int, int]:
    """(duplicated, lost): bytes on paper that repeat (or are not in) the job, and job bytes
    never printed.  Walks both in order; at a difference it finds where the paper goes on in
    the job (``probe`` bytes looked up; random data makes that exact): back is a repeat,
    ahead a loss."""
    i = p = duplicated = lost = 0
    block = 4096
    while i < len(job) and p < len(paper):
        if job[i:i + block] == paper[p:p + block]:
            step = min(block, len(job) - i, len(paper) - p)
            i, p = i + step, p + step
            continue
        if job[i] == paper[p]:
            i, p = i + 1, p + 1
            continue
        needle = paper[p:p + probe]
        ahead = job.find(needle, i)
        back = job.rfind(needle, 0, i + len(needle) - 1)
        if back >= 0 and (ahead < 0 or i - back <= ahead - i):
            duplicated += i - back
            i = back
        elif ahead >= 0:
            lost += ahead - i
            i = ahead
        else:
            duplicated += 1  # a byte that is not the job's at all
            p += 1
    return duplicated + len(paper) - p, lost + len(job) - i
