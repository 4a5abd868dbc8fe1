"""The event loop every server runs: the kernel, file descriptors, timers, sends that never block.

MINIX servers never block on a client or a driver (VFS keeps serving while
its requests to MFS and the drivers are in flight; asynsend queues what a
busy destination cannot take yet).  ``Loop`` gives a process the same: one
turn waits on

* the kernel: a RECEIVE started without waiting (``Connection.start_receive``);
  when something else wakes the loop first the RECEIVE is ended with CANCEL,
  whose one reply is EINTR or the message that won the race, never both;
* watched file descriptors and ZeroMQ sockets (``watch``);
* timers (``call_at``, ``call_later``) on a clock passed in: the real
  monotonic clock, or a ``FakeClock`` that jumps to the next deadline as
  soon as nothing else is ready, so a test of a 30 s backoff is exact and
  instant;

and runs what is ready: callbacks first, then the kernel message is handed
back.  Callbacks and handlers may make any trap: none is in progress while
they run.  With nothing but the kernel to wait on, a turn is one blocking
RECEIVE (or REPLYRECV), the fast path of every idle server.

A process whose callbacks never trap (the board: its work is its devices and
sockets, and the kernel rarely speaks to it) sets ``hold_receive``: a turn
that something else woke leaves its RECEIVE pending for the next turn
instead of ending it with CANCEL, which would cost a round trip to the
kernel on every wakeup.  The loop's own sends (``asend``, ``request``,
``reply``) end a held RECEIVE first; a message that won that race is the
next turn's, and if it is a request its sender is waited for as below.

The loop sleeps in whole milliseconds (``zmq_poll``), so by default it
busy-waits the last fraction of a millisecond before a timer, which then
runs on time.  A process with frequent timers that can run a little late
(the board's device deadlines) sets ``timer_slack``: a wait is rounded up
to the next millisecond when that makes the timer at most this late, and
the loop sleeps instead of spinning.

Sends that must not block go through ``asend``: SENDNB now, or on ENOTREADY
into a bounded queue retried at every turn and every ``retry_every`` until
``RETRY_FOR`` has passed.  A full queue is refused at once, a give-up is
reported to the sender's ``on_fail``; both are counted, never silent.
The kernel gives a process waiting in SENDREC the first message its peer
sends it as the reply, so while a request's sender waits for this process's
answer (from the turn that received the request until the next turn) a send
to it is queued, never sent, and the answer goes out before the queue is
retried: a queued send can never pass for the answer its destination waits for.
``request`` sends one request of many in flight: it carries ``rid``, the
answer carries ``re`` (``reply`` adds it), and arrives as an ordinary
message matched here to its callback, so a server answers its own clients
out of order (a handler returning None: EDONTREPLY, answer later with
``reply``).
"""
from __future__ import annotations

import heapq
import itertools
import math
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn, Protocol

import zmq

from minikern.proto import Message
from minikern.const import ANY, Err, Kind, err_name
from minikern.ipc import KERNEL_CHECK_S, KernelGone

if TYPE_CHECKING:
    from minikern.ipc import Connection

RETRY_EVERY = 0.010  # a queued send is tried again at least this often
RETRY_FOR = 2.0  # ... and given up this long after it was first refused
QUEUE_MAX = 64  # sends queued at once, all destinations together
REQUEST_TIMEOUT = 5.0  # an outgoing request unanswered this long is failed with ETIMEDOUT

Handler = Callable[[Message], "Message | None"]


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


class Clock:
    """Real time: ``time.monotonic``."""

    fake = False

    def now(self) -> float:
        return time.monotonic()

    def advance(self, seconds: float) -> None:
        raise RuntimeError("the real clock cannot be advanced")


class FakeClock(Clock):
    """Test time: moves only by ``advance``, or when the loop has nothing else to do."""

    fake = True

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


@dataclass(order=True)
class Timer:
    when: float
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Queued:
    dst: int
    m: Message
    since: float
    on_fail: Callable[[int], None] | None


