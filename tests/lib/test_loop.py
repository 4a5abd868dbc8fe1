"""The event loop (minikern/loop.py): timers on a fake clock, sends that never block, requests
answered out of order, and descriptors that wake a loop whose RECEIVE is pending."""
from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
import zmq

from minikern.proto import Message
from minikern.const import Err, Kind
from minikern.loop import FakeClock, Loop
from tests.conftest import SystemUnderTest, wait_for

pytestmark = pytest.mark.timeout(60)


def record(log: list[tuple[str, float]], clock: FakeClock, name: str) -> Callable[[], None]:
    return lambda: log.append((name, clock.now()))


def test_timers_fire_in_deadline_order_at_exact_fake_times() -> None:
    clock = FakeClock(100.0)
    loop, log = Loop(clock=clock), list[tuple[str, float]]()
    loop.call_later(30.0, record(log, clock, "backoff"))  # a 30 s backoff, instantly
    loop.call_later(1.0, record(log, clock, "first"))
    doomed = loop.call_at(101.0, record(log, clock, "cancelled"))  # due with "first"
    loop.call_at(101.0, record(log, clock, "same time, set later"))
    loop.call_later(2.5, record(log, clock, "second"))
    doomed.cancel()
    started = time.monotonic()
    while len(log) < 4:
        loop.turn()
    assert log == [("first", 101.0), ("same time, set later", 101.0), ("second", 102.5),
                   ("backoff", 130.0)]
    assert time.monotonic() - started < 1.0  # fake time: nothing was slept


def test_a_timer_set_by_a_timer_runs_on_the_later_turn() -> None:
    clock = FakeClock()
    loop, log = Loop(clock=clock), list[tuple[str, float]]()
    loop.call_later(1.0, lambda: loop.call_later(0.25, record(log, clock, "rearmed")))
    while not log:
        loop.turn()
    assert log == [("rearmed", 1.25)]


