"""bin/top: rates over the time between two samples, the batch text and the JSON snapshots
against a booted system, and the full-screen view on a terminal (q quits, the terminal is
left as it was)."""
from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
from collections.abc import Callable
from typing import Any

import pytest

from minikern import cli
from minikern.commands import ps, top
from minikern.const import RS, SYSTEM, RsReq
from minikern.proto import Message
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import boot_rs, service, wait_event, wait_state

pytestmark = pytest.mark.timeout(60)
Make = Callable[..., SystemUnderTest]
TOP = cli.REPO_ROOT / "bin" / "top"
LABELS = {"kernel", "rs", "ds", "hello"}


def run(s: SystemUnderTest, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOP), "--run-dir", str(s.run_dir), *args],
                          capture_output=True, text=True, timeout=30)


def row(label: str, pid: int | None, endpoint: int | None, cpu_s: float | None,
        received: int | None, uptime: float | None = 10.0, **more: Any) -> dict[str, Any]:
    return {"label": label, "pid": pid, "endpoint": endpoint, "cpu_s": cpu_s, "cpu": 1.5,
            "received": received, "uptime": uptime, "state": "up", **more}


def test_rates_are_over_the_interval_and_a_new_process_starts_from_its_life() -> None:
    meter = top.Meter()
    first = [row("kernel", 1, SYSTEM, 3.0, None), row("hello", 10, 9, 1.0, 40),
             row("nc", 11, 12, 0.5, 7, uptime=2.0)]
    snap = top.snapshot(first, meter, now=100.0, wall=1e9)
    assert snap["interval"] is None  # the first screen: each process's life so far
    assert [r["msgs_per_s"] for r in first] == [7.5, 4.0, 3.5]  # the kernel's: the sum
    assert first[1]["cpu"] == 1.5  # bin/ps's average since start, as it came
    assert (snap["msgs_per_s"], snap["states"]) == (7.5, {"up": 3})
    # Two seconds on: hello used 0.5 s of CPU and got 10 messages; nc was restarted (a new
    # pid and endpoint, its counter from 0); a service down has no rate at all.
    second = [row("kernel", 1, SYSTEM, 3.2, None), row("hello", 10, 9, 1.5, 50),
              row("nc", 13, 14, 0.1, 3, uptime=0.5),
              row("vfs", None, None, None, None, uptime=None, state="down")]
    snap = top.snapshot(second, meter, now=102.0, wall=1e9 + 2)
    assert snap["interval"] == 2.0
    assert [r["cpu"] for r in second] == [10.0, 25.0, 1.5, 1.5]
    assert [r["msgs_per_s"] for r in second] == [11.0, 5.0, 6.0, None]
    assert snap["states"] == {"up": 3, "down": 1}


def test_the_order_keeps_the_kernel_first() -> None:
    """The kernel is known by its endpoint: a user program may call itself "kernel"."""
    rows = [row("kernel", 1, SYSTEM, 0.0, None, rss_mb=30.0),
            row("b", 2, 3, 0.0, 0, rss_mb=50.0), row("a", 4, 5, 0.0, 0, rss_mb=40.0),
            row("kernel", 6, 7, 0.0, 0, rss_mb=60.0)]
    assert [r["pid"] for r in top.ordered(rows, "mem")] == [1, 6, 2, 4]
    assert [r["pid"] for r in top.ordered(rows, "label")] == [1, 4, 2, 6]
    assert [r["pid"] for r in top.ordered(rows, "table")] == [1, 2, 4, 6]


def test_messages_per_second_is_what_the_kernel_delivered(make_system: Make) -> None:
    """A user program's five SENDRECs to RS: five replies delivered to it, no more."""
    s = boot_rs(make_system)
    tool, nc = s.connect("top", "operator"), s.connect("nc", "user")
    for _ in range(3):  # before the first sample: in its total, not in the rate
        nc.sendrec(RS, Message(RsReq.STATUS))
    meter = top.Meter()
    before = {r["label"]: r for r in top.snapshot(ps.collect(tool), meter, 100.0, 0)["rows"]}
    assert before["nc"]["received"] == 3
    for _ in range(5):
        nc.sendrec(RS, Message(RsReq.STATUS))
    after = {r["label"]: r for r in top.snapshot(ps.collect(tool), meter, 102.0, 0)["rows"]}
    assert after["nc"]["received"] - before["nc"]["received"] == 5
    assert after["nc"]["msgs_per_s"] == 2.5


def screens(out: str) -> list[list[str]]:
    """The batch output cut into screens (each starting at its headline), as lines."""
    found: list[list[str]] = []
    for line in out.splitlines():
        if line.startswith("top - "):
            found.append([])
        found[-1].append(line)
    return found


