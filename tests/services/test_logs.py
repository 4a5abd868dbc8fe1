"""bin/logs over a stream written by hand: time order, dates, sources, a marker per boot,
the filters, -f from the end, and what it does with lines it cannot trust."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from minikern import cli, params
from minikern.commands import logs
from minikern.event_kinds import SCHEMAS
from minikern.events import validate
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
DATE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")


def ev(ts: float, boot: str, source: str, kind: str, label: str, **fields: Any) -> dict[str, Any]:
    return {"ts": ts, "boot": boot, "source": source, "kind": kind, "label": label, **fields}


def write(run_dir: Path, *recs: dict[str, Any]) -> None:
    with open(run_dir / params.EVENT_LOG, "a") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")


def two_boots(run_dir: Path) -> None:
    """Boot a1 ends without a halt (its kernel was killed); in boot b2 INET's driver-gone
    was appended before RS's crash although it happened after it."""
    write(run_dir,
          ev(T0, "a1", "kernel", "boot", "kernel", pid=10, protocol=1),
          ev(T0 + 1, "a1", "rs", "up", "hello", pid=11, endpoint=9, incarnation=0),
          ev(T0 + 100, "b2", "kernel", "boot", "kernel", pid=20, protocol=1),
          ev(T0 + 101, "b2", "rs", "up", "rtl8139", pid=21, endpoint=11, incarnation=0),
          ev(T0 + 102.5, "b2", "inet", "driver-gone", "rtl8139", endpoint=11, reason="DS",
             kept_frames=2),
          ev(T0 + 102, "b2", "rs", "crash", "rtl8139", reason="signal", action="restart",
             pid=21, signal="SIGKILL"),
          ev(T0 + 103, "b2", "kernel", "denied", "user", caller=5, call="SEND", target=9,
             error="ECALLDENIED"),
          ev(T0 + 104, "b2", "kernel", "halt", "kernel", status="clean", uptime_s=4.0))


def run(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "logs"), "--run-dir",
                           str(run_dir), *args], capture_output=True, text=True, timeout=30)


def test_one_stream_in_time_order_with_dates_sources_and_a_marker_per_boot(
        tmp_path: Path) -> None:
    two_boots(tmp_path)
    r = run(tmp_path, "--utc")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("2023-11-14 22:13:20.000 kernel:") and "boot" in out[0].split()
    assert "id=a1" in out[0].split()
    assert out[2] == "-- boot a1 ended without a halt marker (its kernel was killed) --"
    rows = [ln for ln in out if DATE.match(ln)]
    assert [ln.split()[2:4] for ln in rows] == [
        ["kernel:", "boot"], ["rs:", "up"], ["kernel:", "boot"], ["rs:", "up"],
        ["rs:", "crash"], ["inet:", "driver-gone"], ["kernel:", "denied"], ["kernel:", "halt"]]
    assert "reason=signal" in rows[4].split() and "kept_frames=2" in rows[5].split()


def test_the_filters_and_json(tmp_path: Path) -> None:
    two_boots(tmp_path)
    main = [json.loads(x) for x in run(tmp_path, "--json").stdout.splitlines()]
    assert [e["ts"] for e in main] == sorted(e["ts"] for e in main)
    assert all(validate(e) == [] for e in main)  # the records, exactly as written
    only = [json.loads(x) for x in run(tmp_path, "--json", "--kind", "denied").stdout.splitlines()]
    assert [(e["kind"], e["call"]) for e in only] == [("denied", "SEND")]
    text = run(tmp_path, "--label", "rtl8139").stdout.splitlines()
    assert [ln.split()[3] for ln in text if DATE.match(ln)] == ["boot", "boot", "up", "crash", "driver-gone",
                                             "halt"]  # the boots' frame stays
    last = [json.loads(x)["kind"] for x in run(tmp_path, "--json", "-n", "2").stdout.splitlines()]
    assert last == ["denied", "halt"]
    assert run(tmp_path, "--json", "-n", "0").stdout == ""
    since = run(tmp_path, "--json", "--since", f"@{T0 + 102}").stdout.splitlines()
    assert [json.loads(x)["kind"] for x in since] == ["crash", "driver-gone", "denied", "halt"]
    this = [json.loads(x)["boot"] for x in run(tmp_path, "--json", "-b").stdout.splitlines()]
    assert set(this) == {"b2"} and len(this) == 6
    before = run(tmp_path, "--json", "--boot", "-1").stdout.splitlines()
    assert [json.loads(x)["kind"] for x in before] == ["boot", "up"]
    assert run(tmp_path, "--boot", "zz").returncode == 2
    assert run(tmp_path, "-n", "-3").returncode == 2


