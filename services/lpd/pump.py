"""The spooler's conversation with the printer driver (runs in lpd): print each byte once.

One WRITE is in flight at a time, sent without blocking (``Loop.request``)
so the spooler keeps answering bin/lp and bin/lpq while the printer works.
Each WRITE carries LP_WRITE bytes (a driver busy with a WRITE does not answer
RS's heartbeat: short ones keep it answering under load) and a ``tag``; the driver
leaves ``(tag + i) & 0xFF`` in the port's data latch once chunk ``i``
(LPT_CHUNK bytes) is on paper (docs/PROTOCOL.md 22.1).  ``latch`` is what
the latch holds by our count, and the next WRITE is tagged ``latch + 1``.

When the driver dies under a WRITE, its answer never comes: the spooler
learns of the new instance from DS (RS's ``rs.<label>`` = ``up`` and the
label entry's new endpoint), reopens the printer, asks LPTAG, and counts
from the latch the chunks of the lost WRITE that were printed
(``(latch - tag + 1) & 0xFF``): those are confirmed, the rest is sent again.
Nothing printed is sent twice, nothing sent is taken for printed.

    DOWN --driver up--> OPENING --OK--> SYNCING --LPTAG--> READY <--answer-- WRITING
    READY --a job--> WRITING --paper out / off line--> HELD --LPSTATUS ready--> READY
    any --the driver's endpoint changes, or it dies under us--> DOWN or OPENING

``epoch`` counts driver instances: an answer from an older one (a request
that timed out, or failed after the driver changed) is ignored.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from enum import Enum

from minikern import params
from minikern.const import CharReq, Err, err_name
from minikern.loop import Loop
from minikern.proto import Message
from services.lpd.jobs import Job, Jobs, JobState

GONE = (Err.EDEADSRCDST, Err.ESRCH, Err.ECALLDENIED, Err.ERESTART)  # the driver we knew is gone


class Link(Enum):
    DOWN = "driver down"
    OPENING = "opening"
    SYNCING = "syncing"
    READY = "idle"
    WRITING = "printing"
    HELD = "held"


def chunks(count: int) -> int:
    return -(-count // params.LPT_CHUNK)


class Pump:
    def __init__(self, loop: Loop, jobs: Jobs, log: Callable[[str], None]) -> None:
        self.loop, self.jobs, self.log = loop, jobs, log
        self.link = Link.DOWN
        self.driver: int | None = None  # the printer driver's endpoint
        self.epoch = 0
        self.latch = 0  # the data latch by our count (learnt from LPTAG after each sync)
        self.inflight: tuple[Job, int, int] | None = None  # (job, bytes sent, first tag)
        self.why = "no printer driver yet"  # why the printer is not printing, for STATUS
        self.counters = {"writes": 0, "resyncs": 0, "resent_bytes": 0, "recovered_bytes": 0,
                         "bad_answers": 0}

    # -- the driver comes and goes --------------------------------------------------------

    def driver_at(self, endpoint: int | None) -> None:
        """DS says the driver runs at ``endpoint`` now (None: it is being replaced)."""
        if endpoint == self.driver and self.link != Link.DOWN:
            return
        self.epoch += 1
        self.driver = endpoint
        if endpoint is None:
            self.link, self.why = Link.DOWN, "printer driver restarting"
            return
        self.link = Link.OPENING
        self.ask(Message(CharReq.OPEN, {"minor": 0, "access": 2}), self.opened)

    def ask(self, m: Message, then: Callable[[Message], None]) -> None:
        """A request to the driver, answered to ``then`` unless the driver changed meanwhile."""
        epoch, driver = self.epoch, self.driver
        if driver is None:
            return

        def answered(a: Message) -> None:
            if epoch != self.epoch:
                return  # an answer for a driver we have left behind
            if a.type in GONE or a.type == Err.ETIMEDOUT:
                self.lost(a.type)
                return
            then(a)
        status = self.loop.request(driver, m, answered, timeout=params.LP_REQUEST_TIMEOUT)
        if status not in (Err.OK, Err.ENOTREADY):
            self.lost(status)

    def lost(self, status: int) -> None:
        """The driver did not answer: dead (DS will name the next one) or restarted under us."""
        self.epoch += 1
        if status == Err.ERESTART or status == Err.ETIMEDOUT:
            self.link = Link.OPENING  # alive but forgot our open, or slow: open and sync again
            self.why = f"printer driver {err_name(status)}"
            self.ask(Message(CharReq.OPEN, {"minor": 0, "access": 2}), self.opened)
            return
        self.link, self.why = Link.DOWN, f"printer driver gone ({err_name(status)})"

    def opened(self, a: Message) -> None:
        if a.type != Err.OK:
            self.link, self.why = Link.DOWN, f"printer refused the open ({err_name(a.type)})"
            return
        self.link = Link.SYNCING
        self.counters["resyncs"] += 1
        self.ask(Message(CharReq.IOCTL, {"minor": 0, "request": "LPTAG"}), self.synced)

    def synced(self, a: Message) -> None:
        tag = a.get("tag")
        if a.type != Err.OK or type(tag) is not int or not 0 <= tag <= 0xFF:
            self.link, self.why = Link.DOWN, "printer gave no LPTAG"
            return
        if self.inflight is not None:  # a WRITE lost with its driver: what reached the paper?
            job, sent, first = self.inflight
            done = (tag - first + 1) & 0xFF
            if done > chunks(sent):
                self.log(f"latch {tag} is not a chunk of the lost write (tag {first}, "
                         f"{chunks(sent)} chunks): taking none as printed")
                done = 0
            printed = min(sent, done * params.LPT_CHUNK)
            self.counters["recovered_bytes"] += printed
            self.counters["resent_bytes"] += sent - printed
            self.jobs.confirm(job, printed)
            self.inflight = None
        self.latch = tag
        self.link, self.why = Link.READY, ""
        self.pump()

    # -- printing ---------------------------------------------------------------------

    def pump(self) -> None:
        """Send the next piece of the first job, if the printer is ready for it."""
        if self.link != Link.READY or self.inflight is not None:
            return
        job = self.jobs.next_to_print()
        if job is None:
            return
        piece = bytes(job.data[job.printed:job.printed + params.LP_WRITE])
        if not piece:
            return  # a cancelled job's leftovers
        job.state, job.why = JobState.PRINTING, ""
        first = (self.latch + 1) & 0xFF
        self.inflight = (job, len(piece), first)
        self.link = Link.WRITING
        self.counters["writes"] += 1
        self.ask(Message(CharReq.WRITE, {"minor": 0, "data": piece, "tag": first}), self.written)

    def written(self, a: Message) -> None:
        if self.inflight is None:
            return
        job, sent, first = self.inflight
        count = a.get("count", 0)
        if type(count) is not int or not 0 <= count <= sent or (a.type == Err.OK
                                                                  and count != sent):
            # An answer that cannot be true (more printed than sent, or "done" short of it):
            # a driver bug.  Trusting it would skip or repeat bytes; the latch says what
            # reached the paper, as after a driver's death.
            self.counters["bad_answers"] += 1
            if self.counters["bad_answers"] == 1:
                self.log(f"the printer answered a write of {sent} bytes with count {count!r} "
                         f"({err_name(a.type)}): asking the latch instead (later ones counted)")
            self.link = Link.SYNCING
            self.counters["resyncs"] += 1
            self.ask(Message(CharReq.IOCTL, {"minor": 0, "request": "LPTAG"}), self.synced)
            return
        self.inflight = None
        if count:
            self.latch = (first + chunks(count) - 1) & 0xFF
        self.jobs.confirm(job, count)
        if a.type == Err.OK:
            self.link = Link.READY
            self.pump()
            return
        state = a.get("state")
        self.hold(job, state if type(state) is str else err_name(a.type))

    def hold(self, job: Job, why: str) -> None:
        if job.state == JobState.PRINTING:
            job.state, job.why = JobState.HELD, why
        self.link, self.why = Link.HELD, why
        self.loop.call_later(params.LP_RETRY, self.look)

    def look(self) -> None:
        """Held: is the printer ready again?"""
        if self.link != Link.HELD:
            return
        self.ask(Message(CharReq.IOCTL, {"minor": 0, "request": "LPSTATUS"}), self.looked)

    def looked(self, a: Message) -> None:
        state = a.get("state")
        job = self.jobs.next_to_print()
        if a.type == Err.OK and state == "ready":
            if job is not None and job.state == JobState.HELD:
                job.state, job.why = JobState.QUEUED, ""
            self.link, self.why = Link.READY, ""
            self.pump()
            return
        why = state if type(state) is str else err_name(a.type)
        if job is not None and job.state in (JobState.HELD, JobState.QUEUED):
            job.state, job.why = JobState.HELD, why
        self.link, self.why = Link.HELD, why
        self.loop.call_later(params.LP_RETRY, self.look)

    def status(self) -> dict[str, object]:
        return {"state": self.link.value if self.link != Link.HELD else self.why,
                "why": self.why, "driver": self.driver, **self.counters}


def log(text: str) -> None:
    print(f"lpd: {text}", file=sys.stderr, flush=True)