class Loop:
    def __init__(self, conn: Connection | None = None, clock: Clock | None = None,
                 queue_max: int = QUEUE_MAX, retry_for: float = RETRY_FOR,
                 retry_every: float = RETRY_EVERY) -> None:
        self.conn = conn
        self.clock = clock or Clock()
        self.queue_max, self.retry_for = queue_max, retry_for
        self.retry_every = retry_every  # a server may set its own (RS: params.RS_RETRY)
        self.counters: Counter[str] = Counter()
        self.timers: list[Timer] = []
        self.watched: dict[object, Callable[[], None]] = {}
        self.queue: deque[_Queued] = deque()
        self.requests: dict[tuple[int, int], tuple[Callable[[Message], None], Timer]] = {}
        self._seq = itertools.count()
        self._rid = itertools.count(1)
        self._retry_at: float | None = None
        self._owed: int | None = None  # the sender of the request being handled: it waits
        # in SENDREC for our answer, and would take any message from us as that answer
        self.poller: zmq.Poller | None = None  # made at the first turn that needs one
        self.hold_receive = False  # callbacks never trap: a RECEIVE may outlive its turn
        self.timer_slack = 0.0  # seconds a timer may run late so the loop need not spin
        self._receiving = False  # a RECEIVE is started and its one reply not yet taken
        self._early: Message | None = None  # that reply, taken early to make room for a send
        self.handed_back: deque[Message] = deque()  # messages another wait took (hand_back)

    def hand_back(self, m: Message) -> None:
        """A message that a wait outside the loop took (a block device's wait for its
        driver, say): the next turns return these, in order, before receiving anything new."""
        self.handed_back.append(m)

    # -- timers ------------------------------------------------------------------------

    def call_at(self, when: float, fn: Callable[[], None]) -> Timer:
        t = Timer(when, next(self._seq), fn)
        heapq.heappush(self.timers, t)
        return t

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        return self.call_at(self.clock.now() + delay, fn)

    def _next_due(self) -> float | None:
        while self.timers and self.timers[0].cancelled:
            heapq.heappop(self.timers)
        due = self.timers[0].when if self.timers else None
        if self._retry_at is not None:
            due = self._retry_at if due is None else min(due, self._retry_at)
        return due

    def _due_now(self) -> bool:
        due = self._next_due()
        return due is not None and due <= self.clock.now()

    def advance_to(self, when: float) -> int:
        """Fake time only: let time pass up to ``when``, each timer and queued-send retry
        running at its exact due time, earliest first; no kernel message is received (a test
        plays the kernel's part).  Returns the number of timers run."""
        if not self.clock.fake:
            raise RuntimeError("advance_to needs a FakeClock")
        ran = 0
        while (due := self._next_due()) is not None and due <= when:
            self.clock.advance(due - self.clock.now())
            if self._retry_at is not None and self._retry_at <= self.clock.now():
                self._retry()
            ran += self._run_timers()
        self.clock.advance(when - self.clock.now())
        return ran

    def _run_timers(self) -> int:
        """Run every timer due now, earliest first (equal times: first set, first run)."""
        ran, now = 0, self.clock.now()
        while self.timers and self.timers[0].when <= now:
            t = heapq.heappop(self.timers)
            if not t.cancelled:
                ran += 1
                t.fn()
        return ran

    # -- watched sources ---------------------------------------------------------------

    def watch(self, source: int | zmq.Socket[bytes] | _HasFileno, fn: Callable[[], None]) -> None:
        """Call ``fn`` (with no trap in progress) whenever ``source`` is readable."""
        self.watched[source] = fn
        if self.poller is not None:
            self.poller.register(source, zmq.POLLIN)

    def unwatch(self, source: int | zmq.Socket[bytes] | _HasFileno) -> None:
        if self.watched.pop(source, None) is not None and self.poller is not None:
            self.poller.unregister(source)

    def _poller(self) -> zmq.Poller:
        if self.poller is None:
            self.poller = zmq.Poller()
            if self.conn is not None:
                self.poller.register(self.conn.sock, zmq.POLLIN)
            for source in self.watched:
                self.poller.register(source, zmq.POLLIN)
        return self.poller

    # -- sends that never block ----------------------------------------------------------

    def asend(self, dst: int, m: Message, on_fail: Callable[[int], None] | None = None) -> int:
        """Send without blocking: OK (taken), ENOTREADY (queued), or the refusal.

        Sends to one destination keep their order.  ENOSPC: the queue is full
        (nothing queued).  A queued send that is finally given up calls
        ``on_fail`` with the last status.
        """
        assert self.conn is not None, "asend needs a kernel connection"
        self._release()
        if dst != self._owed and not any(q.dst == dst for q in self.queue):
            status = self.conn.sendnb(dst, m)
            if status != Err.ENOTREADY:
                if status != Err.OK:
                    self.counters["asend_refused"] += 1
                return status
        if len(self.queue) >= self.queue_max:
            self.counters["asend_queue_full"] += 1
            return Err.ENOSPC
        self.queue.append(_Queued(dst, m, self.clock.now(), on_fail))
        if self._retry_at is None:
            self._retry_at = self.clock.now() + self.retry_every
        self.counters["asend_queued"] += 1
        return Err.ENOTREADY

    def _retry(self) -> bool:
        """Try each queued send once; a destination still busy keeps the rest of its sends.

        True if the queue changed: the caller may have more to do (an ``on_fail`` ran, or the
        queue just emptied, which the turn's caller may be waiting for)."""
        if not self.queue or self.conn is None:
            self._retry_at = None
            return False
        self._release()
        gave_up = False
        busy: set[int] = set()
        now, keep = self.clock.now(), deque[_Queued]()
        for q in self.queue:
            held = q.dst in busy or q.dst == self._owed
            status = Err.ENOTREADY if held else self.conn.sendnb(q.dst, q.m)
            if status == Err.ENOTREADY and now - q.since < self.retry_for:
                busy.add(q.dst)
                keep.append(q)
            elif status != Err.OK:
                gave_up = True
                self._give_up(q, status)
        changed = gave_up or len(keep) < len(self.queue)
        self.queue = keep
        self._retry_at = now + self.retry_every if keep else None
        return changed

    def _give_up(self, q: _Queued, status: int) -> None:
        self.counters["asend_gave_up"] += 1
        print(f"loop: gave up sending type {q.m.type} to {q.dst}: {err_name(status)}",
              file=sys.stderr, flush=True)
        if q.on_fail is not None:
            q.on_fail(status)

    def _release(self) -> None:
        """End a held RECEIVE before a trap; the message that won the race waits in _early."""
        if self._receiving and self.conn is not None:
            self._receiving = False
            self.conn.cancel()
            self._early = self.conn.finish()
            self._owe(self._early)  # a request: the send that took it must not reach its sender first

    # -- requests in flight --------------------------------------------------------------

    def request(self, dst: int, m: Message, on_answer: Callable[[Message], None],
                timeout: float = REQUEST_TIMEOUT) -> int:
        """Send a request that is answered later; ``on_answer`` gets the answer, or an
        Err-typed message (ETIMEDOUT, or why the send failed).  Returns the send's status."""
        rid = next(self._rid)
        key = (dst, rid)

        def failed(status: int) -> None:
            pending = self.requests.pop(key, None)
            if pending is not None:
                pending[1].cancel()
                self.counters["request_failed"] += 1
                pending[0](Message(status))

        self.requests[key] = (on_answer, self.call_later(timeout, lambda: failed(Err.ETIMEDOUT)))
        status = self.asend(dst, Message(m.type, {**m.fields, "rid": rid}), on_fail=failed)
        if status not in (Err.OK, Err.ENOTREADY):
            self.requests.pop(key)[1].cancel()
        return status

    def reply(self, request: Message, answer: Message) -> int:
        """Answer ``request`` now or later (EDONTREPLY); an async request gets its ``re``."""
        rid = request.get("rid")
        if type(rid) is int:
            answer = Message(answer.type, {**answer.fields, "re": rid})
        return self.asend(request.source, answer)

    def _answered(self, m: Message) -> bool:
        """True if ``m`` answers one of our requests (it is then handed to its callback)."""
        re = m.get("re")
        if m.kind != Kind.MESSAGE or type(re) is not int:
            return False
        pending = self.requests.pop((m.source, re), None)
        if pending is None:  # too late (timed out), or never asked: not a request either
            self.counters["answer_unmatched"] += 1
            return True
        pending[1].cancel()
        pending[0](m)
        return True

    # -- the turn ----------------------------------------------------------------------

    def turn(self, reply_to: int | None = None, reply: Message | None = None) -> Message | None:
        """Wait for the first thing ready, run the callbacks due, return the kernel's message
        (None if it was the answer to one of our requests, now given to its callback).

        With ``reply``, the RECEIVE is a REPLYRECV answering ``reply_to``.
        """
        conn, answered = self.conn, reply is not None
        if reply is not None:
            self._release()  # a held RECEIVE cannot carry the reply
        if conn is not None and reply is not None and reply_to is not None \
                and (self._early is not None or self.handed_back
                     or any(q.dst == reply_to for q in self.queue)):
            # the answer first (see the docstring), on its own: this turn may not RECEIVE
            if conn.sendnb(reply_to, reply) != Err.OK:
                self.counters["reply_failed"] += 1
            reply_to = reply = None
        self._owed = None
        self._owe(self._early)  # a message a send took early is still owed its answer
        if self._retry() and not answered:  # (a turn that answers goes on to RECEIVE)
            return None
        if self._early is not None:  # a send ended the held RECEIVE: its message is this turn's
            early, self._early = self._early, None
            return None if self._answered(early) else early
        if self.handed_back:  # taken by another wait: served before anything new
            back = self.handed_back.popleft()
            self._owe(back)
            return None if self._answered(back) else back
        if (conn is not None and not self._receiving and not self.watched and not self.queue
                and self._next_due() is None):
            if reply is not None and reply_to is not None:  # the fast path: nothing else to wait on
                got = conn.reply_recv(reply_to, reply)
                if got.send_status != Err.OK:
                    self.counters["reply_failed"] += 1
            else:
                got = conn.receive()
            self._owe(got)
            return None if self._answered(got) else got
        poller = self._poller()
        if conn is not None and not self._receiving:
            conn.start_receive(ANY, reply_to, reply)
            self._receiving = True
        while True:
            due = self._next_due()
            wait = KERNEL_CHECK_S if due is None else min(KERNEL_CHECK_S,
                                                          max(0.0, due - self.clock.now()))
            events = dict(poller.poll(0 if self.clock.fake and due is not None
                                      else self._poll_ms(wait)))
            if not events and self.clock.fake and due is not None:
                self.clock.advance(due - self.clock.now())
            m: Message | None = None
            if conn is not None and conn.sock in events:
                self._receiving = False
                m = conn.finish()
                self._owe(m)
            ready = [self.watched[s] for s in events if s in self.watched]
            if conn is not None and m is None and conn.sock not in events:
                if not (ready or self._due_now()):
                    if not events and wait >= KERNEL_CHECK_S and not conn.kernel_alive():
                        raise KernelGone()
                    continue
                if not self.hold_receive:
                    self._receiving = False
                    conn.cancel()
                    m = conn.finish()
                    self._owe(m)
            elif conn is None and not (ready or self._due_now()):
                continue
            for fn in ready:
                fn()
            self._run_timers()
            if m is None:
                return None
            if m.send_status not in (Err.OK, Err.EINTR):
                self.counters["reply_failed"] += 1
            return None if self._answered(m) else m

    def _poll_ms(self, wait: float) -> int:
        """``wait`` in whole milliseconds: rounded up if the slack allows, else down."""
        ms = wait * 1000
        up = math.ceil(ms)
        return up if up - ms <= self.timer_slack * 1000 else int(ms)

    def _owe(self, m: Message | None) -> None:
        """Note the sender of a request it waits in SENDREC for (no ``rid``: not asynchronous)."""
        if m is not None and m.kind == Kind.MESSAGE and m.type > 0 \
                and type(m.get("rid")) is not int:
            self._owed = m.source

    def run(self, handler: Handler) -> NoReturn:
        """Serve forever: each kernel message to ``handler``; its returned Message is the reply."""
        reply_to: int | None = None
        reply: Message | None = None
        while True:
            m = self.turn(reply_to, reply)
            reply_to = reply = None
            if m is None:
                continue
            out = handler(m)
            if out is None or m.kind != Kind.MESSAGE:
                continue
            if type(m.get("rid")) is int:  # an async requester: it may be busy, so queue it
                self.reply(m, out)
            else:
                reply_to, reply = m.source, out
