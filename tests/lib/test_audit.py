"""The audit stays on for the whole boot (minikern/events.py; README "Where the logs are"):
denied events are rate-limited per caller and window, each suppressed run summed up in a
``denied-suppressed`` event, and events.log rotates by size into events.log.1 ... .N, which
readers (read_all, Reader, bin/logs) take in file order, each record once."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from minikern import cli, events, params
from minikern.const import KCall
from minikern.ipc import IpcError
from tests.conftest import SystemUnderTest, wait_for

pytestmark = pytest.mark.timeout(60)
OLD_CAP = 100_000  # denied events a process wrote per boot before the rate limit; then silence


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t


class Recorder:
    """An EventLog's ``write`` that keeps the records in memory."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, kind: str, label: str, **fields: Any) -> dict[str, Any]:
        rec = {"kind": kind, "label": label, **fields}
        self.records.append(rec)
        return rec


def deny(audit: events.Audit, caller: int, n: int) -> None:
    for _ in range(n):
        audit.denied(f"p{caller}", caller=caller, call="SEND", target=1, error="ECALLDENIED")


def test_denials_past_the_old_cap_are_still_recorded() -> None:
    clock, log = Clock(), Recorder()
    audit = events.Audit(log, clock.now)
    windows = OLD_CAP // params.DENIED_PER_WINDOW + 2
    for _ in range(windows):  # more denials in all than the old per-boot cap allowed
        deny(audit, 5, params.DENIED_PER_WINDOW)
        clock.t += params.DENIED_WINDOW
    deny(audit, 5, 1)
    assert sum(r["kind"] == "denied" for r in log.records) == windows * params.DENIED_PER_WINDOW + 1
    assert all(r["kind"] == "denied" for r in log.records)  # nothing suppressed below the rate


def test_a_flood_is_recorded_up_to_the_rate_and_summed_up() -> None:
    clock, log = Clock(), Recorder()
    audit = events.Audit(log, clock.now)
    deny(audit, 5, 3 * params.DENIED_PER_WINDOW)
    deny(audit, 6, 2)  # another caller keeps its own allowance
    assert [r["caller"] for r in log.records].count(5) == params.DENIED_PER_WINDOW
    assert [r["caller"] for r in log.records].count(6) == 2
    clock.t += params.DENIED_WINDOW
    deny(audit, 6, 1)  # the next window: the last one's suppressed calls are summed up first
    summary = [r for r in log.records if r["kind"] == "denied-suppressed"]
    assert summary == [{"kind": "denied-suppressed", "label": "p5", "caller": 5,
                        "suppressed": 2 * params.DENIED_PER_WINDOW,
                        "window_s": params.DENIED_WINDOW}]
    assert log.records[-1]["kind"] == "denied" and log.records[-1]["caller"] == 6
    deny(audit, 5, 1)
    audit.flush()
    assert log.records[-1]["kind"] == "denied" and log.records[-1]["caller"] == 5
    deny(audit, 5, params.DENIED_PER_WINDOW + 4)
    audit.flush()  # at the writer's end, a run still open is summed up too
    assert log.records[-1]["kind"] == "denied-suppressed" and log.records[-1]["suppressed"] == 4
    for rec in log.records:
        rec.update(ts=1.0, boot="b", source="kernel")
        assert events.validate(rec) == []


def test_the_event_log_rotates_and_keeps_n_files(tmp_path: Path) -> None:
    first = events.EventLog(tmp_path, "kernel", boot="b", max_bytes=2000, keep=3)
    second = events.EventLog(tmp_path, "hw", boot="b", max_bytes=2000, keep=3)
    follower = events.Reader(tmp_path / params.EVENT_LOG, keep=3)
    followed: list[int] = []
    for i in range(400):
        (first if i % 2 else second).write("denied", "x", caller=i, call="SEND", target=1,
                                            error="ECALLDENIED")
        if i % 7 == 0:
            followed += [r["caller"] for r in follower.read_new()]
    followed += [r["caller"] for r in follower.read_new()]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [params.EVENT_LOG] + [f"{params.EVENT_LOG}.{n}" for n in (1, 2, 3)]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 2000 + 200  # the limit and at most a record past it
    kept = [r["caller"] for r in events.read_all(tmp_path, keep=3)]
    assert kept == list(range(400 - len(kept), 400))  # the newest records, none lost, in order
    assert followed == list(range(400))  # a follower read each record once, across rotations


def test_logs_reads_the_rotated_files_in_time_order(tmp_path: Path) -> None:
    log = events.EventLog(tmp_path, "kernel", boot="b", max_bytes=1000)
    log.write("boot", "kernel", pid=1, protocol=1)
    for i in range(60):
        log.write("denied", "x", caller=i, call="SEND", target=1, error="ECALLDENIED")
    assert (tmp_path / f"{params.EVENT_LOG}.1").exists()
    r = subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "logs"), "--run-dir",
                        str(tmp_path), "--json", "--audit"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    callers = [json.loads(line)["caller"] for line in r.stdout.splitlines()]
    assert callers == list(range(60 - len(callers), 60)) and len(callers) > 30


def test_a_booted_kernel_rate_limits_and_counts_every_denial(system: SystemUnderTest) -> None:
    nc = system.connect("nc", "user")
    flood = params.DENIED_PER_WINDOW + 50
    for _ in range(flood):
        with pytest.raises(IpcError):
            nc.kcall(KCall.GETINFO)  # a user program may not call the kernel

    def summed() -> list[dict[str, Any]]:
        return [e for e in events.read_all(system.run_dir) if e["label"] == "nc"]

    def closed() -> bool:  # a later denial opens a new window: the flood's is summed up
        with pytest.raises(IpcError):
            nc.kcall(KCall.GETINFO)
        return any(e["kind"] == "denied-suppressed" for e in summed())

    wait_for(closed, timeout=10 * params.DENIED_WINDOW, what="the flood's summary")
    later = summed()
    recorded = sum(e["kind"] == "denied" for e in later)
    suppressed = sum(e["suppressed"] for e in later if e["kind"] == "denied-suppressed")
    calls = system.info()["counters"]["denied_ECALLDENIED"]
    assert recorded < calls and recorded + suppressed <= calls  # the open window: unsummed yet
    assert suppressed >= flood - 2 * params.DENIED_PER_WINDOW
