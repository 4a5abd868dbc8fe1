"""bin/ds against a running Data Store: list, get and watch, the private entries only to the
operator who asks, and DS's refusal of that question from anyone else."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from minikern import ds
from minikern.const import DS, DsFlag, DsReq, Err
from minikern.proto import Message
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import boot_rs, service
from tests.services.test_commands import BIN, run

pytestmark = pytest.mark.timeout(60)
Make = Callable[..., SystemUnderTest]


def test_ds_list_and_get_show_private_entries_to_the_operator(make_system: Make) -> None:
    s = boot_rs(make_system, ds=True)
    rd = ["--run-dir", str(s.run_dir)]
    keeper = s.connect("keeper", "operator")  # an operator connection, as a component would
    ds.publish(keeper, "keeper.state", b"\x01\x02", DsFlag.PRIVATE)
    other = s.connect("other", "operator")
    assert "keeper.state" not in [e["key"] for e in ds.list_entries(other)]  # not asked
    r = run("ds", *rd, "list", "--json")
    assert r.returncode == 0, r.stderr
    rows = {e["key"]: e for e in json.loads(r.stdout)}
    assert rows["keeper.state"] == {"key": "keeper.state", "type": "mem", "owner": "keeper",
                                    "private": True, "versions": 1,
                                    "serial": rows["keeper.state"]["serial"], "size": 2,
                                    "value": "0102"}
    assert rows["hello"]["type"] == "label" and rows["hello"]["value"] == service(s, "hello")[
        "endpoint"]
    assert rows["rs.hello"]["value"] == "up" and rows["rs.hello"]["owner"] == "rs"
    text = run("ds", *rd, "list", r"keeper\..*|rs\.hello").stdout.splitlines()
    assert text[0].split() == ["KEY", "TYPE", "OWNER", "VERSIONS", "VALUE"]
    assert [ln.split() for ln in text[1:]] == [["keeper.state", "(private)", "mem", "keeper",
                                                "1", "0102"],
                                               ["rs.hello", "str", "rs", "1", '"up"']]
    r = run("ds", *rd, "get", "keeper.state")
    assert (r.returncode, r.stdout) == (0, "0102\n")
    r = run("ds", *rd, "get", "no.such.key")
    assert (r.returncode, r.stdout) == (1, "") and r.stderr.startswith("ds: no.such.key: ESRCH")


def test_only_the_operator_may_ask_to_see_private_entries(make_system: Make) -> None:
    """A component asking LIST with operator: true is refused EPERM (hello, through the
    test agent that forwards for a component)."""
    s = boot_rs(make_system, ds=True, start="hello agent")
    agent = service(s, "agent")["endpoint"]
    tester = s.connect("tester", "operator")

    def forward(fields: dict[str, object]) -> Message:
        r = tester.sendrec(agent, Message(1, {"dst": DS, "type": int(DsReq.LIST),
                                              "fields": fields}))
        return Message(r["type"], r["fields"]) if r.type == Err.OK else r

    assert forward({"operator": True}).type == Err.EPERM
    assert forward({"operator": "yes"}).type == Err.EINVAL
    answer = forward({})
    assert answer.type == Err.OK and "rs.hello" in [e["key"] for e in answer["entries"]]


def test_ds_watch_prints_the_entries_then_each_change(make_system: Make) -> None:
    s = boot_rs(make_system, ds=True)
    writer = s.connect("writer", "operator")
    ds.publish(writer, "watch.me", 1)
    watch = subprocess.Popen([sys.executable, str(BIN / "ds"), "--run-dir", str(s.run_dir),
                              "watch", r"watch\..*", "--interval", "0.05", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[dict[str, object]] = []

    def read() -> None:
        assert watch.stdout is not None
        for line in watch.stdout:
            lines.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: lines, what="the listing")
        ds.publish(writer, "watch.me", 2, DsFlag.OVERWRITE)
        wait_for(lambda: len(lines) >= 2, what="the change")
        ds.publish(writer, "watch.too", "x")
        wait_for(lambda: len(lines) >= 3, what="the new entry")
        ds.delete(writer, "watch.me")
        wait_for(lambda: len(lines) >= 4, what="the deletion")
        assert [(x["change"], x["key"], x.get("value")) for x in lines] == [
            ("listed", "watch.me", 1), ("changed", "watch.me", 2), ("new", "watch.too", "x"),
            ("deleted", "watch.me", 2)]
        watch.send_signal(signal.SIGINT)
        assert watch.wait(10) == 0
        assert watch.stderr is not None and watch.stderr.read() == ""
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        reader.join(5)
        for f in (watch.stdout, watch.stderr):
            if f is not None:
                f.close()
