"""The character driver framework (docs/PROTOCOL.md section 22), driven directly: a fake
context records what the framework answers now and what it sends later, so every rule is
checked exactly and at once (the booted driver is tests/char/test_printer.py's)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from drivers.char import SUSPEND, Answer, CharDriver, Framework, Request
from minikern.const import CDEV_MAX_IO, CharFlag, CharReq, Err, SelOp
from minikern.proto import Message

pytestmark = pytest.mark.timeout(10)
ALICE, BOB = 100, 200


@dataclass
class FakeLoop:
    sent: list[tuple[int, Message]] = field(default_factory=list)

    def reply(self, request: Message, answer: Message) -> int:
        rid = request.get("rid")
        fields = {**answer.fields, "re": rid} if type(rid) is int else answer.fields
        return self.asend(request.source, Message(answer.type, fields))

    def asend(self, dst: int, m: Message) -> int:
        self.sent.append((dst, m))
        return Err.OK


@dataclass
class FakeContext:
    restarted: bool = False
    label: str = "pipe"
    loop: FakeLoop = field(default_factory=FakeLoop)


class Pipe(CharDriver):
    """Minor 0: what is written is read back; a read with nothing to read waits."""

    minors = (0, 1)

    def __init__(self) -> None:
        self.buffer = b""
        self.cancelled: list[int] = []

    def init(self, fw: Framework) -> None:
        self.fw = fw

    def read(self, req: Request) -> Answer:
        if not self.buffer:
            return SUSPEND
        data, self.buffer = self.buffer[:req.count], self.buffer[req.count:]
        return Message(Err.OK, {"data": data})

    def write(self, req: Request) -> Answer:
        self.buffer += req.data
        for waiting in self.fw.suspended(req.minor, CharReq.READ):
            answer = self.read(waiting)
            assert isinstance(answer, Message)
            self.fw.reply(waiting, answer)
        self.fw.select_ready(req.minor, SelOp.RD)
        return Message(Err.OK, {"count": len(req.data)})

    def select(self, minor: int, ops: SelOp) -> SelOp:
        return (SelOp.RD if self.buffer else SelOp.NONE) | (ops & SelOp.WR)

    def cancel(self, req: Request) -> None:
        self.cancelled.append(req.id)


def framework(restarted: bool = False) -> tuple[Framework, Pipe, FakeLoop]:
    drv = Pipe()
    fw = Framework(drv)
    ctx = FakeContext(restarted=restarted)
    fw.ctx, fw.restarted = ctx, restarted  # type: ignore[assignment]
    drv.init(fw)
    return fw, drv, ctx.loop


def ask(fw: Framework, caller: int, req: int, **fields: Any) -> Message | None:
    return fw.dispatch(Message(req, fields, source=caller))


def status(answer: Message | None) -> int | None:
    return None if answer is None else answer.type


def test_a_read_with_nothing_to_read_is_suspended_and_answered_when_data_comes() -> None:
    fw, _, loop = framework()
    assert status(ask(fw, ALICE, CharReq.OPEN, minor=0)) == Err.OK
    assert status(ask(fw, BOB, CharReq.OPEN, minor=0)) == Err.OK
    assert ask(fw, ALICE, CharReq.READ, minor=0, count=3, rid=7) is None  # suspended
    assert [r.id for r in fw.suspended(0, CharReq.READ)] == [7]
    assert loop.sent == []
    written = ask(fw, BOB, CharReq.WRITE, minor=0, data=b"hello")
    assert written is not None and written["count"] == 5
    dst, late = loop.sent[0]
    assert (dst, late.type, late["data"], late["re"]) == (ALICE, Err.OK, b"hel", 7)
    assert fw.suspended() == []
    answer = ask(fw, ALICE, CharReq.READ, minor=0, count=10)  # data waiting: at once
    assert answer is not None and answer["data"] == b"lo"


def test_cancel_drops_the_callers_suspended_request_and_answers_it_eintr() -> None:
    fw, drv, loop = framework()
    ask(fw, ALICE, CharReq.OPEN, minor=0)
    assert ask(fw, ALICE, CharReq.READ, minor=0, id=5) is None
    assert ask(fw, ALICE, CharReq.READ, minor=0, id=5) is not None  # same id twice: EBUSY
    other = ask(fw, BOB, CharReq.CANCEL, minor=0, id=5)  # not Bob's to cancel
    assert other is not None and other["cancelled"] is False and len(fw.suspended()) == 1
    done = ask(fw, ALICE, CharReq.CANCEL, minor=0, id=5)
    assert done is not None and (done.type, done["cancelled"]) == (Err.OK, True)
    assert drv.cancelled == [5] and fw.suspended() == []
    assert [(d, m.type) for d, m in loop.sent] == [(ALICE, Err.EINTR)]
    ask(fw, BOB, CharReq.OPEN, minor=0)
    ask(fw, BOB, CharReq.WRITE, minor=0, data=b"x")  # nobody waits any more
    assert len(loop.sent) == 1
    late = ask(fw, ALICE, CharReq.CANCEL, minor=0, id=5)  # answered already: too late, OK
    assert late is not None and (late.type, late["cancelled"]) == (Err.OK, False)


def test_nonblocking_read_is_eagain_and_close_ends_the_callers_waits() -> None:
    fw, _, loop = framework()
    ask(fw, ALICE, CharReq.OPEN, minor=0)
    assert status(ask(fw, ALICE, CharReq.READ, minor=0, flags=int(CharFlag.NONBLOCK))) \
        == Err.EAGAIN
    assert ask(fw, ALICE, CharReq.READ, minor=0, id=1) is None
    assert status(ask(fw, ALICE, CharReq.CLOSE, minor=0)) == Err.OK
    assert fw.suspended() == [] and [m.type for _, m in loop.sent] == [Err.EINTR]


def test_bad_requests_get_the_protocols_errors() -> None:
    fw, _, _ = framework()
    assert status(ask(fw, ALICE, CharReq.OPEN, minor=9)) == Err.ENXIO  # unknown minor
    assert status(ask(fw, ALICE, CharReq.OPEN, minor="0")) == Err.EINVAL
    assert status(ask(fw, ALICE, CharReq.OPEN, minor=0, access=4)) == Err.EINVAL
    assert status(ask(fw, ALICE, CharReq.READ, minor=0)) == Err.EBADF  # closed device
    assert status(ask(fw, ALICE, CharReq.WRITE, minor=0, data=b"x")) == Err.EBADF
    ask(fw, ALICE, CharReq.OPEN, minor=0)
    assert status(ask(fw, ALICE, CharReq.IOCTL, minor=0, request="TIOCGETA")) == Err.ENOTTY
    assert status(ask(fw, ALICE, CharReq.IOCTL, minor=0, request=3)) == Err.EINVAL
    big = b"x" * (CDEV_MAX_IO + 1)
    assert status(ask(fw, ALICE, CharReq.WRITE, minor=0, data=big)) == Err.E2BIG
    assert status(ask(fw, ALICE, CharReq.WRITE, minor=0, data="text")) == Err.EINVAL
    assert status(ask(fw, ALICE, CharReq.READ, minor=0, count=CDEV_MAX_IO + 1)) == Err.EINVAL
    assert status(ask(fw, ALICE, CharReq.READ, minor=0, count=0)) == Err.EINVAL
    assert status(ask(fw, ALICE, CharReq.SEL2_REPLY, minor=0)) == Err.EBADREQUEST
    assert status(ask(fw, ALICE, 0x4FF, minor=0)) == Err.EBADREQUEST
    assert status(ask(fw, ALICE, CharReq.SELECT, minor=0, ops=0x10)) == Err.EINVAL
    assert ask(fw, ALICE, CharReq.CLOSE, minor=0) is not None
    assert status(ask(fw, ALICE, CharReq.READ, minor=0)) == Err.EBADF  # closed again
    assert fw.refused["no such minor"] == 1


def test_a_restarted_driver_refuses_a_minor_it_never_saw_opened_until_it_is_reopened() -> None:
    fw, _, _ = framework(restarted=True)
    assert status(ask(fw, ALICE, CharReq.READ, minor=0)) == Err.ERESTART
    assert status(ask(fw, ALICE, CharReq.WRITE, minor=0, data=b"a")) == Err.ERESTART
    assert status(ask(fw, ALICE, CharReq.IOCTL, minor=0, request="X")) == Err.ERESTART
    assert status(ask(fw, ALICE, CharReq.CLOSE, minor=0)) == Err.OK  # a close is fine
    assert status(ask(fw, ALICE, CharReq.OPEN, minor=0)) == Err.OK
    assert status(ask(fw, ALICE, CharReq.WRITE, minor=0, data=b"a")) == Err.OK
    assert status(ask(fw, BOB, CharReq.READ, minor=0)) == Err.ERESTART  # Bob's open is gone too
    ask(fw, ALICE, CharReq.CLOSE, minor=0)
    assert status(ask(fw, ALICE, CharReq.READ, minor=0)) == Err.EBADF  # closed with this one


def test_select_answers_now_and_notifies_once_later() -> None:
    fw, _, loop = framework()
    ask(fw, ALICE, CharReq.OPEN, minor=0)
    ask(fw, BOB, CharReq.OPEN, minor=0)
    now = ask(fw, ALICE, CharReq.SELECT, minor=0, ops=int(SelOp.RD | SelOp.WR))
    assert now is not None and now["ready"] == SelOp.WR
    later = ask(fw, ALICE, CharReq.SELECT, minor=0, ops=int(SelOp.RD | SelOp.NOTIFY))
    assert later is not None and later["ready"] == 0
    ask(fw, BOB, CharReq.WRITE, minor=0, data=b"z")
    ask(fw, BOB, CharReq.WRITE, minor=0, data=b"z")
    assert [(d, m.type, m["ready"]) for d, m in loop.sent] == [(ALICE, CharReq.SEL2_REPLY,
                                                                 SelOp.RD)]
