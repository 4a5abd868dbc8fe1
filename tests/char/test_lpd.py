"""The spooler's logic without a system (services/lpd/jobs.py and pump.py): the jobs' rules
(docs/PROTOCOL.md section 23) and the count of printed bytes across a driver that dies in the
middle of a WRITE, with the driver and the loop played by the test."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from minikern import params
from minikern.const import LP_MAX_JOB, LP_MAX_JOBS, CharReq, Err
from minikern.proto import Message
from services.lpd.jobs import Jobs, JobState, Refused
from services.lpd.pump import Link, Pump

pytestmark = pytest.mark.timeout(10)
OWNER, OTHER, DRIVER, NEW_DRIVER = 50, 60, 70, 80


@dataclass
class FakeLoop:
    asked: list[tuple[int, Message, Callable[[Message], None]]] = field(default_factory=list)
    timers: list[Callable[[], None]] = field(default_factory=list)

    def request(self, dst: int, m: Message, on_answer: Callable[[Message], None],
                timeout: float = 5.0) -> int:
        self.asked.append((dst, m, on_answer))
        return Err.OK

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self.timers.append(fn)

    def answer(self, reply: Message) -> Message:
        """Answer the oldest request; returns the request answered."""
        _, m, then = self.asked.pop(0)
        then(reply)
        return m


def refused(status: int, fn: Callable[..., object], *args: object) -> None:
    with pytest.raises(Refused) as e:
        fn(*args)
    assert e.value.status == status


def test_jobs_are_taken_in_order_from_their_submitter_only() -> None:
    jobs = Jobs()
    refused(Err.EINVAL, jobs.submit, "", 3, OWNER)
    refused(Err.EINVAL, jobs.submit, "a", -1, OWNER)
    refused(Err.EFBIG, jobs.submit, "a", LP_MAX_JOB + 1, OWNER)
    job = jobs.submit("a", 5, OWNER)
    refused(Err.ESRCH, jobs.append, job.job, 0, b"ab", OTHER)
    refused(Err.EINVAL, jobs.append, job.job, 1, b"ab", OWNER)  # out of order
    refused(Err.EINVAL, jobs.append, job.job, 0, b"abcdef", OWNER)  # past size
    assert jobs.append(job.job, 0, b"abc", OWNER).state == JobState.RECEIVING
    assert jobs.next_to_print() is None
    assert jobs.append(job.job, 3, b"de", OWNER).state == JobState.QUEUED
    assert jobs.next_to_print() is job
    jobs.confirm(job, 2)
    jobs.confirm(job, 99)  # never past size
    assert job.printed == 5 and job.state == JobState.DONE and jobs.status()["jobs"] == []
    for n in range(LP_MAX_JOBS):
        jobs.submit(f"j{n}", 1, OWNER)
    refused(Err.ENOSPC, jobs.submit, "more", 1, OWNER)
    refused(Err.ESRCH, jobs.cancel, 999)


def pump_with_job(size: int) -> tuple[Pump, FakeLoop, Jobs, bytes]:
    loop, jobs = FakeLoop(), Jobs()
    pump = Pump(loop, jobs, lambda text: None)  # type: ignore[arg-type]
    data = bytes(range(256)) * (size // 256 + 1)
    job = jobs.submit("j", size, OWNER)
    jobs.append(job.job, 0, data[:size], OWNER)
    pump.driver_at(DRIVER)
    assert loop.answer(Message(Err.OK)).type == CharReq.OPEN
    assert loop.answer(Message(Err.OK, {"tag": 0x10})).get("request") == "LPTAG"
    return pump, loop, jobs, data[:size]


def test_a_driver_dead_under_a_write_leaves_the_latch_to_say_how_much_was_printed() -> None:
    chunk, write = params.LPT_CHUNK, params.LP_WRITE
    pump, loop, jobs, data = pump_with_job(3 * write)
    first = loop.asked[0][1]
    assert first.type == CharReq.WRITE and first["tag"] == 0x11 and first["data"] == data[:write]
    loop.answer(Message(Err.OK, {"count": write}))  # printed: the latch moved on
    second = loop.asked[0][1]
    assert second["tag"] == (0x11 + write // chunk) & 0xFF
    assert second["data"] == data[write:2 * write]
    loop.asked.clear()  # the driver dies with the second WRITE: no answer ever comes
    pump.driver_at(None)
    assert pump.link == Link.DOWN
    pump.driver_at(NEW_DRIVER)
    loop.answer(Message(Err.OK))  # OPEN
    loop.answer(Message(Err.OK, {"tag": (second["tag"] + 2) & 0xFF}))  # 3 chunks reached paper
    job = jobs.next_to_print()
    assert job is not None and job.printed == write + 3 * chunk
    third = loop.asked[0][1]
    assert third["data"] == data[write + 3 * chunk:write + 3 * chunk + write]
    assert third["tag"] == (second["tag"] + 3) & 0xFF
    assert pump.counters["recovered_bytes"] == 3 * chunk


@pytest.mark.parametrize("count", [10**6, -1, "64", None, "ok-short"])
def test_an_answer_that_cannot_be_true_is_not_trusted_the_latch_decides(count: object) -> None:
    """A driver that answers a WRITE with more bytes than were sent, a count that is not one,
    or OK short of what was sent (a fault in it, or a lie): the spooler asks the latch what
    reached the paper, as after the driver's death, so no byte is skipped or printed twice."""
    chunk, write = params.LPT_CHUNK, params.LP_WRITE
    pump, loop, jobs, data = pump_with_job(2 * write)
    first = loop.asked[0][1]
    answer = {"count": write - chunk} if count == "ok-short" else {"count": count}
    loop.answer(Message(Err.OK, answer))
    sync = loop.asked[0][1]
    assert sync.type == CharReq.IOCTL and sync["request"] == "LPTAG"
    assert pump.counters["bad_answers"] == 1
    job = jobs.next_to_print()
    assert job is not None and job.printed == 0  # nothing taken from the answer
    loop.answer(Message(Err.OK, {"tag": (first["tag"] + 1) & 0xFF}))  # 2 chunks on paper
    assert job.printed == 2 * chunk
    again = loop.asked[0][1]
    assert again["data"] == data[2 * chunk:2 * chunk + write]
    assert again["tag"] == (first["tag"] + 2) & 0xFF


