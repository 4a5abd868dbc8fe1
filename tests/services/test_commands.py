"""The operator commands, run as a person runs them: bin/ps, bin/service, bin/crash, bin/logs."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from minikern import cli
from tests.conftest import SystemUnderTest
from tests.services.rs_helpers import boot_rs, service, wait_event

pytestmark = pytest.mark.timeout(60)
Make = Callable[..., SystemUnderTest]


def run(cmd: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / cmd), *args],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("cmd", ["ps", "service", "crash", "logs"])
def test_every_command_has_help(cmd: str) -> None:
    r = run(cmd, "--help")
    assert r.returncode == 0 and "--run-dir" in r.stdout


def test_commands_without_a_system_say_so(tmp_path: object) -> None:
    for cmd, args in [("ps", []), ("service", ["up", "hello"]), ("crash", ["hello", "kill"])]:
        r = run(cmd, "--run-dir", str(tmp_path), *args)
        assert r.returncode == 2 and "no system" in r.stderr


def test_ps_json_lists_kernel_and_every_process(make_system: Make) -> None:
    s = boot_rs(make_system, ds=True)
    r = run("ps", "--run-dir", str(s.run_dir), "--json")
    assert r.returncode == 0, r.stderr
    rows = {x["label"]: x for x in json.loads(r.stdout)}
    assert set(rows) == {"kernel", "rs", "ds", "hello"}  # no operator tools
    assert rows["kernel"]["pid"] == s.system.kernel.pid
    for row in rows.values():
        assert row["state"] == "up" and row["incarnation"] == 0
        assert row["pid"] > 0 and row["uptime"] >= 0 and row["rss_mb"] > 0
        assert row["cpu"] is not None and isinstance(row["endpoint"], int)
    assert rows["hello"]["endpoint"] == service(s, "hello")["endpoint"]
    text = run("ps", "--run-dir", str(s.run_dir)).stdout
    assert text.splitlines()[0].split()[:4] == ["LABEL", "ENDPOINT", "PID", "STATE"]


def test_service_crash_and_logs_commands(make_system: Make) -> None:
    s = boot_rs(make_system)
    rd = ["--run-dir", str(s.run_dir)]
    pid = service(s, "hello")["pid"]
    r = run("crash", *rd, "hello", "exit")
    assert r.returncode == 0 and str(pid) in r.stdout
    wait_event(s, "restart", "hello")
    r = run("service", *rd, "down", "hello")
    assert r.returncode == 0 and service(s, "hello")["state"] == "down"
    rows = {x["label"]: x for x in json.loads(run("ps", *rd, "--json").stdout)}
    assert rows["hello"]["state"] == "down" and rows["hello"]["pid"] is None
    assert rows["hello"]["incarnation"] == 1
    r = run("service", *rd, "up", "hello")
    assert r.returncode == 0 and "endpoint" in r.stdout
    r = run("service", *rd, "restart", "hello")
    assert r.returncode == 1 and "EBUSY" in r.stderr
    r = run("crash", *rd, "hello", "meteor")
    assert r.returncode == 2  # argparse refuses an unknown fault
    lines = [json.loads(x) for x in run("logs", *rd, "--json").stdout.splitlines()]
    kinds = [e["event"] for e in lines if e["label"] == "hello"]
    assert kinds == ["up", "crash", "restart", "down", "up"]
    assert all(isinstance(e["ts"], float) for e in lines)
    crash = next(e for e in lines if e["event"] == "crash")
    assert crash["reason"] == "exit" and crash["pid"] == pid
    only = run("logs", *rd, "--label", "hello").stdout.splitlines()
    assert len(only) == 5 and "crash" in only[1] and "reason=exit" in only[1]
    assert "\033[" not in only[1]  # no colour when not on a terminal
