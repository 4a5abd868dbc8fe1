"""The character driver framework (MINIX libchardriver): it owns the loop, a driver fills in callbacks.

Runs in each character driver's process.  A driver (drivers/hello,
drivers/printer, the tty) is a ``CharDriver``: a table of callbacks, each
with a default, that the framework calls with a checked ``Request``; its
``main()`` is ``framework.run(Driver())``.  The framework does the rest, the
same for every character driver (docs/PROTOCOL.md section 22):

* SEF start-up, fresh or restart alike, then ``drv.chr.<label>`` = ``up``
  published in DS (MINIX chardriver_announce); SEF answers RS's heartbeat.
* The requests (``CharReq``), each field checked before use: a bad field is
  EINVAL, a minor the driver does not have ENXIO, a WRITE longer than
  CDEV_MAX_IO E2BIG; every refusal is counted and its first occurrence
  logged, and no request can take the driver down.
* Opens: kept per (caller endpoint, minor).  READ, WRITE, IOCTL and SELECT
  on a minor the caller has not open are refused: ERESTART if this instance
  is a restart that never saw the caller open it (the dead instance's opens
  are forgotten, as in MINIX: reopen, then send again), EBADF otherwise.  A
  driver with nothing to open (hello) sets ``needs_open = False``.
* Suspended requests: a READ, WRITE or IOCTL callback that cannot finish now
  returns ``SUSPEND``; the framework keeps the request under (caller, id)
  (``id`` the caller's request number, else its ``rid``, else 0) and the
  driver answers it later with ``reply(req, answer)``; ``suspended(minor,
  type)`` lists those waiting, oldest first.  CANCEL from the same caller
  drops one: the driver's ``cancel`` callback runs, the request is answered
  EINTR and the CANCEL OK.  A request with CharFlag.NONBLOCK is answered
  EAGAIN instead of being suspended.
* SELECT answers the ready operations at once; with SelOp.NOTIFY and none
  ready, the caller is remembered and sent SEL2_REPLY when the driver calls
  ``select_ready(minor, ops)`` (once, as MINIX).
* Interrupts: with ``irq`` set, the IRQ is subscribed after ``init``; its
  notification calls ``interrupt`` and re-enables the line.  Timers are the
  loop's (``fw.ctx.loop.call_later``).
"""
from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from minikern import ds, params, sef
from minikern.const import (CDEV_MAX_IO, HARDWARE, CharFlag, CharReq, DsFlag, Err, IrqOp, KCall,
                            SelOp, err_name)
from minikern.ipc import IpcError
from minikern.proto import Message

MAX_ID = (1 << 31) - 1
MAX_IOCTL_NAME = 32
NEEDS_OPEN = (CharReq.READ, CharReq.WRITE, CharReq.IOCTL, CharReq.SELECT)


class Suspend:
    """The callbacks' answer "not now": the framework keeps the request."""


SUSPEND = Suspend()
Answer = Message | Suspend


@dataclass(frozen=True)
class Request:
    """One request as a driver sees it, its fields checked."""

    type: CharReq
    caller: int  # the caller's endpoint
    id: int  # the caller's number for it: (caller, id) names it while suspended
    minor: int
    flags: CharFlag
    count: int = 0  # READ: bytes wanted, 1..CDEV_MAX_IO
    data: bytes = b""  # WRITE: the bytes, at most CDEV_MAX_IO
    msg: Message = field(default_factory=Message)  # the message itself, for a driver's own extra fields

    @property
    def nonblock(self) -> bool:
        return bool(self.flags & CharFlag.NONBLOCK)


class CharDriver:
    """The callbacks; a driver overrides those it needs."""

    minors: Collection[int] = (0,)  # the minor devices it has
    needs_open = True  # False: READ/WRITE/IOCTL/SELECT need no OPEN first (hello)
    irq: int | None = None  # the IRQ line it serves, if any

    def init(self, fw: Framework) -> None:
        """Find and reset the device (fresh or restart: ``fw.ctx.restarted``)."""

    def open(self, req: Request, access: int) -> Message:
        return Message(Err.OK)

    def close(self, req: Request) -> Message:
        return Message(Err.OK)

    def read(self, req: Request) -> Answer:
        """``data`` (bytes, at most ``req.count``), or SUSPEND."""
        return Message(Err.EIO, {"error": "the device cannot be read"})

    def write(self, req: Request) -> Answer:
        """``count`` written, or SUSPEND."""
        return Message(Err.EIO, {"error": "the device cannot be written"})

    def ioctl(self, req: Request, name: str, arg: object) -> Answer:
        return Message(Err.ENOTTY, {"error": f"no ioctl {name}"})

    def select(self, minor: int, ops: SelOp) -> SelOp:
        """The operations among ``ops`` (RD, WR, ERR) that would not suspend now."""
        return ops & (SelOp.RD | SelOp.WR)

    def cancel(self, req: Request) -> None:
        """A suspended request was withdrawn (the framework answers it EINTR)."""

    def interrupt(self) -> None:
        """The device's IRQ came."""