def test_a_write_lost_before_any_chunk_is_sent_again_whole() -> None:
    pump, loop, jobs, data = pump_with_job(1000)
    sent = loop.asked.pop(0)[1]
    pump.driver_at(NEW_DRIVER)
    loop.answer(Message(Err.OK))
    loop.answer(Message(Err.OK, {"tag": (sent["tag"] - 1) & 0xFF}))  # the latch did not move
    again = loop.asked[0][1]
    assert again["data"] == data and again["tag"] == sent["tag"]


def test_paper_out_holds_the_job_until_the_printer_is_ready() -> None:
    pump, loop, jobs, data = pump_with_job(2 * params.LPT_CHUNK + 10)
    loop.answer(Message(Err.EAGAIN, {"count": params.LPT_CHUNK, "state": "paper out"}))
    job = jobs.next_to_print()
    assert job is not None and (job.state, job.why, job.printed) == (JobState.HELD, "paper out",
                                                                    params.LPT_CHUNK)
    assert pump.status()["state"] == "paper out" and loop.asked == []
    loop.timers.pop()()  # LP_RETRY later: look
    assert loop.answer(Message(Err.OK, {"state": "paper out"})).get("request") == "LPSTATUS"
    loop.timers.pop()()
    loop.answer(Message(Err.OK, {"state": "ready"}))
    resumed = loop.asked[0][1]
    assert resumed["data"] == data[params.LPT_CHUNK:] and resumed["tag"] == 0x12
    loop.answer(Message(Err.OK, {"count": len(resumed["data"])}))
    assert job.state == JobState.DONE and pump.link == Link.READY
