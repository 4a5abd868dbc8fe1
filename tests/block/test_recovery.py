"""Transparent recovery (docs/PROTOCOL.md section 19): a client writing and reading through
minikern/bdev.py sees neither at_wini's SIGKILLs nor its hang: every byte read back is the
byte written, no request fails, and the client took over each new driver once."""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from minikern.commands import crash
from minikern.const import Err
from minikern.deadline import wait_for
from tests.block import client, rig
from tests.conftest import SystemUnderTest
from tests.services.rs_helpers import events, service

pytestmark = pytest.mark.timeout(300)
FAULTS = ["kill", "kill", "kill", "hang", "kill", "kill"]
INTERVAL = 1.0  # seconds between a new driver being up and the next fault
RUN_BYTES = 4 << 20


class Injector(threading.Thread):
    """Inject each fault into the live at_wini, each once its predecessor's successor is up."""

    def __init__(self, s: SystemUnderTest, faults: list[str]) -> None:
        super().__init__(name="inject-at_wini", daemon=True)
        self.s, self.faults = s, faults
        self.pids: list[int] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            for fault in self.faults:
                if self.stopping.wait(INTERVAL):
                    return
                pid = rig.at_wini_pid(self.s)
                if fault == "kill":
                    os.kill(pid, signal.SIGKILL)
                else:
                    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                        status = crash.main(["--run-dir", str(self.s.run_dir), "at_wini", fault])
                    assert status == 0, f"bin/crash at_wini {fault} exited {status}"
                self.pids.append(pid)
                wait_for(functools.partial(self.replaced, pid), 30, f"at_wini back after {pid}")
        except Exception as e:  # noqa: BLE001 (reported by the test)
            self.errors.append(f"{type(e).__name__}: {e}")

    def replaced(self, pid: int) -> bool:
        svc = service(self.s, "at_wini")
        return bool(svc["state"] == "up" and svc["pid"] != pid)


@pytest.mark.parametrize("mode, faults, run_bytes", [
    ("dma", FAULTS, RUN_BYTES),
    ("pio", ["kill", "kill", "kill"], 256 * 1024),  # PIO: a sector per interrupt, and slow
])
def test_writes_and_reads_survive_driver_kills_and_a_hang(
        make_system: Callable[..., SystemUnderTest], tmp_path: Path, mode: str,
        faults: list[str], run_bytes: int) -> None:
    disk = rig.make_disk(tmp_path / "disk.img", 64 << 20)
    s = rig.boot_disk(make_system, disk, pio=mode == "pio")
    inj = Injector(s, faults)
    inj.start()
    runs: list[dict[str, Any]] = []
    try:
        while inj.is_alive() or not runs:
            i = len(runs)
            r = rig.ask(s, client.REQ_RUN, label="at_wini", minor=0, pos=(i % 12) * run_bytes,
                        bytes=run_bytes, seed=i, chunk=1 << 20)
            assert r.type == Err.OK, r
            assert r["written_sha256"] == r["read_sha256"], (i, r)
            runs.append(r.fields)
            assert len(runs) < 500, "the injector never finished"
        last = rig.ask(s, client.REQ_RUN, label="at_wini", minor=0, pos=0, bytes=run_bytes,
                       seed=1000)
        assert last.type == Err.OK and last["written_sha256"] == last["read_sha256"], last
    finally:
        inj.stopping.set()
        inj.join(60)

    assert not inj.errors, inj.errors
    assert len(inj.pids) == len(faults)
    # The client adopted every new driver exactly once, and said nothing about any of it.
    assert last["driver_restarts_seen"] == len(faults), last
    assert last["retries"] >= len(faults)
    crashes = events(s, "crash", "at_wini")
    assert sorted(e["pid"] for e in crashes) == sorted(inj.pids)
    assert any(e["reason"] == "heartbeat" for e in crashes) == ("hang" in faults), crashes
