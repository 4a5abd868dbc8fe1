"""End to end: two boots of the shipped configuration in one run directory, with a driver
killed, a service's exception, a refused call and a halt in the first; every record bin/logs
--json prints is valid for its kind, and the stream is in time order, boot by boot."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable

import pytest

from minikern import cli, params
from minikern.boot import System
from minikern.proto import Message
from minikern.const import Err
from minikern.events import boot_id, validate
from tests.conftest import BOOT_DEADLINE, SystemUnderTest
from tests.services.rs_helpers import wait_event, wait_state

pytestmark = pytest.mark.timeout(120)
EVERY_RUN = {"boot", "up", "halt"}  # what any boot of this system logs, however short


def bin_(cmd: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / cmd), *args],
                          capture_output=True, text=True, timeout=30)


def test_a_boot_crash_recovery_and_halt_is_one_valid_stream_in_time_order(
        make_system: Callable[..., SystemUnderTest]) -> None:
    conf = (cli.REPO_ROOT / "etc" / "system.conf").read_text()
    conf = conf.replace("{", "{{").replace("}", "}}").replace("boot hw rs ds;", "boot {boot};")
    s = make_system("hw rs ds", conf)
    rd = ["--run-dir", str(s.run_dir)]
    for label in ("hello", "inet", "rtl8139"):
        wait_state(s, label, "up")
    first = boot_id(s.run_dir)
    assert bin_("crash", *rd, "rtl8139", "kill").returncode == 0
    wait_event(s, "restart", "rtl8139")
    wait_event(s, "driver-back", "rtl8139")
    wait_event(s, "driver-up", "rtl8139", count=2)  # INET saw DS publish the new one
    assert bin_("crash", *rd, "hello", "exception").returncode == 0
    wait_event(s, "restart", "hello")
    intruder = s.connect("intruder", "user")  # a user program may not call hello
    assert intruder.send(s.endpoint_of("hello"), Message(1)) == Err.ETRAPDENIED
    assert s.system.halt()  # the kernel ends every process, then itself
    second = System(s.run_dir, s.run_dir.parent / "system.conf")
    try:
        assert second.wait_ready(timeout=BOOT_DEADLINE), s.console()
        assert boot_id(s.run_dir) != first
    finally:
        assert second.halt()

    r = bin_("logs", *rd, "--json")
    assert r.returncode == 0 and not r.stderr, r.stderr
    stream = [json.loads(x) for x in r.stdout.splitlines()]
    for rec in stream:
        assert validate(rec) == [], rec
    boots = [rec["boot"] for rec in stream]
    assert boots == sorted(boots, key=[first, boot_id(s.run_dir)].index)  # boot by boot
    for ident in (first, boot_id(s.run_dir)):
        mine = [rec for rec in stream if rec["boot"] == ident]
        kinds = [rec["kind"] for rec in mine]
        assert kinds[0] == "boot" and kinds[-1] == "halt", kinds  # a frame around each boot
        assert kinds.count("boot") == kinds.count("halt") == 1
        assert mine[-1]["status"] == "clean"
        assert [rec["ts"] for rec in mine] == sorted(rec["ts"] for rec in mine)
        assert set(kinds) >= EVERY_RUN, kinds
    ours = [rec for rec in stream if rec["boot"] == first]
    crashes = {rec["label"]: rec for rec in ours if rec["kind"] == "crash"}
    assert crashes["rtl8139"]["signal"] == "SIGKILL" and crashes["rtl8139"]["action"] == "restart"
    assert "InjectedFault" in crashes["hello"]["traceback"]
    assert {rec["label"] for rec in ours if rec["kind"] == "restart"} == {"rtl8139", "hello"}
    assert {rec["kind"] for rec in ours if rec["label"] == "rtl8139" and rec["source"] == "inet"
            } >= {"driver-up", "driver-gone", "driver-back", "link"}
    denied = [rec for rec in ours if rec["kind"] == "denied"]
    assert [(d["label"], d["call"], d["source"]) for d in denied] == [
        ("intruder", "SEND", "kernel")]

    text = bin_("logs", *rd).stdout.splitlines()  # the same stream, for people
    rows = [ln for ln in text if not ln.startswith("    | ")]
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+: ", ln) for ln in rows), rows
    assert len(rows) == len(stream)
    console = (s.run_dir / params.CONSOLE_LOG).read_text()
    assert "inet: driver-back rtl8139 endpoint=" in console
    assert not re.search(r"\{'|\{\}", console), "a Python repr on the console"
