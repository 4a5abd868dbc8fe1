"""CANCEL: a RECEIVE can be ended by the receiver itself, and it always gets exactly one reply."""
from __future__ import annotations

import pytest

from minikern.proto import codec
from minikern.proto import Message
from minikern.const import Call, Err, Kind
from tests.conftest import SystemUnderTest, wait_for

pytestmark = pytest.mark.timeout(60)

NO_STRAY_MS = 300  # long enough for a second reply frame to arrive if the kernel sent one


def test_cancel_ends_a_pending_receive_with_eintr(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    b.start_receive()
    wait_for(lambda: system.blocked(b.endpoint, "recv"), what="b receiving")
    b.cancel()
    assert b.finish() is None  # EINTR
    assert b.sock.poll(NO_STRAY_MS) == 0
    assert not system.blocked(b.endpoint, "recv")
    assert a.sendnb(b.endpoint, Message(1)) == Err.ENOTREADY  # no longer receiving
    b.start_receive()  # and the next RECEIVE works as ever
    wait_for(lambda: system.blocked(b.endpoint, "recv"))
    assert a.sendnb(b.endpoint, Message(2, {"x": 1})) == Err.OK
    m = b.finish()
    assert m is not None and (m.source, m.type, m.fields) == (a.endpoint, 2, {"x": 1})


def test_a_message_that_wins_the_race_is_the_one_reply(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    b.start_receive()
    wait_for(lambda: system.blocked(b.endpoint, "recv"))
    assert a.sendnb(b.endpoint, Message(7)) == Err.OK  # delivered before the CANCEL
    b.cancel()  # arrives too late: dropped
    m = b.finish()
    assert m is not None and (m.source, m.type, m.kind) == (a.endpoint, 7, Kind.MESSAGE)
    assert b.sock.poll(NO_STRAY_MS) == 0  # no EINTR behind it
    b.start_receive()  # the dropped CANCEL does not end the next RECEIVE either
    wait_for(lambda: system.blocked(b.endpoint, "recv"))
    assert b.sock.poll(NO_STRAY_MS) == 0
    assert a.notify(b.endpoint) == Err.OK
    n = b.finish()
    assert n is not None and (n.source, n.kind) == (a.endpoint, Kind.NOTIFY)


def test_cancel_never_cuts_a_sendrec_short(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    a.sock.send_multipart([codec.encode_request(Call.SENDREC, b.endpoint),
                           codec.encode_body(3, {})])
    req = b.receive()
    wait_for(lambda: system.blocked(a.endpoint, "sendrec-recv"))
    a.cancel()  # the caller waits for its reply, and gets it
    assert a.sock.poll(NO_STRAY_MS) == 0
    assert b.send(req.source, Message(Err.OK, {"answer": 42})) == Err.OK
    reply = a.finish()
    assert reply is not None and reply.fields == {"answer": 42}
