"""bin/logs beyond the event stream's own filters: --reason and --audit over a booted system
with crashes injected and a call refused, --console (console.log, -n, -f), --alerts (the
records rs.alert writes), and the options that do not apply to those files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from minikern import cli, params
from minikern.const import KCall
from minikern.ipc import IpcError
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import boot_rs, service, wait_event, wait_state

pytestmark = pytest.mark.timeout(60)
Make = Callable[..., SystemUnderTest]
LOGS = cli.REPO_ROOT / "bin" / "logs"


def logs(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LOGS), "--run-dir", str(run_dir), *args],
                          capture_output=True, text=True, timeout=30)


def records(run_dir: Path, *args: str) -> list[dict[str, object]]:
    r = logs(run_dir, "--json", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_reason_audit_and_console_over_a_system_with_crashes(make_system: Make) -> None:
    s = boot_rs(make_system, hello="period 1s; backoff off;")
    first = service(s, "hello")["pid"]
    r = subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "crash"), "--run-dir",
                        str(s.run_dir), "hello", "exception"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    wait_event(s, "restart", "hello")
    second = wait_state(s, "hello", "up")["pid"]
    os.kill(second, signal.SIGKILL)
    wait_event(s, "restart", "hello", count=2)
    nc = s.connect("nc", "user")
    with pytest.raises(IpcError):
        nc.kcall(KCall.GETINFO)  # a user program may not call the kernel: audited
    wait_event(s, "denied", "nc")

    crashes = records(s.run_dir, "--reason", "exception")
    assert [(e["kind"], e["reason"], e["pid"]) for e in crashes] == [
        ("crash", "exception", first)]
    text = logs(s.run_dir, "--reason", "signal").stdout.splitlines()
    assert len(text) == 2 and "boot" in text[0].split()  # the boot's marker frames it
    assert {"crash", "hello", "reason=signal", f"pid={second}"} <= set(text[1].split())
    both = records(s.run_dir, "--reason", "signal", "--reason", "exception")
    assert [e["pid"] for e in both] == [first, second]

    audit = records(s.run_dir, "--audit")
    assert audit and all(e["kind"] == "denied" for e in audit)
    assert any(e["label"] == "nc" and e["call"] == "GETINFO" for e in audit)
    assert logs(s.run_dir, "--audit").stdout == logs(s.run_dir, "--kind", "denied").stdout

    console = (s.run_dir / params.CONSOLE_LOG).read_text().splitlines()
    shown = logs(s.run_dir, "--console")
    assert shown.returncode == 0 and shown.stdout.splitlines() == console
    assert "InjectedFault" in shown.stdout  # the exception's traceback, as it was printed
    assert logs(s.run_dir, "--console", "-n", "3").stdout.splitlines() == console[-3:]


def test_options_that_do_not_apply_to_a_file_are_refused(tmp_path: Path) -> None:
    for args, word in ((["--console", "--label", "hello"], "--label"),
                       (["--console", "--json"], "--json"),
                       (["--console", "--reason", "exit"], "--reason"),
                       (["--alerts", "--kind", "crash"], "--kind"),
                       (["--alerts", "--audit"], "--audit")):
        r = logs(tmp_path, *args)
        assert r.returncode == 2 and f"{word} does not apply" in r.stderr, (args, r.stderr)
    r = logs(tmp_path, "--console", "--alerts")
    assert r.returncode == 2 and "not allowed with" in r.stderr
    r = logs(tmp_path, "--reason", "meteor")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    assert "no console log in" in logs(tmp_path, "--console").stderr
    r = logs(tmp_path, "--alerts")
    assert r.returncode == 2 and f"no alert log in {tmp_path}" in r.stderr


def test_console_follow_prints_new_lines_escaped(tmp_path: Path) -> None:
    path = tmp_path / params.CONSOLE_LOG
    path.write_text("".join(f"line {i}\n" for i in range(15)))
    follow = subprocess.Popen([sys.executable, str(LOGS), "--run-dir", str(tmp_path),
                               "--console", "-f"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(iter(follow.stdout.readline, "")) if follow.stdout else None,
        daemon=True)
    reader.start()
    try:
        wait_for(lambda: "line 14\n" in lines, what="the last lines")
        assert lines == [f"line {i}\n" for i in range(5, 15)]  # the last 10, as -f starts
        with open(path, "a") as f:
            f.write("a panic \033[2J here\npartial")  # a control sequence; a line not ended
        wait_for(lambda: len(lines) == 11, what="the new line")
        assert lines[10] == "a panic \\x1b[2J here\n"  # escaped: it cannot drive the terminal
        follow.send_signal(signal.SIGINT)
        assert follow.wait(10) == 0
        reader.join(5)
        assert lines[11:] == []  # "partial" waits for its end of line
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
        reader.join(5)
        for stream in (follow.stdout, follow.stderr):
            if stream is not None:
                stream.close()


def test_alerts_are_read_through_logs(make_system: Make) -> None:
    s = boot_rs(make_system, hello="period 1s; script rs.alert;")
    pid = service(s, "hello")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_event(s, "restart", "hello")
    wait_for(lambda: (s.run_dir / params.ALERT_LOG).exists(), what="the alert")
    alerts = records(s.run_dir, "--alerts")
    assert [(a["kind"], a["label"], a["reason"], a["pid"]) for a in alerts] == [
        ("alert", "hello", "signal", str(pid))]
    text = logs(s.run_dir, "--alerts").stdout.splitlines()
    assert len(text) == 1
    assert {"rs.alert:", "alert", "hello", "reason=signal", f"pid={pid}",
            f"incarnation={alerts[0]['incarnation']}"} <= set(text[0].split())
    assert logs(s.run_dir, "--alerts", "--reason", "exception").stdout == ""
    assert logs(s.run_dir, "--alerts", "--label", "hello", "--reason", "signal").stdout != ""


def test_a_foreground_boot_shows_a_crash_traceback_once(make_system: Make,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """bin/boot in the foreground prints the events and the console: a component's
    traceback is in both (the crash event carries a copy for bin/logs and bin/status), and
    is shown once, as the component printed it."""
    s = boot_rs(make_system, hello="period 1s; backoff off;")
    s.system.follow()
    capsys.readouterr()
    r = subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "crash"), "--run-dir",
                        str(s.run_dir), "hello", "exception"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    wait_event(s, "restart", "hello")
    wait_for(lambda: "InjectedFault" in s.console(), what="the traceback on the console")
    s.system.follow()
    shown = capsys.readouterr().out
    assert "reason=exception" in shown  # the crash event's line
    assert shown.count("Traceback (most recent call last)") == 1, shown
    assert records(s.run_dir, "--kind", "crash")[0]["traceback"]  # the event keeps its copy