def test_an_unanswered_request_fails_with_etimedout_at_its_deadline(
        system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    clock = FakeClock()
    loop = Loop(a, clock)
    answers: list[tuple[int, float]] = []
    taken = system.background(b.receive)  # b takes the request and never answers
    wait_for(lambda: system.blocked(b.endpoint, "recv"))
    assert loop.request(b.endpoint, Message(9), lambda m: answers.append((m.type, clock.now())),
                        timeout=5.0) == Err.OK
    assert taken.result(10).type == 9
    while not answers:
        loop.turn()
    assert answers == [(Err.ETIMEDOUT, 5.0)]
    assert not system.blocked(a.endpoint, "recv")  # the pending RECEIVE was cancelled


def test_the_retry_queue_is_bounded_and_a_give_up_is_reported(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")  # b never receives
    clock = FakeClock()
    loop = Loop(a, clock, queue_max=3, retry_for=2.0)
    failed: list[tuple[int, int, float]] = []
    for n in range(3):
        assert loop.asend(b.endpoint, Message(n),
                          on_fail=lambda st, n=n: failed.append((n, st, clock.now()))) \
            == Err.ENOTREADY
    assert loop.asend(b.endpoint, Message(3)) == Err.ENOSPC  # full: refused, not dropped
    assert loop.counters["asend_queue_full"] == 1
    while len(failed) < 3:
        loop.turn()
    assert [(n, st) for n, st, _ in failed] == [(0, Err.ENOTREADY), (1, Err.ENOTREADY),
                                                (2, Err.ENOTREADY)]
    assert all(2.0 <= t <= 2.1 for _, _, t in failed)  # given up once 2 s have passed, not later
    assert loop.counters["asend_gave_up"] == 3 and not loop.queue


def test_queued_sends_reach_a_busy_destination_in_order(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    loop = Loop(a, retry_for=30.0)
    assert loop.asend(b.endpoint, Message(1)) == Err.ENOTREADY
    assert loop.asend(b.endpoint, Message(2)) == Err.ENOTREADY  # queued behind the first
    got = system.background(lambda: [b.receive().type for _ in range(2)])
    while loop.queue:
        loop.turn()
    assert got.result(10) == [1, 2]


class Stop(Exception):
    pass


def test_requests_in_flight_are_answered_out_of_order(system: SystemUnderTest) -> None:
    c, s = system.connect("c", "client"), system.connect("s", "client")
    server = Loop(s)
    held: list[Message] = []

    def handle(m: Message) -> Message | None:
        if m.type == 99:
            raise Stop
        if m.type == 1:  # answered later: EDONTREPLY
            held.append(m)
            return None
        server.reply(m, Message(Err.OK, {"n": m.get("n")}))  # the later request answered first
        server.reply(held.pop(), Message(Err.OK, {"n": 1}))
        return None

    def serve() -> None:
        try:
            server.run(handle)
        except Stop:
            pass

    running = system.background(serve)
    client = Loop(c)
    answers: list[tuple[int, int, object]] = []
    for n in (1, 2):
        st = client.request(s.endpoint, Message(n, {"n": n}),
                            lambda m, n=n: answers.append((n, m.source, m.get("n"))))
        assert st in (Err.OK, Err.ENOTREADY)
    deadline = time.monotonic() + 10
    while len(answers) < 2 and time.monotonic() < deadline:
        client.turn()
    # each answer reached the callback of its own request, in the order they were given
    assert answers == [(2, s.endpoint, 2), (1, s.endpoint, 1)]
    assert not client.requests  # each answer matched its own request
    assert client.asend(s.endpoint, Message(99)) in (Err.OK, Err.ENOTREADY)
    while client.queue:
        client.turn()
    running.result(10)


def test_a_pipe_and_a_zmq_socket_wake_a_loop_whose_receive_is_pending(
        system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    loop, woke = Loop(b), list[str]()
    r, w = os.pipe()
    ctx = zmq.Context.instance()
    inside, outside = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    inside.bind("inproc://loop-test")
    outside.connect("inproc://loop-test")
    try:
        loop.watch(r, lambda: woke.append(f"pipe {os.read(r, 10)!r}"))
        loop.watch(inside, lambda: woke.append(f"zmq {inside.recv()!r}"))

        def poke(fn: Callable[[], object]) -> None:
            wait_for(lambda: system.blocked(b.endpoint, "recv"), what="RECEIVE pending")
            fn()

        for poker, expect in ((lambda: os.write(w, b"x"), "pipe b'x'"),
                              (lambda: outside.send(b"y"), "zmq b'y'")):
            fut = system.background(poke, poker)
            assert loop.turn() is None  # woken by the source, not by a message
            fut.result(10)
            assert woke[-1] == expect
            assert not system.blocked(b.endpoint, "recv")
        fut = system.background(poke, lambda: a.notify(b.endpoint))
        m = loop.turn()  # the kernel still gets through, and nothing was lost on the way
        fut.result(10)
        assert m is not None and (m.source, m.kind) == (a.endpoint, Kind.NOTIFY)
        assert woke == ["pipe b'x'", "zmq b'y'"]
    finally:
        inside.close()
        outside.close()
        os.close(r)
        os.close(w)


def test_a_reply_given_to_a_turn_is_sent_even_when_the_queue_moved(
        system: SystemUnderTest) -> None:
    a, b, c = (system.connect(x, "client") for x in "abc")
    loop = Loop(a, retry_for=30.0)
    assert loop.asend(b.endpoint, Message(1)) == Err.ENOTREADY
    asked = system.background(c.sendrec, a.endpoint, Message(5))
    req = loop.turn()
    while req is None:  # the queued send may get through first
        req = loop.turn()
    assert req.source == c.endpoint
    taken = system.background(b.receive)
    wait_for(lambda: system.blocked(b.endpoint, "recv"))
    # the queue empties on this turn, which goes on to wait for the next message
    turned = system.background(loop.turn, req.source, Message(Err.OK, {"answer": 42}))
    assert taken.result(10).type == 1
    assert asked.result(10).fields == {"answer": 42}
    assert c.notify(a.endpoint) == Err.OK
    m = turned.result(10)
    assert m is not None and (m.source, m.kind) == (c.endpoint, Kind.NOTIFY)


def poke_when_receiving(system: SystemUnderTest, endpoint: int, fn: Callable[[], object]) -> None:
    wait_for(lambda: system.blocked(endpoint, "recv"), what="RECEIVE pending")
    fn()


def test_a_held_receive_outlives_a_wakeup_and_still_brings_the_kernels_message(
        system: SystemUnderTest) -> None:
    """hold_receive: a wakeup by a descriptor ends no RECEIVE (no CANCEL, no round trip);
    the same RECEIVE still brings the next message."""
    a, b = system.connect("a", "client"), system.connect("b", "client")
    loop, woke = Loop(b), list[bytes]()
    loop.hold_receive = True
    r, w = os.pipe()
    try:
        loop.watch(r, lambda: woke.append(os.read(r, 10)))
        for _ in range(3):
            fut = system.background(poke_when_receiving, system, b.endpoint,
                                     lambda: os.write(w, b"x"))
            assert loop.turn() is None
            fut.result(10)
            assert system.blocked(b.endpoint, "recv")  # the RECEIVE is still the kernel's
        fut = system.background(poke_when_receiving, system, b.endpoint,
                                lambda: a.notify(b.endpoint))
        m = loop.turn()
        fut.result(10)
        assert m is not None and (m.source, m.kind) == (a.endpoint, Kind.NOTIFY)
        assert woke == [b"x"] * 3
    finally:
        os.close(r)
        os.close(w)


def test_a_send_ends_a_held_receive_and_the_message_that_won_is_the_next_turns(
        system: SystemUnderTest) -> None:
    a, b, c = (system.connect(x, "client") for x in "abc")
    loop = Loop(b, retry_for=30.0)
    loop.hold_receive = True
    r, w = os.pipe()
    try:
        loop.watch(r, lambda: None if os.read(r, 10) else None)
        fut = system.background(poke_when_receiving, system, b.endpoint, lambda: os.write(w, b"x"))
        assert loop.turn() is None
        fut.result(10)
        assert a.notify(b.endpoint) == Err.OK  # taken by the held RECEIVE, not yet read
        wait_for(lambda: not system.blocked(b.endpoint, "recv"), what="the notification taken")
        got = system.background(c.receive)
        wait_for(lambda: system.blocked(c.endpoint, "recv"))
        assert loop.asend(c.endpoint, Message(7)) == Err.OK  # the send is made, in order
        assert got.result(10).type == 7
        fallback = loop.call_later(5.0, lambda: None)
        m = loop.turn()  # the notification that won the race, not lost and not late
        assert m is not None and (m.source, m.kind) == (a.endpoint, Kind.NOTIFY)
        fallback.cancel()
        got = system.background(c.receive)  # again, with nothing waiting: CANCEL ends it
        wait_for(lambda: system.blocked(c.endpoint, "recv"))
        fut = system.background(poke_when_receiving, system, b.endpoint, lambda: os.write(w, b"y"))
        assert loop.turn() is None
        fut.result(10)
        assert loop.asend(c.endpoint, Message(8)) == Err.OK
        assert got.result(10).type == 8
        fut = system.background(poke_when_receiving, system, b.endpoint,
                                lambda: a.notify(b.endpoint))
        m = loop.turn()
        fut.result(10)
        assert m is not None and (m.source, m.kind) == (a.endpoint, Kind.NOTIFY)
    finally:
        os.close(r)
        os.close(w)


class RecordingPoller(zmq.Poller):
    """A poller that notes each wait it is asked for, and when."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self.clock = clock
        self.calls: list[tuple[int | None, float]] = []

    def poll(self, timeout: int | None = None) -> list[tuple[object, int]]:
        self.calls.append((timeout, self.clock()))
        return super().poll(timeout)


def test_with_a_timer_slack_the_loop_sleeps_past_a_fraction_of_a_millisecond() -> None:
    """zmq_poll sleeps in whole milliseconds: with 1 ms of slack a timer 2.5 ms away is slept
    for (3 ms), never spun for, and still never runs early."""
    loop = Loop()
    loop.timer_slack = 0.001
    recorder = RecordingPoller(loop.clock.now)
    loop.poller = recorder
    start = loop.clock.now()
    dues = [start + 0.0025 * k for k in range(1, 11)]
    ran: list[float] = []
    for due in dues:
        loop.call_at(due, lambda: ran.append(loop.clock.now()))
    while len(ran) < len(dues):
        loop.turn()
    assert all(t >= due for t, due in zip(ran, dues, strict=True))  # never early
    spun = [(timeout, t) for timeout, t in recorder.calls
            if timeout == 0 and t < dues[sum(r <= t for r in ran)]]
    assert spun == []  # a busy poll only ever when a timer was already due


def test_a_send_to_a_waiting_requester_never_passes_for_its_answer(
        system: SystemUnderTest) -> None:
    """The kernel hands a process in SENDREC the first message from its peer as the reply: a
    send the server makes to its requester (a queued one, or one made by a timer or a handler
    before the answer) must follow the answer, not replace it (RS publishing to DS while DS
    waits for the answer to its heartbeat PING lost the publication that way)."""
    a, c = system.connect("a", "client"), system.connect("c", "client")
    loop = Loop(a, retry_for=30.0)
    asked = system.background(c.sendrec, a.endpoint, Message(5))
    wait_for(lambda: system.blocked(c.endpoint, "sendrec-send"), what="the request waiting")
    loop.call_later(0.0, lambda: loop.asend(c.endpoint, Message(7, {"from": "timer"})))
    req = loop.turn()  # takes the request, then runs the timer: c waits for its answer now
    assert req is not None and req.source == c.endpoint
    assert loop.asend(c.endpoint, Message(6, {"from": "handler"})) == Err.ENOTREADY
    loop.turn(req.source, Message(Err.OK, {"answer": 42}))  # returns at the queue's retry
    assert asked.result(10).fields == {"answer": 42}
    later = system.background(lambda: [c.receive().fields["from"] for _ in range(2)])
    while loop.queue:
        loop.turn()
    assert later.result(10) == ["timer", "handler"]  # after the answer, in the order sent


def test_a_request_a_send_takes_from_a_held_receive_is_answered_before_that_send(
        system: SystemUnderTest) -> None:
    """hold_receive and the requester rule together: the send that ends a held RECEIVE, and
    any queued send, wait while the request that RECEIVE took waits for its answer."""
    a, c = system.connect("a", "client"), system.connect("c", "client")
    loop = Loop(a, retry_for=30.0)
    loop.hold_receive = True
    r, w = os.pipe()
    try:
        loop.watch(r, lambda: None if os.read(r, 10) else None)
        fut = system.background(poke_when_receiving, system, a.endpoint, lambda: os.write(w, b"x"))
        assert loop.turn() is None
        fut.result(10)
        asked = system.background(c.sendrec, a.endpoint, Message(5))
        wait_for(lambda: system.blocked(c.endpoint, "sendrec-recv"), what="the request taken")
        assert loop.asend(c.endpoint, Message(7, {"from": "callback"})) == Err.ENOTREADY
        req = loop.turn()  # the request the held RECEIVE took; the queued send still waits
        assert req is not None and (req.source, req.type) == (c.endpoint, 5)
        assert system.blocked(c.endpoint, "sendrec-recv")
        loop.turn(req.source, Message(Err.OK, {"answer": 42}))
        assert asked.result(10).fields == {"answer": 42}
        later = system.background(c.receive)
        while loop.queue:
            loop.turn()
        assert later.result(10).fields == {"from": "callback"}
    finally:
        os.close(r)
        os.close(w)


def test_handed_back_messages_are_served_in_order_before_newer_ones_and_a_reply_still_goes(
        system: SystemUnderTest) -> None:
    """A wait outside the loop (a block device waiting for its driver) took two requests:
    the next turns give them back in the order they came, before a message that arrived
    after them, and the answer the turn carries reaches its SENDREC caller first."""
    a, b, c = (system.connect(x, "client") for x in "abc")
    loop = Loop(a)
    asked = system.background(c.sendrec, a.endpoint, Message(5))
    req = loop.turn()
    assert req is not None and req.source == c.endpoint
    loop.hand_back(Message(7, {"n": 1}, source=b.endpoint))
    loop.hand_back(Message(7, {"n": 2}, source=b.endpoint))
    assert b.notify(a.endpoint) == Err.OK  # newer than both: served after them
    first = loop.turn(req.source, Message(Err.OK, {"answer": 42}))
    assert asked.result(10).fields == {"answer": 42}
    second = loop.turn()
    third = loop.turn()
    assert [(m.type, m.get("n")) for m in (first, second) if m is not None] == [(7, 1), (7, 2)]
    assert third is not None and third.kind == Kind.NOTIFY and not loop.handed_back
