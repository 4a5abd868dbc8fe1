"""RS policies in a live system: backoff, and recovery scripts with their arguments and environment."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any
from collections.abc import Callable

import pytest

from minikern import cli
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import boot_rs, events, service, wait_event, wait_state

pytestmark = pytest.mark.timeout(60)
Make = Callable[..., SystemUnderTest]

RECORDER = """#!/bin/sh
env | grep '^MINIKERN_' | sort > "$MINIKERN_RUN_DIR/script.env"
echo "$@" > "$MINIKERN_RUN_DIR/script.args"
echo "recorded $1"
{action}
"""


def test_backoff_delays_the_second_restart(make_system: Make) -> None:
    s = boot_rs(make_system, hello="backoff 300ms; stable 60s;")
    os.kill(service(s, "hello")["pid"], signal.SIGKILL)
    first = wait_event(s, "restart", "hello")
    # the first failure: restarted at once (RS's decision, not a wall-clock time: a loaded
    # machine may take longer than the backoff to start a copy)
    crash = wait_event(s, "crash", "hello")
    assert (crash["action"], crash["delay_ms"]) == ("restart", 0)
    os.kill(first["new_pid"], signal.SIGKILL)
    crash = wait_event(s, "crash", "hello", count=2)
    assert crash["action"] == "backoff" and crash["delay_ms"] == 300
    second = wait_event(s, "restart", "hello", count=2)
    assert second["downtime_ms"] >= 300


def test_script_gets_minix_arguments_and_environment(make_system: Make, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "rec").write_text(RECORDER.format(
        action='exec "$MINIKERN_PYTHON" "$MINIKERN_ROOT/bin/service" '
               '--run-dir "$MINIKERN_RUN_DIR" restart "$1"'))
    monkeypatch.setenv("MINIKERN_RECOVERY_SCRIPTS", str(scripts))
    s = boot_rs(make_system, hello="script rec;", start="hello agent",
                agent="depends hello; period off;")
    pid = service(s, "hello")["pid"]
    os.kill(pid, signal.SIGKILL)
    crash = wait_event(s, "crash", "hello")
    assert crash["action"] == "script"
    start = wait_event(s, "script", "hello")
    assert start["phase"] == "start" and start["args"] == ["hello", "signal", "1"]
    r = wait_event(s, "restart", "hello")  # the script decided, through bin/service
    assert r["old_pid"] == pid
    done = wait_for(lambda: [e for e in events(s, "script", "hello") if e["phase"] == "done"])
    assert done[0]["status"] == 0 and "recorded hello" in done[0]["output"]
    env = dict(line.split("=", 1) for line in
               (s.run_dir / "script.env").read_text().splitlines())
    assert env["MINIKERN_OLD_PID"] == str(pid) and env["MINIKERN_SIGNAL"] == "9"
    assert env["MINIKERN_RUN_DIR"] == str(s.run_dir) and env["MINIKERN_DEPENDENTS"] == "agent"
    assert env["MINIKERN_FAILURES"] == "1"
    assert (s.run_dir / "script.args").read_text().split() == ["hello", "signal", "1"]


def test_script_that_decides_nothing_leaves_the_service_down(
        make_system: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "rec").write_text(RECORDER.format(action="exit 3"))
    monkeypatch.setenv("MINIKERN_RECOVERY_SCRIPTS", str(scripts))
    s = boot_rs(make_system, hello="script rec;")
    os.kill(service(s, "hello")["pid"], signal.SIGKILL)
    wait_state(s, "hello", "down")
    assert events(s, "down", "hello")[0]["by"] == "script"
    assert not events(s, "restart")


def test_rs_single_leaves_it_down_and_reports(make_system: Make) -> None:
    s = boot_rs(make_system, hello="script rs.single;")
    pid = service(s, "hello")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_state(s, "hello", "down")
    done = wait_for(lambda: [e for e in events(s, "script") if e["phase"] == "done"])
    assert f"pid {pid}" in done[0]["output"] and "leaving it down" in done[0]["output"]
    assert not events(s, "restart")


def test_rs_restart_restarts_at_once(make_system: Make) -> None:
    s = boot_rs(make_system, hello="script rs.restart;")
    pid = service(s, "hello")["pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_event(s, "restart", "hello")["old_pid"] == pid
    wait_state(s, "hello", "up")
    # It asked on its channel to RS (no bin/service): RS's answer line is in its output.
    done = wait_for(lambda: [e for e in events(s, "script") if e["phase"] == "done"])
    new = service(s, "hello")
    assert done[0]["status"] == 0
    assert f"service restart hello: OK endpoint={new['endpoint']} pid={new['pid']}" \
        in done[0]["output"]


def test_rs_group_restarts_the_server_and_its_dependents(make_system: Make) -> None:
    s = boot_rs(make_system, hello="script rs.group;", start="hello agent",
                agent="depends hello; period off;")
    hello, agent = service(s, "hello"), service(s, "agent")
    os.kill(hello["pid"], signal.SIGKILL)
    assert wait_event(s, "restart", "hello")["old_pid"] == hello["pid"]
    dep = wait_event(s, "restart", "agent")
    assert dep["cause"] == "refresh" and dep["old_pid"] == agent["pid"]
    wait_state(s, "agent", "up")


def test_rs_alert_writes_a_record_and_restarts(make_system: Make) -> None:
    s = boot_rs(make_system, hello="script rs.alert;")
    pid = service(s, "hello")["pid"]
    ctl_crash(s, "panic")
    wait_event(s, "restart", "hello")
    record = json.loads((s.run_dir / "alerts.log").read_text().splitlines()[0])
    assert record["label"] == "hello" and record["reason"] == "panic"
    assert record["pid"] == str(pid) and "bin/crash" in record["detail"]
    assert "ALERT: service hello failed" in s.console()


def script_done(s: SystemUnderTest, n: int) -> dict[str, Any]:
    """The n-th recovery script of hello to have ended."""
    done = wait_for(lambda: [e for e in events(s, "script", "hello")
                             if e["phase"] == "done"][n - 1:], what=f"script {n} done")
    return done[0]


def backoff_said(output: str) -> tuple[int, int]:
    """(failure number, delay in seconds) from rs.backoff's line of output."""
    m = re.search(r"failure (\d+)\); restarting in (\d+)s", output)
    assert m, output
    return int(m.group(1)), int(m.group(2))


