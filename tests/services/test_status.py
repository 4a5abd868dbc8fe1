"""bin/status and bin/ps's long form, run as a person runs them: what they show of a service's
state, policy, failures, crash, heartbeat, IPC state and privileges, and their exit codes."""
from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
from minikern import sched
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import boot_rs, service, wait_event, wait_state
from tests.services.test_commands import run

pytestmark = pytest.mark.timeout(60)
Make = Callable[..., SystemUnderTest]


def status_json(s: SystemUnderTest, *args: str) -> tuple[int, Any]:
    r = run("status", "--run-dir", str(s.run_dir), "--json", *args)
    assert r.stderr == "", r.stderr
    return r.returncode, json.loads(r.stdout)


def test_status_of_a_live_service_shows_its_policy_ipc_and_heartbeat(make_system: Make) -> None:
    s = boot_rs(make_system, hello="period 250ms; backoff 2s; stable 30s; restarts 4 20s;")
    rd = ["--run-dir", str(s.run_dir)]
    # The heartbeat's round trip is known once RS has had one ping answered.  hello is idle
    # in its loop (recv ANY) but while it answers a heartbeat: SEF answers with a SENDREC
    # RsReq.PING to RS, and until RS, busy with this very status request, replies, hello
    # waits for it ("reply rs"; CI saw it once).  So the snapshot is asked for again.
    code, row = wait_for(lambda: (lambda r: r if r[1]["heartbeat_ms"] is not None
                                  and r[1]["ipc"] == "recv ANY" else None)(
        status_json(s, "hello")), what="a heartbeat answered, hello idle in its loop")
    assert code == 0 and row["state"] == "up" and row["pid"] == service(s, "hello")["pid"]
    assert (row["period"], row["backoff"], row["stable"], row["restarts"], row["window"]) \
        == (0.25, 2, 30, 4, 20)
    assert row["program"] == "drivers.hello" and row["window_failures"] == 0
    assert "RECEIVE" in row["priv"]["traps"] and row["priv"]["kcalls"] == []
    assert row["heartbeat_ms"] >= 0 and row["last_crash"] is None
    assert [e["kind"] for e in row["log"]] == ["up"]
    def text_status() -> tuple[Any, dict[str, str]] | None:
        text = run("status", *rd, "hello")
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0] == "● hello - drivers.hello"
        head = lines[1:lines.index("")]  # the fields; the log lines follow a blank line
        fields = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip() for ln in head}
        assert fields["IPC"] in ("recv ANY", "reply rs"), fields["IPC"]
        return (text, fields) if fields["IPC"] == "recv ANY" else None
    text, fields = wait_for(text_status, what="status's text with hello idle in its loop")
    assert fields["State"].startswith("up since ")
    assert fields["Process"] == f"pid {row['pid']}, endpoint {row['endpoint']}, incarnation 0"
    assert fields["Policy"] == ("heartbeat every 250 ms; backoff 2 s doubling to 30 s; "
                                "stable after 30 s; at most 4 restarts in 20 s; script -; "
                                "depends on nothing")
    assert fields["Failures"] == "0 in the current window of 4 allowed, 0 in a row"
    assert fields["Heartbeat"].endswith(" ms round trip")
    assert fields["Privileges"].startswith("traps ") and "\033[" not in text.stdout