def test_since_reads_relative_clock_and_calendar_times() -> None:
    now = T0
    assert logs.parse_since("-5m", now) == now - 300
    assert logs.parse_since("2h ago", now) == now - 7200
    assert logs.parse_since("@12.5", now) == 12.5
    assert logs.parse_since("2023-11-14 10:00") == logs.parse_since("2023-11-14T10:00:00")
    with pytest.raises(Exception, match="not a time"):
        logs.parse_since("teatime", now)


def test_follow_holds_an_event_until_a_racing_writer_s_earlier_one_is_in(tmp_path: Path) -> None:
    clock = [T0 + 10]
    f = logs.Follower(tmp_path / params.EVENT_LOG, settle=0.2, clock=lambda: clock[0])
    write(tmp_path, ev(T0 + 10, "b", "rs", "crash", "x", reason="exit", action="restart"))
    assert f.poll() == []  # too fresh: another writer may still append an earlier one
    write(tmp_path, ev(T0 + 9.95, "b", "inet", "driver-gone", "x", endpoint=1, reason="r",
                       kept_frames=0))
    clock[0] += 0.3
    assert [e["kind"] for e in f.poll()] == ["driver-gone", "crash"]
    write(tmp_path, ev(T0 + 10.25, "b", "rs", "restart", "x"))
    assert [e["kind"] for e in f.poll(flush=True)] == ["restart"]


def test_follow_starts_at_the_end_like_journalctl(tmp_path: Path) -> None:
    write(tmp_path, *(ev(T0 + i, "b", "rs", "up", f"s{i}", pid=i, endpoint=i, incarnation=0)
                      for i in range(30)))
    p = subprocess.Popen([sys.executable, str(cli.REPO_ROOT / "bin" / "logs"), "--run-dir",
                          str(tmp_path), "-f", "--json"], stdout=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert p.stdout is not None
        lines.extend(p.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: len(lines) >= 10, what="the last ten events")
        write(tmp_path, ev(T0 + 99, "b", "rs", "down", "s1", pid=1, by="operator"))
        wait_for(lambda: len(lines) >= 11, what="the new event")
        assert [json.loads(x)["label"] for x in lines] == [f"s{i}" for i in range(20, 30)] + ["s1"]
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        reader.join(5)
        assert p.stdout is not None
        p.stdout.close()


def test_lines_it_cannot_trust_are_skipped_or_defused(tmp_path: Path) -> None:
    write(tmp_path, ev(T0, "b", "rs\x1b[31m", "fatal", "\x1b]0;owned\x07", detail="\x1b[2J"),
          ev(1e300, "b", "rs", "fatal", "rs", detail="from the far future"))
    with open(tmp_path / params.EVENT_LOG, "ab") as f:
        f.write(b"\xff\xfe garbage\n[]\n")
    r = run(tmp_path)
    assert r.returncode == 0 and "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "from the far future" in r.stdout
    assert "2 line(s)" in r.stderr and "not events" in r.stderr


def test_schema_prints_every_kind(tmp_path: Path) -> None:
    schemas = json.loads(run(tmp_path, "--schema").stdout)
    assert set(schemas) == set(SCHEMAS) and {"boot", "halt", "crash", "denied"} <= set(schemas)
    assert schemas["link"]["properties"]["state"]["enum"] == ["up", "down"]


def test_without_an_event_log_it_says_so(tmp_path: Path) -> None:
    r = run(tmp_path)
    assert r.returncode == 2 and f"no event log in {tmp_path}" in r.stderr


def test_a_reader_that_goes_away_ends_it_without_a_word(tmp_path: Path) -> None:
    """`bin/logs | head -1`: the closed pipe is the reader's choice, not an error to report
    (as for every command: no traceback, no errno line); the status says not all was shown."""
    write(tmp_path, *(ev(T0 + i, "b", "rs", "up", f"s{i}", pid=i, endpoint=i, incarnation=0)
                      for i in range(3000)))  # more than a pipe holds, so a write must fail
    p = subprocess.Popen([sys.executable, str(cli.REPO_ROOT / "bin" / "logs"), "--run-dir",
                          str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    try:
        assert DATE.match(p.stdout.readline().decode())  # one event, then the reader leaves
        p.stdout.close()
        assert p.wait(30) == 1
        assert p.stderr.read() == b""
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()


def test_help_says_the_exit_statuses(tmp_path: Path) -> None:
    r = run(tmp_path, "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: logs ")
    assert "exit status: 0 done, 1 failed" in r.stdout and "exits 2" in r.stdout