def test_rs_backoff_restarts_at_once_then_waits_longer_each_time(make_system: Make) -> None:
    s = boot_rs(make_system, hello="script rs.backoff;")
    delays = []
    for n in (1, 2, 3):
        pid = service(s, "hello")["pid"]
        os.kill(pid, signal.SIGKILL)
        crash = wait_event(s, "crash", "hello", count=n)
        assert crash["action"] == "script"
        restart = wait_event(s, "restart", "hello", count=n, timeout=15)
        assert restart["old_pid"] == pid
        done = script_done(s, n)
        assert done["status"] == 0 and done["script"] == "rs.backoff"
        failure, delay = backoff_said(done["output"])
        assert failure == n  # RS hands it MINIKERN_FAILURES, consecutive failures so far
        assert restart["downtime_ms"] >= delay * 1000
        delays.append((delay, restart["downtime_ms"]))
        wait_state(s, "hello", "up")
    (d1, down1), (d2, _), (d3, _) = delays
    assert d1 == 0 and down1 < 1000  # a first failure is restarted at once
    assert (d2, d3) == (1, 2)  # then after 1, 2, 4, ... seconds


def test_rs_backoff_delays_double_and_are_capped_at_30_seconds(tmp_path: Path) -> None:
    """The script's arithmetic for any failure count, without waiting for it: `sleep` and
    the restart it execs are stand-ins that record what they were asked to do."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sleep").write_text('#!/bin/sh\necho "slept $1"\n')
    (fake / "sleep").chmod(0o755)
    said = {}
    for n in [*range(1, 10), 20]:
        env = {"PATH": f"{fake}:/usr/bin:/bin", "MINIKERN_FAILURES": str(n),
               "MINIKERN_PYTHON": "echo", "MINIKERN_ROOT": "/root-dir",
               "MINIKERN_RUN_DIR": "/run-dir"}
        r = subprocess.run(["/bin/sh", str(cli.REPO_ROOT / "recovery_scripts" / "rs.backoff"),
                            "hello", "signal", str(n)], env=env, capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        failure, delay = backoff_said(r.stdout)
        assert failure == n and f"slept {delay}" in r.stdout.splitlines()
        assert r.stdout.splitlines()[-1] == (
            "/root-dir/bin/service --run-dir /run-dir restart hello")
        said[n] = delay
    # Its comment: at once after the first failure, then min(2^(failures-2), 30) seconds.
    assert said == {1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 6: 16, 7: 30, 8: 30, 9: 30, 20: 30}


def ctl_crash(s: SystemUnderTest, fault: str) -> None:
    from minikern.const import RsReq
    from minikern import rsctl as ctl
    ctl.request(s.run_dir, RsReq.CRASH, label="hello", fault=fault)
