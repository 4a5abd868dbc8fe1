"""IPC semantics through a real kernel process: rendezvous, receive filters, notify, deadlock."""
from __future__ import annotations

import pytest

from minikern.proto import Message
from minikern.const import ANY, Err, Kind
from minikern.ipc import IpcError
from tests.conftest import SystemUnderTest, wait_for

pytestmark = pytest.mark.timeout(60)


def test_send_is_a_rendezvous(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    sent = system.background(a.send, b.endpoint, Message(5, {"x": 1}))
    wait_for(lambda: system.blocked(a.endpoint, "send"), what="sender blocked")
    assert not sent.done()  # nobody has taken the message yet
    m = b.receive()
    assert (m.source, m.type, m.fields, m.kind) == (a.endpoint, 5, {"x": 1}, Kind.MESSAGE)
    assert sent.result(10) == Err.OK


def test_receive_from_one_source_while_others_queue(system: SystemUnderTest) -> None:
    a, b, c = (system.connect(x, "client") for x in "abc")
    fa = system.background(a.send, b.endpoint, Message(1))
    wait_for(lambda: system.blocked(a.endpoint, "send"))
    fc = system.background(c.send, b.endpoint, Message(3))
    wait_for(lambda: system.blocked(c.endpoint, "send"))
    m = b.receive(c.endpoint)  # c queued after a, but b asks for c
    assert (m.source, m.type) == (c.endpoint, 3)
    assert fc.result(10) == Err.OK
    assert not fa.done()
    m = b.receive(ANY)
    assert (m.source, m.type) == (a.endpoint, 1)
    assert fa.result(10) == Err.OK


def test_sendrec_is_not_satisfied_by_a_notify(system: SystemUnderTest) -> None:
    a, b, c = (system.connect(x, "client") for x in "abc")
    fut = system.background(a.sendrec, b.endpoint, Message(10))
    req = b.receive()
    assert req.source == a.endpoint
    wait_for(lambda: system.blocked(a.endpoint, "sendrec-recv"))
    assert c.notify(a.endpoint) == Err.OK
    assert system.blocked(a.endpoint, "sendrec-recv")  # the notify did not wake it
    assert b.send(a.endpoint, Message(Err.OK, {"answer": 42})) == Err.OK
    reply = fut.result(10)
    assert (reply.source, reply.kind, reply.fields) == (b.endpoint, Kind.MESSAGE, {"answer": 42})
    n = a.receive()  # the notification was kept and comes now
    assert (n.source, n.kind) == (c.endpoint, Kind.NOTIFY)


def test_notifications_coalesce_per_sender(system: SystemUnderTest) -> None:
    a, b, c = (system.connect(x, "client") for x in "abc")
    for _ in range(5):
        assert c.notify(b.endpoint) == Err.OK  # never blocks
    assert a.notify(b.endpoint) == Err.OK
    sources = [b.receive().source, b.receive().source]
    assert sorted(sources) == sorted([c.endpoint, a.endpoint])
    fut = system.background(b.receive)  # nothing pending any more: this blocks
    wait_for(lambda: system.blocked(b.endpoint, "recv"))
    assert a.sendnb(b.endpoint, Message(9)) == Err.OK
    m = fut.result(10)
    assert (m.kind, m.type) == (Kind.MESSAGE, 9)


def test_notify_to_a_receiver_is_delivered_at_once(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    fut = system.background(b.receive)
    wait_for(lambda: system.blocked(b.endpoint, "recv"))
    a.notify(b.endpoint)
    m = fut.result(10)
    assert (m.kind, m.source) == (Kind.NOTIFY, a.endpoint)
    assert m.aux > 0  # the timestamp


def test_sendnb_fails_with_enotready(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    assert a.sendnb(b.endpoint, Message(1)) == Err.ENOTREADY
    fut = system.background(b.receive, a.endpoint)
    wait_for(lambda: system.blocked(b.endpoint, "recv"))
    assert a.sendnb(b.endpoint, Message(2)) == Err.OK
    assert fut.result(10).type == 2


def test_three_process_cycle_is_elocked(system: SystemUnderTest) -> None:
    a, b, c = (system.connect(x, "client") for x in "abc")
    fa = system.background(a.send, b.endpoint, Message(1))
    wait_for(lambda: system.blocked(a.endpoint, "send"))
    fb = system.background(b.send, c.endpoint, Message(2))
    wait_for(lambda: system.blocked(b.endpoint, "send"))
    assert c.send(a.endpoint, Message(3)) == Err.ELOCKED
    # the cycle was refused, not formed: the chain still works once c receives
    assert c.receive(b.endpoint).type == 2
    assert fb.result(10) == Err.OK
    assert b.receive(a.endpoint).type == 1
    assert fa.result(10) == Err.OK


def test_two_senders_to_each_other_are_elocked(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    fa = system.background(a.send, b.endpoint, Message(1))
    wait_for(lambda: system.blocked(a.endpoint, "send"))
    assert b.send(a.endpoint, Message(2)) == Err.ELOCKED
    with pytest.raises(IpcError) as e:
        b.receive(b.endpoint)
    assert e.value.code == Err.ELOCKED
    b.receive(a.endpoint)
    assert fa.result(10) == Err.OK


def test_request_reply_pair_is_not_a_deadlock(system: SystemUnderTest) -> None:
    a = system.connect("a", "client")
    echo = system.endpoint_of("echo")
    for i in range(50):
        assert a.sendrec(echo, Message(1, {"i": i})).fields == {"i": i}


def test_reply_recv_reports_its_send_status(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    fut = system.background(b.reply_recv, a.endpoint, Message(0), ANY)
    wait_for(lambda: system.blocked(b.endpoint, "recv"))
    assert a.sendnb(b.endpoint, Message(4)) == Err.OK
    m = fut.result(10)
    assert m.type == 4 and m.send_status == Err.ENOTREADY  # a was not waiting for a reply


def test_getinfo_counts_the_messages_delivered_to_each_process(system: SystemUnderTest) -> None:
    """GETINFO's ``received``: every message delivered (a request, a reply, a notification);
    a message still queued, a refused send and a kernel call's answer are not counted."""
    a, b = system.connect("a", "client"), system.connect("b", "client")

    def received(endpoint: int) -> int:
        p = system.proc(endpoint)
        assert p is not None
        return int(p["received"])

    assert (received(a.endpoint), received(b.endpoint)) == (0, 0)
    fut = system.background(a.sendrec, b.endpoint, Message(10))
    wait_for(lambda: system.blocked(a.endpoint, "sendrec-send"))
    assert received(b.endpoint) == 0  # queued, not yet delivered
    b.receive()
    assert b.send(a.endpoint, Message(Err.OK)) == Err.OK
    fut.result(10)
    assert a.notify(b.endpoint) == Err.OK
    assert a.sendnb(b.endpoint, Message(1)) == Err.ENOTREADY  # b is not receiving: not counted
    b.receive()
    assert (received(a.endpoint), received(b.endpoint)) == (1, 2)  # the reply; request, notify
