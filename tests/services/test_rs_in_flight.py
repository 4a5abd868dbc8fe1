"""A tool that must not block asks RS with requests in flight (docs/PROTOCOL.md, section 15):
RS answers each with the request's ``rid`` as ``re``, the late one (DOWN) once the service has
exited, the quick one (STATUS) at once, whatever order they were sent in.  (bin/service waits
in SENDREC: operator tools hold user privileges, which allow no other trap; this tool is
admitted with the operator key and a component's privileges, so it may SENDNB.)"""
from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from minikern.const import RS, Err, RsReq
from minikern.loop import Loop
from minikern.proto import Message
from tests.conftest import SystemUnderTest
from tests.services.rs_helpers import boot_rs, events, service

pytestmark = pytest.mark.timeout(60)


def test_late_and_quick_answers_reach_a_tool_with_requests_in_flight(
        make_system: Callable[..., SystemUnderTest]) -> None:
    s = boot_rs(make_system)
    pid = service(s, "hello")["pid"]
    loop = Loop(s.connect("tool", "agent"))
    down: list[Message] = []
    status: list[Message] = []
    assert loop.request(RS, Message(RsReq.DOWN, {"label": "hello"}), down.append,
                        timeout=20) in (Err.OK, Err.ENOTREADY)
    assert loop.request(RS, Message(RsReq.STATUS), status.append,
                        timeout=20) in (Err.OK, Err.ENOTREADY)
    deadline = time.monotonic() + 20
    while not (down and status) and time.monotonic() < deadline:
        loop.turn()
    assert status and status[0].type == Err.OK
    assert "hello" in {x["label"] for x in status[0]["services"]}
    assert down and (down[0].type, down[0]["pid"]) == (Err.OK, pid)
    assert events(s, "down", "hello")  # answered once it was down, not before
    assert loop.counters["answer_unmatched"] == 0 and loop.counters["request_failed"] == 0
