"""RECEIVE's order (docs/PROTOCOL.md section 4, MINIX mini_receive): pending notifications
first, then queued kernel messages, then blocked senders, first in first out."""
from __future__ import annotations

from functools import partial

import pytest

from minikern.proto import Message
from minikern.const import ANY, SYSTEM, Err, KCall, Kind, KMsg
from tests.conftest import SystemUnderTest, wait_for
from tests.kernel.test_death import spawn

pytestmark = pytest.mark.timeout(60)


def gone(system: SystemUnderTest, endpoint: int) -> bool:
    return system.proc(endpoint) is None


def test_blocked_senders_are_received_first_in_first_out(system: SystemUnderTest) -> None:
    b = system.connect("b", "client")
    senders = [system.connect(f"s{i}", "client") for i in range(4)]
    sent = []
    for i, s in enumerate(senders):  # each queues only once the one before it is blocked
        sent.append(system.background(s.send, b.endpoint, Message(i)))
        wait_for(partial(system.blocked, s.endpoint, "send"), what=f"sender {i} blocked")
    got = [b.receive(ANY) for _ in senders]
    assert [(m.source, m.type) for m in got] == [(s.endpoint, i) for i, s in enumerate(senders)]
    assert [f.result(10) for f in sent] == [Err.OK] * len(senders)


def test_sendrec_callers_queue_in_the_same_order(system: SystemUnderTest) -> None:
    b = system.connect("b", "client")
    callers = [system.connect(f"c{i}", "client") for i in range(3)]
    for i, c in enumerate(callers):
        system.background(c.sendrec, b.endpoint, Message(i))
        wait_for(partial(system.blocked, c.endpoint, "sendrec-send"), what=f"caller {i} blocked")
    assert [b.receive().source for _ in callers] == [c.endpoint for c in callers]


def test_notifications_come_before_kernel_messages_before_senders(
        system: SystemUnderTest) -> None:
    """Queued in the opposite order of their priority, they are received in priority order."""
    b, sender, notifier = (system.connect(x, "client") for x in ("b", "sender", "notifier"))
    child, _ = spawn(system, b, "idle")
    sent = system.background(sender.send, b.endpoint, Message(77))
    wait_for(lambda: system.blocked(sender.endpoint, "send"), what="sender blocked")
    b.kcall(KCall.KILL, endpoint=child, signal=9)
    wait_for(lambda: system.proc(child) is None, what="child reaped (its EXIT queued at b)")
    assert notifier.notify(b.endpoint) == Err.OK
    first, second, third = b.receive(), b.receive(), b.receive()
    assert (first.kind, first.source) == (Kind.NOTIFY, notifier.endpoint)
    assert (second.kind, second.source, second.type) == (Kind.KERNEL, SYSTEM, KMsg.EXIT)
    assert second["endpoint"] == child
    assert (third.kind, third.source, third.type) == (Kind.MESSAGE, sender.endpoint, 77)
    assert sent.result(10) == Err.OK


def test_kernel_messages_come_in_the_order_they_were_queued(system: SystemUnderTest) -> None:
    b = system.connect("b", "client")
    children = [spawn(system, b, "idle", label=f"child{i}")[0] for i in range(3)]
    for ep in children:  # killed one at a time, so their EXITs queue in this order
        b.kcall(KCall.KILL, endpoint=ep, signal=9)
        wait_for(partial(gone, system, ep), what="child reaped")
    assert [b.receive(SYSTEM)["endpoint"] for _ in children] == children


def test_receive_from_one_source_skips_the_others_notifications(
        system: SystemUnderTest) -> None:
    b, x, y = (system.connect(n, "client") for n in "bxy")
    assert x.notify(b.endpoint) == Err.OK
    sent = system.background(y.send, b.endpoint, Message(5))
    wait_for(lambda: system.blocked(y.endpoint, "send"))
    m = b.receive(y.endpoint)
    assert (m.kind, m.source) == (Kind.MESSAGE, y.endpoint)
    assert sent.result(10) == Err.OK
    m = b.receive()  # x's notification was kept
    assert (m.kind, m.source) == (Kind.NOTIFY, x.endpoint)