def _int(m: Message, key: str, lo: int, hi: int, default: int | None = None) -> int | None:
    v = m.get(key, default)
    return v if type(v) is int and lo <= v <= hi else None


class Framework:
    def __init__(self, driver: CharDriver) -> None:
        self.drv = driver
        self.opens: dict[tuple[int, int], int] = {}  # (caller, minor) -> open count
        self.seen: set[tuple[int, int]] = set()  # (caller, minor) opened with this instance
        self.pending: dict[tuple[int, int], Request] = {}  # (caller, id) -> suspended request
        self.selects: dict[tuple[int, int], SelOp] = {}  # (caller, minor) -> ops to notify
        self.refused: Counter[str] = Counter()
        self.restarted = False

    # -- start-up ----------------------------------------------------------------------

    def init(self, ctx: sef.Context) -> None:
        self.ctx, self.restarted = ctx, ctx.restarted
        self.drv.init(self)
        if self.drv.irq is not None:
            ctx.conn.kcall(KCall.IRQCTL, op=IrqOp.SETPOLICY, irq=self.drv.irq)
        try:
            ds.publish(ctx.conn, f"drv.chr.{ctx.label}", "up", DsFlag.OVERWRITE)
        except IpcError:
            pass  # no DS in this system: nobody to tell

    def log(self, text: str) -> None:
        print(f"{self.ctx.label}: {text}", file=sys.stderr, flush=True)

    def on_notify(self, m: Message) -> None:
        irq = self.drv.irq
        if irq is not None and m.source == HARDWARE and m.aux & (1 << irq):
            self.drv.interrupt()
            self.ctx.conn.kcall(KCall.IRQCTL, op=IrqOp.ENABLE, irq=irq)

    # -- answering -----------------------------------------------------------------------

    def reply(self, req: Request, answer: Message) -> bool:
        """Answer a suspended request (a late reply); one not suspended (cancelled) is ignored.
        False if the answer was not delivered (cancelled, or the caller died meanwhile): what
        it carried is the driver's again (a tty puts the line back for the next reader)."""
        if self.pending.pop((req.caller, req.id), None) is None:
            return False
        if self.ctx.loop.reply(req.msg, answer) not in (Err.OK, Err.ENOTREADY):
            self.refused["late reply not taken"] += 1  # the caller died meanwhile
            return False
        return True

    def suspended(self, minor: int | None = None, rtype: CharReq | None = None) -> list[Request]:
        """The suspended requests (of one minor, of one type), oldest first."""
        return [r for r in self.pending.values()
                if (minor is None or r.minor == minor) and (rtype is None or r.type == rtype)]

    def select_ready(self, minor: int, ops: SelOp) -> None:
        """Readiness changed: tell every caller waiting on ``minor`` for one of ``ops``."""
        for key, want in list(self.selects.items()):
            if key[1] == minor and want & ops:
                del self.selects[key]
                self.ctx.loop.asend(key[0], Message(CharReq.SEL2_REPLY,
                                                    {"minor": minor, "ready": int(want & ops)}))

    def refuse(self, reason: str, status: int = Err.EINVAL, detail: str = "") -> Message:
        self.refused[reason] += 1
        if self.refused[reason] == 1:
            self.log(f"refused ({err_name(status)}): {reason} {detail} (later ones counted)")
        return Message(status, {"error": f"{reason} {detail}".strip()})

    # -- requests ----------------------------------------------------------------------

    def dispatch(self, m: Message) -> Message | None:
        """sef's handler for every CharReq: check, call back, answer now or keep."""
        try:
            rtype = CharReq(m.type)
        except ValueError:
            return Message(Err.EBADREQUEST)
        req = self.request(rtype, m)
        if isinstance(req, Message):
            return req
        try:
            answer = self.call(req)
        except IpcError as e:  # a kernel call of the driver failed: this request fails
            answer = self.refuse("kernel call failed", e.code, str(e))
        if isinstance(answer, Message):
            return answer
        if req.nonblock:
            return Message(Err.EAGAIN)
        key = (req.caller, req.id)
        if key in self.pending:
            return self.refuse("a request with this id is already suspended", Err.EBUSY)
        if len(self.pending) >= params.CHAR_MAX_SUSPENDED:
            return self.refuse("too many suspended requests", Err.EAGAIN)
        self.pending[key] = req
        return None  # EDONTREPLY: ``reply`` answers it

    def request(self, rtype: CharReq, m: Message) -> Request | Message:
        """The request with its fields checked, or the refusal."""
        minor = _int(m, "minor", 0, MAX_ID, default=0)
        if minor is None:
            return self.refuse("minor is not an int")
        if minor not in self.drv.minors:
            return self.refuse("no such minor", Err.ENXIO, str(minor))
        flags = _int(m, "flags", 0, int(CharFlag.NONBLOCK), default=0)
        rid = m.get("rid")
        rid_id = rid if type(rid) is int and 0 <= rid <= MAX_ID else 0
        ident = _int(m, "id", 0, MAX_ID, default=rid_id)
        if flags is None or ident is None:
            return self.refuse("flags or id out of range")
        count, data = 0, b""
        if rtype == CharReq.READ:
            got = _int(m, "count", 1, CDEV_MAX_IO, default=CDEV_MAX_IO)
            if got is None:
                return self.refuse("count is not 1 to CDEV_MAX_IO")
            count = got
        elif rtype == CharReq.WRITE:
            raw = m.get("data")
            if type(raw) is not bytes:
                return self.refuse("data is not bytes")
            if len(raw) > CDEV_MAX_IO:
                return self.refuse("data is longer than CDEV_MAX_IO", Err.E2BIG, str(len(raw)))
            data = raw
        if rtype in NEEDS_OPEN and self.drv.needs_open and not self.opens.get((m.source, minor)):
            if self.restarted and (m.source, minor) not in self.seen:
                return self.refuse("minor not opened with this instance", Err.ERESTART, str(minor))
            return self.refuse("minor not open", Err.EBADF, str(minor))
        return Request(rtype, m.source, ident, minor, CharFlag(flags), count, data, m)

    def call(self, req: Request) -> Answer:
        m, drv = req.msg, self.drv
        if req.type == CharReq.OPEN:
            return self.do_open(req)
        if req.type == CharReq.CLOSE:
            return self.do_close(req)
        if req.type == CharReq.READ:
            return drv.read(req)
        if req.type == CharReq.WRITE:
            return drv.write(req)
        if req.type == CharReq.IOCTL:
            name = m.get("request")
            if type(name) is not str or not 0 < len(name) <= MAX_IOCTL_NAME:
                return self.refuse("request is not an ioctl name")
            return drv.ioctl(req, name, m.get("arg"))
        if req.type == CharReq.SELECT:
            return self.do_select(req)
        if req.type == CharReq.CANCEL:
            return self.do_cancel(req)
        return Message(Err.EBADREQUEST)  # SEL2_REPLY is the driver's to send, not to take

    def do_open(self, req: Request) -> Message:
        access = _int(req.msg, "access", 1, 3, default=1)
        if access is None:
            return self.refuse("access is not 1, 2 or 3")
        answer = self.drv.open(req, access)
        if answer.type != Err.OK:
            return answer
        key = (req.caller, req.minor)
        if key not in self.opens and len(self.opens) >= params.CHAR_MAX_OPENS:
            forgotten = next(iter(self.opens))
            del self.opens[forgotten]
            self.seen.discard(forgotten)
        self.opens[key] = self.opens.get(key, 0) + 1
        if len(self.seen) < params.CHAR_MAX_OPENS:
            self.seen.add(key)
        return answer

    def do_close(self, req: Request) -> Message:
        key = (req.caller, req.minor)
        if self.opens.get(key, 0) > 1:
            self.opens[key] -= 1
            return Message(Err.OK)
        if self.opens.pop(key, None) is None:
            return Message(Err.OK)  # closing what this instance never saw opened is fine
        self.selects.pop(key, None)
        for waiting in self.suspended(req.minor):
            if waiting.caller == req.caller:  # the last close ends the caller's waits
                self.drop(waiting)
        return self.drv.close(req)

    def do_select(self, req: Request) -> Message:
        ops = _int(req.msg, "ops", 0, int(SelOp.RD | SelOp.WR | SelOp.ERR | SelOp.NOTIFY))
        if ops is None:
            return self.refuse("ops is not a mask of RD, WR, ERR, NOTIFY")
        want = SelOp(ops) & (SelOp.RD | SelOp.WR | SelOp.ERR)
        ready = self.drv.select(req.minor, want) & want
        key = (req.caller, req.minor)
        if not ready and ops & SelOp.NOTIFY:
            if key not in self.selects and len(self.selects) >= params.CHAR_MAX_SELECTS:
                return self.refuse("too many selects waiting", Err.EAGAIN)
            self.selects[key] = self.selects.get(key, SelOp.NONE) | want
        return Message(Err.OK, {"ready": int(ready)})

    def do_cancel(self, req: Request) -> Message:
        """Withdraw the caller's suspended request ``id`` (not this CANCEL's own number)."""
        target = _int(req.msg, "id", 0, MAX_ID)
        if target is None:
            return self.refuse("id is not an int")
        waiting = self.pending.get((req.caller, target))
        if waiting is None:
            return Message(Err.OK, {"cancelled": False})  # answered already: too late
        self.drop(waiting)
        return Message(Err.OK, {"cancelled": True})

    def drop(self, req: Request) -> None:
        self.drv.cancel(req)
        self.reply(req, Message(Err.EINTR))


def run(driver: CharDriver) -> None:
    """A character driver's whole main(): start, then serve until shutdown."""
    fw = Framework(driver)
    ctx = sef.startup(fw.init)
    sef.serve(ctx, {req: fw.dispatch for req in CharReq}, on_notify=fw.on_notify)
