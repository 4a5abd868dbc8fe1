"""The block driver framework (MINIX libblockdriver): it owns the loop, a driver fills in callbacks.

Runs in each block driver's process.  A driver (drivers/at_wini) is a
``BlockDriver``: it probes its drive and moves sectors between the disk and a
buffer; its ``main()`` is ``framework.run(Driver())``.  The framework does
the rest, the same for every block driver (docs/PROTOCOL.md section 19):

* SEF start-up, fresh or restart alike: a restarted driver just probes again.
  Nothing is recovered: the opens of the dead instance are forgotten, and a
  caller that sends a transfer on a minor it has not opened with this
  instance is answered ERESTART, which tells its libbdev (minikern/bdev.py)
  to reopen and resend.  RS answers for the driver's state in DS
  (``drv.blk.<label>``), SEF answers RS's heartbeat.
* The requests (``BdevReq``), each field checked before use: a bad field is
  EINVAL, a minor that does not exist ENXIO; every refusal is counted and
  its first occurrence logged, and no request can take the driver down.
* Grants: the caller grants part of its memory segment; the framework copies
  between that grant and its staging area (the first ``BDEV_MAX_IO`` bytes of
  this process's own segment) with SAFECOPYFROM / SAFECOPYTO, and the driver
  sees only the staging area.  A grant the kernel refuses is EPERM.
* Minor devices (drivers/block/partition.py): 0 the whole disk, 1 to 4 the
  MBR's primary partitions, read at start-up and again when minor 0 is opened
  while no partition is open.  A transfer that reaches past the end of its
  minor is cut short; the reply's ``count`` says how much moved.
* Interrupts: a driver waits for its drive with ``wait_interrupt(timeout)``
  (MINIX w_intr_wait): the framework receives until the IRQ's notification
  comes or the timeout passes (an alarm from CLOCK), answering RS's
  heartbeat meanwhile, and keeps any request that arrives for after the
  current one (blockdriver_mq_queue): the driver answers in order.  A driver
  whose ``irq`` is None (the memory driver's RAM disk) has no line to set up
  and never waits.
"""
from __future__ import annotations

import math
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import NamedTuple, Protocol

from drivers.block import partition
from drivers.block.partition import Minor
from minikern import sef
from minikern.const import (BDEV_MAX_IO, BDEV_MAX_IOV, CLOCK, HARDWARE, SECTOR_SIZE, BdevReq, Err,
                            IrqOp, KCall, Kind, err_name)
from minikern.ipc import IpcError
from minikern.proto import Message

STAGING = 0  # offset of the staging area in this process's memory segment
MAX_OPENS = 1024  # (caller, minor) pairs remembered; the oldest is forgotten first (it reopens)
MAX_POS = 1 << 62  # positions beyond this are refused before any arithmetic
IOCTLS = ("DIOCGETP", "DIOCFLUSH")


class DriveError(Exception):
    """The drive failed a command after the driver's own retries.

    ``sector``: the first sector that failed (on the disk), if known; ``done``:
    bytes moved before it.
    """

    def __init__(self, why: str, sector: int | None = None, done: int = 0) -> None:
        super().__init__(why)
        self.sector, self.done = sector, done


class Geometry(NamedTuple):
    sectors: int  # addressable sectors of the whole disk
    cylinders: int
    heads: int
    spt: int  # sectors per track


WaitInterrupt = Callable[[float], bool]


class BlockDriver(Protocol):
    """The callbacks a block driver provides.  ``irq`` None: a device without an interrupt
    (the memory driver's RAM disk), whose transfers never wait."""

    @property
    def irq(self) -> int | None:
        """The drive's interrupt line (None: none)."""

    def init(self, ctx: sef.Context, wait_interrupt: WaitInterrupt) -> Geometry:
        """Find and identify the drive (panic if there is none); ``wait_interrupt(seconds)``
        waits for ``irq`` (True) or the timeout (False).  The framework enables ``irq`` after
        this returns: identify in polling mode."""

    def transfer(self, sector: int, buf: memoryview, write: bool) -> None:
        """Move ``len(buf)`` bytes (whole sectors, at most BDEV_MAX_IO) between the disk at
        ``sector`` and ``buf``; raise DriveError once the driver's retries are spent."""

    def flush(self) -> None:
        """Flush the drive's write cache; DriveError if it fails."""

    def interrupt(self) -> None:
        """An interrupt came while no command was waiting for one: acknowledge it."""