def test_batch_mode_prints_n_plain_screens_with_every_component(make_system: Make) -> None:
    s = boot_rs(make_system, ds=True)
    r = run(s, "-b", "-n", "2", "-d", "0.2")
    assert r.returncode == 0, r.stderr
    assert "\033" not in r.stdout  # no terminal control
    shown = screens(r.stdout)
    assert len(shown) == 2
    for lines in shown:
        assert "4 processes: 4 up" in lines[0] and lines[1] == ""
        assert lines[2].split()[:4] == ["LABEL", "STATE", "PID", "INC"]
        table = {ln.split()[0]: ln.split() for ln in lines[3:] if ln}
        assert set(table) == LABELS
        assert table["hello"][1:3] == ["up", str(service(s, "hello")["pid"])]


def test_a_label_cannot_drive_the_terminal(make_system: Make) -> None:
    """A user program names its own label: its control characters are shown escaped."""
    s = boot_rs(make_system)
    s.connect("evil\033[2J", "user")
    r = run(s, "-b", "-n", "1")
    assert r.returncode == 0, r.stderr
    assert "\033" not in r.stdout and "evil\\x1b[2J" in r.stdout


def test_json_snapshot_has_the_documented_fields(make_system: Make) -> None:
    s = boot_rs(make_system, ds=True)
    wait_for(lambda: service(s, "hello")["heartbeat_ms"], what="a heartbeat's round trip")
    r = run(s, "--json", "-n", "2", "-d", "0.2")
    assert r.returncode == 0, r.stderr
    first, second = (json.loads(line) for line in r.stdout.splitlines())
    assert first["interval"] is None and second["interval"] > 0
    for snap in (first, second):
        assert set(snap) == {"ts", "interval", "uptime", "msgs_per_s", "states", "rows"}
        assert snap["states"] == {"up": 4} and snap["uptime"] > 0
        rows = {x["label"]: x for x in snap["rows"]}
        assert set(rows) == LABELS and snap["rows"][0]["label"] == "kernel"
        for x in rows.values():
            assert x["pid"] > 0 and x["cpu"] >= 0 and x["rss_mb"] > 0
            assert x["msgs_per_s"] >= 0
        assert rows["kernel"]["msgs_per_s"] == snap["msgs_per_s"] == round(
            sum(x["msgs_per_s"] for x in snap["rows"][1:]), 1)
        assert rows["hello"]["heartbeat_ms"] > 0 and rows["hello"]["ipc"] == "recv ANY"
        assert rows["hello"]["incarnation"] == 0
    assert len(run(s, "--json").stdout.splitlines()) == 1  # --json alone: one snapshot


def test_a_restart_shows_in_the_incarnation(make_system: Make) -> None:
    s = boot_rs(make_system)
    os.kill(service(s, "hello")["pid"], signal.SIGKILL)
    wait_event(s, "restart", "hello")
    new = wait_state(s, "hello", "up")["pid"]
    rows = {x["label"]: x for x in json.loads(run(s, "--json").stdout)["rows"]}
    assert (rows["hello"]["pid"], rows["hello"]["incarnation"]) == (new, 1)


def test_without_a_terminal_it_asks_for_batch_mode(make_system: Make) -> None:
    s = boot_rs(make_system)
    r = run(s)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "top: not a terminal: use -b for plain text, or --json\n"


def read_until(fd: int, seen: bytearray, what: bytes) -> None:
    def more() -> bool:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen.extend(os.read(fd, 65536))
            except OSError:  # the other end closed: all of it has been read
                pass
        return what in seen
    wait_for(more, 20, f"{what!r} on the terminal")


def test_on_a_terminal_it_redraws_in_place_and_q_restores_the_terminal(
        make_system: Make) -> None:
    s = boot_rs(make_system)
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen([sys.executable, str(TOP), "--run-dir", str(s.run_dir), "-d", "0.3"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    seen = bytearray()
    try:
        read_until(master, seen, b"hello")
        assert b"\033[?1049h" in seen  # the alternate screen: drawn in place
        del seen[:]
        read_until(master, seen, b"hello")  # redrawn, a second later
        os.write(master, b"c")  # sorted by CPU at once
        read_until(master, seen, b"sorted by cpu")
        os.write(master, b"q")
        assert proc.wait(20) == 0
        read_until(master, seen, b"\033[?1049l")  # the screen as it was
        assert termios.tcgetattr(slave) == before  # echo and line editing back
        assert b"Traceback" not in seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