def test_status_shows_the_crash_its_traceback_and_the_backoff_countdown(make_system: Make) -> None:
    """A second failure in a row waits out the backoff: the service is restarting, status
    says when it will be restarted and exits 3, as systemctl does for a unit not active."""
    s = boot_rs(make_system, hello="period 1s; backoff 20s; stable 60s;")
    rd = ["--run-dir", str(s.run_dir)]
    first = service(s, "hello")["pid"]
    assert run("crash", *rd, "hello", "exception").returncode == 0
    wait_event(s, "restart", "hello")
    second = wait_state(s, "hello", "up")["pid"]
    os.kill(second, signal.SIGKILL)
    wait_for(lambda: service(s, "hello")["restart_in"], what="the backoff wait")
    code, row = status_json(s, "hello")
    assert code == 3 and row["state"] == "restarting" and row["pid"] is None
    assert 0 < row["restart_in"] <= 20 and row["window_failures"] == 2 and row["failures"] == 2
    assert row["last_crash"]["pid"] == second and row["last_crash"]["reason"] == "signal"
    assert row["ipc"] is None and row["priv"] is None  # nothing runs to have an IPC state
    r = run("status", *rd, "hello")
    assert r.returncode == 3
    restart = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("Restart:"))
    assert restart.strip().startswith("Restart: in ") and restart.endswith(" s (backoff)")
    assert "Process: not running (incarnation 2)" in r.stdout
    assert "Last crash: " in r.stdout and f"(pid {second}, RS's action: backoff)" in r.stdout
    # The first crash's traceback is in the log lines, one line each; the last crash's
    # (a signal) has none: a traceback shown is always the last crash's.
    assert "    | Traceback" not in r.stdout
    assert sum(" crash " in ln for ln in r.stdout.splitlines()) == 2
    assert f"pid={first}" in r.stdout
    assert run("service", *rd, "restart", "hello").returncode == 0  # skip the wait
    r = run("status", *rd, "hello", "-n", "0")
    assert r.returncode == 0 and "State: up since" in r.stdout and "\n\n" not in r.stdout


def test_status_of_every_service_and_of_an_unknown_one(make_system: Make) -> None:
    s = boot_rs(make_system, ds=True)
    rd = ["--run-dir", str(s.run_dir)]
    code, rows = status_json(s)
    assert code == 0
    by_label = {r["label"]: r for r in rows}
    assert set(by_label) == {"rs", "ds", "hello"}  # no operator tool, rs from the kernel
    assert by_label["ds"]["core"] and not by_label["hello"]["core"]
    assert by_label["rs"]["supervised"] is False and by_label["rs"]["ipc"] is not None
    assert all(r["log"] == [] for r in rows)  # no log lines unless asked, for all
    r = run("status", *rd)
    assert r.returncode == 0 and r.stdout.count("● ") == 3
    assert "Policy: not supervised by RS (a core server)" in r.stdout
    r = run("status", *rd, "nosuch")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "status: no service or process 'nosuch'\n"
    assert run("service", *rd, "down", "hello").returncode == 0
    code, rows = status_json(s)
    assert code == 3 and {r["label"]: r["state"] for r in rows}["hello"] == "down"


def test_ps_long_form_and_pid_of_a_label(make_system: Make) -> None:
    s = boot_rs(make_system)
    rd = ["--run-dir", str(s.run_dir)]
    r = run("ps", *rd, "-l")
    assert r.returncode == 0, r.stderr
    head, *rows = r.stdout.splitlines()
    assert head.split() == ["LABEL", "ENDPOINT", "PID", "STATE", "INCARNATION", "UPTIME", "CPU",
                            "RSS_MB", "PRI", "CLASS", "IPC", "LAST_REASON"]
    hello = next(ln.split() for ln in rows if ln.startswith("hello "))
    assert 0 <= int(hello[8]) <= 15 and hello[10:] == ["recv", "ANY", "-"]
    # booted as root (and granted), a driver's queue is real-time: minikern/sched.py
    assert hello[9] == ("rr" if sched.policy(s.system.kernel.pid) == "rr" else "other")
    pid = service(s, "hello")["pid"]
    r = run("ps", *rd, "--pid", "hello")
    assert (r.returncode, r.stdout) == (0, f"{pid}\n")
    assert run("service", *rd, "down", "hello").returncode == 0
    r = run("ps", *rd, "--pid", "hello")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "ps: hello is not running\n")
    r = run("ps", *rd, "--pid", "nosuch")
    assert (r.returncode, r.stderr) == (1, "ps: no process or service 'nosuch'\n")
