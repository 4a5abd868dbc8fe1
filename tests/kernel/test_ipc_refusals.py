"""Traps that can never complete are refused at once, not left to block forever
(docs/PROTOCOL.md section 4, MINIX deadlock() and the endpoint checks of mini_send and
mini_receive).  Every call that could hang under a bug runs in the background with a deadline,
so a bug fails the test instead of stalling the suite."""
from __future__ import annotations

import os
import signal

import pytest

from minikern import ipc
from minikern.proto import Message
from minikern.const import SYSTEM, Err, Kind
from tests.conftest import SystemUnderTest, wait_for
from tests.kernel.test_death import spawn

pytestmark = pytest.mark.timeout(60)
STEP = 10  # seconds a refused trap may take to be answered: it is answered at once


def receive_error(system: SystemUnderTest, conn: ipc.Connection, src: int) -> int:
    def attempt() -> int:
        try:
            conn.receive(src)
        except ipc.IpcError as e:
            return e.code
        return Err.OK
    return int(system.background(attempt).result(STEP))


def test_two_processes_receiving_from_each_other_are_elocked(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    system.background(a.receive, b.endpoint)
    wait_for(lambda: system.blocked(a.endpoint, "recv"), what="a receiving from b")
    assert receive_error(system, b, a.endpoint) == Err.ELOCKED
    assert system.blocked(a.endpoint, "recv")  # the refusal left a's wait alone


def test_a_receive_that_closes_a_three_process_cycle_is_elocked(system: SystemUnderTest) -> None:
    a, b, c = (system.connect(x, "client") for x in "abc")
    system.background(a.receive, b.endpoint)
    wait_for(lambda: system.blocked(a.endpoint, "recv"))
    fb = system.background(b.send, c.endpoint, Message(2))
    wait_for(lambda: system.blocked(b.endpoint, "send"))
    assert receive_error(system, c, a.endpoint) == Err.ELOCKED
    assert c.receive(b.endpoint).type == 2  # the chain itself still works
    assert fb.result(STEP) == Err.OK


def test_receiving_from_a_sender_is_the_allowed_pair(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    sent = system.background(a.send, b.endpoint, Message(4))
    wait_for(lambda: system.blocked(a.endpoint, "send"))
    assert system.background(b.receive, a.endpoint).result(STEP).type == 4
    assert sent.result(STEP) == Err.OK


def test_send_and_sendrec_to_oneself_are_elocked(system: SystemUnderTest) -> None:
    a = system.connect("a", "client")
    assert system.background(a.send, a.endpoint, Message(1)).result(STEP) == Err.ELOCKED

    def sendrec_self() -> int:
        try:
            a.sendrec(a.endpoint, Message(1))
        except ipc.IpcError as e:
            return e.code
        return Err.OK
    assert system.background(sendrec_self).result(STEP) == Err.ELOCKED
    assert receive_error(system, a, a.endpoint) == Err.ELOCKED


def test_receive_from_a_closed_endpoint_is_edeadsrcdst(system: SystemUnderTest) -> None:
    a, gone = system.connect("a", "client"), system.connect("gone", "client")
    endpoint = gone.endpoint
    gone.close()
    wait_for(lambda: system.proc(endpoint) is None, what="the closed endpoint freed")
    assert receive_error(system, a, endpoint) == Err.EDEADSRCDST


def test_receive_from_a_stale_endpoint_is_edeadsrcdst(system: SystemUnderTest) -> None:
    """The slot is occupied again, by a new generation: the old endpoint names nobody."""
    mgr, a = system.connect("mgr", "client"), system.connect("a", "client")
    old, pid = spawn(system, mgr, "echo", slot=41)
    os.kill(pid, signal.SIGKILL)
    mgr.receive(SYSTEM)
    new, _ = spawn(system, mgr, "echo", slot=41)
    assert new != old
    assert receive_error(system, a, old) == Err.EDEADSRCDST


def test_a_notify_from_the_sendrec_peer_does_not_satisfy_the_sendrec(
        system: SystemUnderTest) -> None:
    """SENDREC waits for the peer's reply message; a notification, even from that very
    peer, is kept pending instead (MINIX: notifications are not delivered inside SENDREC)."""
    a, b = system.connect("a", "client"), system.connect("b", "client")
    call = system.background(a.sendrec, b.endpoint, Message(10))
    assert system.background(b.receive).result(STEP).source == a.endpoint
    wait_for(lambda: system.blocked(a.endpoint, "sendrec-recv"))
    assert b.notify(a.endpoint) == Err.OK
    assert system.blocked(a.endpoint, "sendrec-recv")
    assert not call.done()
    assert b.send(a.endpoint, Message(Err.OK, {"answer": 42})) == Err.OK
    reply = call.result(STEP)
    assert (reply.kind, reply.source, reply.fields) == (Kind.MESSAGE, b.endpoint, {"answer": 42})
    n = system.background(a.receive).result(STEP)  # the notification came afterwards
    assert (n.kind, n.source) == (Kind.NOTIFY, b.endpoint)