def _int(m: Message, key: str, lo: int, hi: int) -> int | None:
    v = m.get(key)
    return v if type(v) is int and lo <= v <= hi else None


class Framework:
    def __init__(self, driver: BlockDriver) -> None:
        self.drv = driver
        self.minors: dict[int, Minor] = {}
        self.opens: dict[tuple[int, int], int] = {}  # (caller endpoint, minor) -> open count
        self.deferred: deque[Message] = deque()  # requests that came during a wait, in order
        self.alarm_at: float | None = None  # when our one CLOCK alarm is due, if set
        self.refused: Counter[str] = Counter()
        self.bad_table_logged = False
        self.handlers: dict[int, Callable[[Message], Message]] = {
            BdevReq.OPEN: self.do_open, BdevReq.CLOSE: self.do_close,
            BdevReq.READ: self.do_read, BdevReq.WRITE: self.do_write,
            BdevReq.GATHER: self.do_gather, BdevReq.SCATTER: self.do_scatter,
            BdevReq.IOCTL: self.do_ioctl,
        }

    # -- start-up ----------------------------------------------------------------------

    def init(self, ctx: sef.Context) -> None:
        self.ctx = ctx
        if ctx.memory is None or len(ctx.memory) < STAGING + BDEV_MAX_IO:
            sef.panic("no memory segment for the staging area")
        self.staging = memoryview(ctx.memory)[STAGING:STAGING + BDEV_MAX_IO]
        self.geometry = self.drv.init(ctx, self.wait_interrupt)
        if self.drv.irq is not None:
            ctx.conn.kcall(KCall.IRQCTL, op=IrqOp.SETPOLICY, irq=self.drv.irq)
        self.read_partitions()

    def read_partitions(self) -> None:
        disk = self.geometry.sectors
        try:
            self.drv.transfer(0, self.staging[:SECTOR_SIZE], write=False)
            self.minors, why = partition.parse(bytes(self.staging[:SECTOR_SIZE]), disk)
        except DriveError as e:
            self.minors, why = {0: Minor(0, disk)}, f"sector 0 unreadable: {e}"
        if why is not None and not self.bad_table_logged:
            self.bad_table_logged = True
            self.log(f"partition table refused, only minor 0: {why}")

    def log(self, text: str) -> None:
        print(f"{self.ctx.label}: {text}", file=sys.stderr, flush=True)

    # -- waiting for the drive -------------------------------------------------------------

    def wait_interrupt(self, timeout: float) -> bool:
        """Receive until the driver's IRQ comes (True) or ``timeout`` seconds pass (False).

        One alarm serves many waits: it is set only when none is due before this
        wait's deadline, and one that rings early is set again."""
        conn, deadline = self.ctx.conn, time.monotonic() + timeout
        irq = self.drv.irq
        if irq is None:
            return False  # nothing to wait for: a driver without an interrupt never asks
        while True:
            if self.alarm_at is None or self.alarm_at > deadline:
                conn.kcall(KCall.SETALARM, ms=max(1, math.ceil((deadline - time.monotonic()) * 1000)))
                self.alarm_at = deadline
            m = conn.receive()
            if sef.filtered(self.ctx, m):
                continue
            if m.kind == Kind.NOTIFY and m.source == HARDWARE:
                if m.aux & (1 << irq):
                    conn.kcall(KCall.IRQCTL, op=IrqOp.ENABLE, irq=irq)
                    return True
            elif m.kind == Kind.NOTIFY and m.source == CLOCK:
                self.alarm_at = None
                if time.monotonic() >= deadline:
                    return False
            elif m.kind == Kind.MESSAGE and m.type > 0:
                self.deferred.append(m)  # answered after the request in hand, in order

    def on_notify(self, m: Message) -> None:
        irq = self.drv.irq
        if m.source == HARDWARE and irq is not None and m.aux & (1 << irq):
            self.drv.interrupt()
            self.ctx.conn.kcall(KCall.IRQCTL, op=IrqOp.ENABLE, irq=irq)
        elif m.source == CLOCK:
            self.alarm_at = None  # an alarm set for a wait that ended in time

    # -- requests ----------------------------------------------------------------------

    def serve_one(self, m: Message) -> Message | None:
        """sef's handler for every BdevReq; then the requests that came meanwhile."""
        out = self.dispatch(m)
        if not self.deferred:
            return out
        self.answer(m, out)  # in order: this one first, then those that waited behind it
        while self.deferred:
            later = self.deferred.popleft()
            self.answer(later, self.dispatch(later))
        return None

    def answer(self, m: Message, out: Message) -> None:
        """Answer now: a SENDREC caller waits for it; an async one (``rid``) through the loop."""
        if type(m.get("rid")) is int:
            self.ctx.loop.reply(m, out)
        elif self.ctx.conn.sendnb(m.source, out) != Err.OK:
            self.refused["answer not taken"] += 1  # the caller died meanwhile

    def dispatch(self, m: Message) -> Message:
        handler = self.handlers.get(m.type)
        if handler is None:
            return Message(Err.EBADREQUEST)
        try:
            return handler(m)
        except IpcError as e:  # a kernel call of ours failed: this request fails, we go on
            return self.refuse("kernel call failed", e.code, str(e))

    def refuse(self, reason: str, status: int = Err.EINVAL, detail: str = "") -> Message:
        self.refused[reason] += 1
        if self.refused[reason] == 1:
            self.log(f"refused ({err_name(status)}): {reason} {detail} (later ones counted)")
        return Message(status, {"error": f"{reason} {detail}".strip()})

    def minor(self, m: Message, opened: bool = True) -> tuple[int, Minor] | Message:
        """The request's minor, or the refusal: EINVAL, ENXIO, or ERESTART if not opened."""
        minor = _int(m, "minor", 0, partition.NR_MINORS - 1)
        if minor is None:
            if type(m.get("minor")) is int:
                return self.refuse("no such minor", Err.ENXIO, str(m.get("minor")))
            return self.refuse("minor is not an int")
        part = self.minors.get(minor)
        if part is None:
            return self.refuse("no such minor", Err.ENXIO, str(minor))
        if opened and not self.opens.get((m.source, minor)):
            return self.refuse("minor not opened by the caller", Err.ERESTART, str(minor))
        return minor, part

    def do_open(self, m: Message) -> Message:
        if _int(m, "access", 1, 3) is None:
            return self.refuse("access is not 1, 2 or 3")
        if m.get("minor") == 0 and not any(n for (_, mi), n in self.opens.items() if mi > 0):
            self.read_partitions()  # nothing on a partition is in use: the table may be new
        found = self.minor(m, opened=False)
        if isinstance(found, Message):
            return found
        key = (m.source, found[0])
        if key not in self.opens and len(self.opens) >= MAX_OPENS:
            del self.opens[next(iter(self.opens))]
        self.opens[key] = self.opens.get(key, 0) + 1
        return Message(Err.OK)

    def do_close(self, m: Message) -> Message:
        found = self.minor(m, opened=False)
        if isinstance(found, Message):
            return found
        key = (m.source, found[0])
        if self.opens.get(key, 0) > 1:
            self.opens[key] -= 1
        else:
            self.opens.pop(key, None)  # closing what this instance never saw opened is fine
        return Message(Err.OK)

    def do_read(self, m: Message) -> Message:
        return self.single(m, write=False)

    def do_write(self, m: Message) -> Message:
        return self.single(m, write=True)

    def do_gather(self, m: Message) -> Message:
        return self.vector(m, write=False)

    def do_scatter(self, m: Message) -> Message:
        return self.vector(m, write=True)

    def single(self, m: Message, write: bool) -> Message:
        count = _int(m, "count", 0, BDEV_MAX_IO)
        grant = _int(m, "grant", 0, (1 << 31) - 1)
        if count is None or count % SECTOR_SIZE:
            return self.refuse("count is not a multiple of the sector size up to BDEV_MAX_IO")
        if grant is None:
            return self.refuse("grant is not an int")
        return self.transfer(m, [(grant, count)], write)

    def vector(self, m: Message, write: bool) -> Message:
        iov, pairs = m.get("iov"), list[tuple[int, int]]()
        if type(iov) is not list or not 0 < len(iov) <= BDEV_MAX_IOV:
            return self.refuse("iov is not a list of 1 to BDEV_MAX_IOV entries")
        for entry in iov:
            if (type(entry) is not list or len(entry) != 2 or type(entry[0]) is not int
                    or type(entry[1]) is not int or not 0 <= entry[0] < 1 << 31
                    or not 0 < entry[1] <= BDEV_MAX_IO):
                return self.refuse("iov entry is not [grant, size > 0]")
            pairs.append((entry[0], entry[1]))
        total = sum(size for _, size in pairs)
        if total > BDEV_MAX_IO or total % SECTOR_SIZE:
            return self.refuse("iov total is not a multiple of the sector size up to BDEV_MAX_IO")
        return self.transfer(m, pairs, write)

    def transfer(self, m: Message, iov: list[tuple[int, int]], write: bool) -> Message:
        pos = _int(m, "pos", 0, MAX_POS)
        if pos is None or pos % SECTOR_SIZE:
            return self.refuse("pos is not a multiple of the sector size")
        found = self.minor(m)
        if isinstance(found, Message):
            return found
        part, first = found[1], pos // SECTOR_SIZE
        total = sum(size for _, size in iov)
        n = min(total, max(0, part.size - first) * SECTOR_SIZE)
        if n == 0:
            return Message(Err.OK, {"count": 0})
        stage = self.staging[:n]
        if write and (status := self.copy(m.source, iov, n, to_caller=False)) != Err.OK:
            return self.refuse("grant refused", Err.EPERM, err_name(status))
        failed: DriveError | None = None
        try:
            self.drv.transfer(part.base + first, stage, write)
            done = n
        except DriveError as e:
            failed, done = e, max(0, min(n, e.done - e.done % SECTOR_SIZE))
        if not write and done and (status := self.copy(m.source, iov, done, True)) != Err.OK:
            return self.refuse("grant refused", Err.EPERM, err_name(status))
        if failed is not None:
            self.refused["drive error"] += 1
            fields: dict[str, object] = {"count": done, "error": str(failed)}
            if failed.sector is not None:
                fields["sector"] = failed.sector - part.base
            return Message(Err.EIO, fields)
        return Message(Err.OK, {"count": n})

    def copy(self, caller: int, iov: list[tuple[int, int]], n: int, to_caller: bool) -> int:
        """Copy ``n`` bytes between the staging area and the caller's grants, in order."""
        call = KCall.SAFECOPYTO if to_caller else KCall.SAFECOPYFROM
        off = 0
        for grant, size in iov:
            piece = min(size, n - off)
            if piece <= 0:
                break
            status, _ = self.ctx.conn.kcall_status(call, granter=caller, grant=grant, goffset=0,
                                                   offset=STAGING + off, length=piece)
            if status != Err.OK:
                return status
            off += piece
        return Err.OK

    def do_ioctl(self, m: Message) -> Message:
        request = m.get("request")
        if request not in IOCTLS:
            return self.refuse("request is not DIOCGETP or DIOCFLUSH")
        found = self.minor(m)
        if isinstance(found, Message):
            return found
        part, g = found[1], self.geometry
        if request == "DIOCGETP":
            return Message(Err.OK, {"base": part.base * SECTOR_SIZE,
                                    "size": part.size * SECTOR_SIZE,
                                    "cylinders": part.size // (g.heads * g.spt),
                                    "heads": g.heads, "sectors": g.spt})
        try:
            self.drv.flush()
        except DriveError as e:
            self.refused["drive error"] += 1
            return Message(Err.EIO, {"error": str(e)})
        return Message(Err.OK)


def run(driver: BlockDriver) -> None:
    """A block driver's whole main(): start, then serve until shutdown."""
    fw = Framework(driver)
    ctx = sef.startup(fw.init)
    sef.serve(ctx, {req: fw.serve_one for req in BdevReq}, on_notify=fw.on_notify)
