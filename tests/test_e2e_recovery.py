"""End to end: boot the shipped configuration, kill -9 a driver from the shell, watch it come back."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from minikern import cli, ds
from minikern.proto import Message
from minikern.const import CharReq, Err
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import events, wait_event, wait_state

pytestmark = pytest.mark.timeout(90)


def test_kill_9_from_the_shell_is_recovered_while_the_system_serves(
        make_system: Callable[..., SystemUnderTest]) -> None:
    conf = (cli.REPO_ROOT / "etc" / "system.conf").read_text()
    conf = conf.replace("{", "{{").replace("}", "}}")
    assert "boot hw rs ds;" in conf
    s = make_system("hw rs ds", conf.replace("boot hw rs ds;", "boot {boot};"))
    wait_state(s, "hello", "up")
    ps = subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "ps"), "--run-dir",
                         str(s.run_dir), "--json"], capture_output=True, text=True, timeout=30)
    old = next(r for r in json.loads(ps.stdout) if r["label"] == "hello")
    c = s.connect("client", "operator")
    assert ds.retrieve_label(c, "hello") == old["endpoint"]
    for _ in range(2):
        c.sendrec(old["endpoint"], Message(CharReq.OPEN))

    stop, served, errors = threading.Event(), [0], []

    def keep_using_ds() -> None:  # another client of the system, all along
        other = s.connect("other", "operator")
        while not stop.is_set():
            try:
                ds.retrieve_label(other, "hello")
                served[0] += 1
            except Exception as e:  # noqa: BLE001 (any failure is a finding)
                errors.append(e)

    # In the system's pool, not a thread of its own: if a call hangs, the system's teardown
    # halts first and closes "other" only once this has returned (a ZeroMQ socket closed
    # under a thread still waiting on it aborts the whole test process).
    user = s.background(keep_using_ds)
    try:
        subprocess.run(["kill", "-9", str(old["pid"])], check=True, timeout=10)
        crash = wait_event(s, "crash", "hello")
        assert crash["reason"] == "signal" and crash["signal"] == "SIGKILL"
        assert crash["pid"] == old["pid"]
        r = wait_event(s, "restart", "hello")
        assert r["old_pid"] == old["pid"] and r["new_pid"] != old["pid"]
        assert r["old_endpoint"] == old["endpoint"] and r["new_endpoint"] != old["endpoint"]
        new_ep = wait_for(lambda: (lambda e: e if e != old["endpoint"] else None)(
            ds.retrieve_label(c, "hello")), what="DS to publish the new endpoint")
        assert new_ep == r["new_endpoint"]
        m = c.sendrec(new_ep, Message(CharReq.READ))
        assert m.type == Err.OK and m.fields["data"] == "Hello, World!"
        assert m.fields["incarnation"] == 1 and m.fields["open_counter"] == 2  # state kept in DS
        n = served[0]
        wait_for(lambda: served[0] > n, what="DS still serving")
    finally:
        stop.set()
    user.result(10)
    assert not errors and served[0] > 0
    assert [e["kind"] for e in events(s, label="hello")] == ["up", "crash", "restart"]
