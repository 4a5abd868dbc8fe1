"""The block device client (MINIX libbdev), with transparent recovery from driver restarts.

Runs in the process that uses a block device (the MFS file server, test
components).  ``BlockDevice(ctx, label, minor)`` speaks docs/PROTOCOL.md
section 19 to the driver ``label`` (for example ``at_wini``): reads and
writes of any length are split into requests of at most BDEV_MAX_IO bytes.

Data moves through one grant: the first BDEV_MAX_IO bytes of the caller's
memory segment from ``buffer_offset`` (``ctx.memory``) are granted, read and
write, to the driver's current endpoint, and each request's data is staged
there.  The caller needs the SETGRANT and REVOKE kernel calls, and DS and
the driver in its ipc mask (and its label in the driver's).

Recovery (section 19, "Recovery"): a request that fails because the driver
died (the kernel fails the SENDREC with EDEADSRCDST) or was restarted under
it (the driver answers ERESTART) is not lost.  The
client waits until DS names a new endpoint for ``label`` with
``drv.blk.<label>`` = ``up`` (it subscribes to that key: DS's notification
wakes it, and it looks every BDEV_RECOVERY_CHECK anyway), answering RS's
heartbeat meanwhile; then it grants its buffer to the new endpoint, reopens
every minor it had open and sends the request again (block I/O is
idempotent).  A driver ``failed``, or not back within BDEV_RECOVERY_WAIT,
or restarted more than BDEV_RESTART_RETRIES times under one request, gives
EIO.  An EIO from the driver (a bad sector) is tried BDEV_EIO_RETRIES more
times and then raised as ``DeviceError`` (an ``IpcError`` with code EIO and
the failing ``sector``).  Any other refusal is raised as ``IpcError``; so
is a driver's *answer* EDEADSRCDST: only the kernel can say that the driver
died, and an answer with that status (a kernel call of the driver's own
that failed, its code passed on) comes from a driver that is alive, whose
successor would never come.
Once the process has taken the kernel's SHUTDOWN (``ctx.shutting_down``), no
successor is waited for: a dead driver fails the request at once.

While it waits for a new driver, and every BDEV_HEARTBEAT_CHECK during a
long run of requests (a caller blocked in SENDREC takes no notification, so
RS would take it for hung), the client receives messages; any that is
neither RS's nor DS's nor the kernel's is handed back to the process's loop
(``Loop.hand_back``), whose next turns serve them in order: a file server's
own write-back, run from a timer, may be waiting for a new driver when VFS
sends its next request.  DS's notifications about the driver may also
reach the caller's own loop, between requests: it ignores them (the next
wait drains DS's queue).  ``open`` replaces the caller's DS
subscription (DS keeps one per label); a caller that needs one of its own
passes ``subscribe=False`` and subscribes to a regex that also covers
``drv\\.blk\\.<label>`` (without a subscription the wait still looks
every BDEV_RECOVERY_CHECK).
"""
from __future__ import annotations

import time

import zmq

from minikern import ds, params, sef, successor
from minikern.const import (BDEV_MAX_IO, CPF_READ, CPF_WRITE, DS, SECTOR_SIZE, BdevReq, DsFlag,
                            Err, KCall, Kind)
from minikern.ipc import IpcError
from minikern.proto import Message


class DeviceError(IpcError):
    """The device failed a transfer (EIO) after the retries; ``sector`` is the first bad one
    (on the minor device) when the driver said so."""

    def __init__(self, what: str, sector: int | None) -> None:
        super().__init__(Err.EIO, what)
        self.sector = sector


class BlockDevice:
    def __init__(self, ctx: sef.Context, label: str, minor: int, *, buffer_offset: int = 0,
                 subscribe: bool = True) -> None:
        if ctx.memory is None or buffer_offset < 0 or buffer_offset + BDEV_MAX_IO > len(ctx.memory):
            raise ValueError("a block device needs BDEV_MAX_IO bytes of the memory segment")
        self.ctx, self.label, self.minor = ctx, label, minor
        self.key = f"drv.blk.{label}"
        self.subscribe = subscribe
        self.offset = buffer_offset
        self.buffer = memoryview(ctx.memory)[buffer_offset:buffer_offset + BDEV_MAX_IO]
        self.driver: int | None = None  # the driver's endpoint as we last knew it
        self.grant: int | None = None  # our buffer, granted to ``grant_to``
        self.grant_to: int | None = None
        self.access = CPF_READ | CPF_WRITE  # as the caller opened the minor (reopened alike)
        self.opens = 0  # our opens of ``minor``, to be redone on a new driver
        self.looked = time.monotonic()  # when we last looked for RS's heartbeat
        self.requests = 0  # requests sent (each resend counts)
        self.retries = 0  # requests sent again (after EIO or a driver restart)
        self.driver_restarts_seen = 0  # new driver endpoints taken over

    # -- the interface -------------------------------------------------------------------

    def open(self, access: int = CPF_READ | CPF_WRITE) -> None:
        """Open the minor (subscribing to the driver's state in DS first)."""
        if self.subscribe:
            ds.subscribe(self.ctx.conn, self.key.replace(".", r"\."), DsFlag.OVERWRITE)
        if self.driver is None:
            self.find_driver(dead=None)
        self.access = access
        self.call(Message(BdevReq.OPEN, {"minor": self.minor, "access": access}))
        self.opens += 1

    def close(self) -> None:
        """Close the minor; the last close also revokes our buffer's grant (a caller that
        makes a device per try, as a refused mount does, would fill its grant table)."""
        if not self.opens:
            return
        self.opens -= 1
        try:
            self.call(Message(BdevReq.CLOSE, {"minor": self.minor}))
        finally:
            if not self.opens and self.grant is not None:
                self.ctx.conn.kcall_status(KCall.REVOKE, grant=self.grant)
                self.grant = self.grant_to = None

    def read(self, pos: int, count: int) -> bytes:
        """``count`` bytes from ``pos`` (shorter at the end of the device)."""
        self.aligned(pos, count)
        out = bytearray()
        while count > 0:
            n = min(count, BDEV_MAX_IO)
            got = self.transfer(BdevReq.READ, pos, n)
            out += self.buffer[:got]
            if got < n:
                break
            pos, count = pos + n, count - n
        return bytes(out)

    def write(self, pos: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at ``pos``; EIO if the device ends before it does."""
        self.aligned(pos, len(data))
        view, done = memoryview(data), 0
        while done < len(view):
            n = min(len(view) - done, BDEV_MAX_IO)
            self.buffer[:n] = view[done:done + n]
            if self.transfer(BdevReq.WRITE, pos + done, n) < n:
                raise DeviceError(f"write past the end of {self.label} minor {self.minor}",
                                  (pos + done) // SECTOR_SIZE)
            done += n

    def flush(self) -> None:
        self.opened()
        self.call(Message(BdevReq.IOCTL, {"minor": self.minor, "request": "DIOCFLUSH"}))

    def geometry(self) -> dict[str, int]:
        """DIOCGETP: ``base``, ``size`` (bytes), ``cylinders``, ``heads``, ``sectors``."""
        self.opened()
        r = self.call(Message(BdevReq.IOCTL, {"minor": self.minor, "request": "DIOCGETP"}))
        return {k: int(r.fields[k]) for k in ("base", "size", "cylinders", "heads", "sectors")}

    # -- requests, retried ---------------------------------------------------------------

    def opened(self) -> None:
        """The driver answers only the minors a caller opened: open it on first use."""
        if not self.opens:
            self.open()

    @staticmethod
    def aligned(pos: int, count: int) -> None:
        if pos < 0 or count < 0 or pos % SECTOR_SIZE or count % SECTOR_SIZE:
            raise IpcError(Err.EINVAL, "block I/O: position and length must be whole sectors")

    def transfer(self, req: BdevReq, pos: int, n: int) -> int:
        self.opened()
        r = self.call(Message(req, {"minor": self.minor, "pos": pos, "count": n}), grant=True)
        count = r.get("count")
        if type(count) is not int or not 0 <= count <= n:
            raise IpcError(Err.EIO, f"{self.label}: a reply with a bad count")
        return count

    def call(self, m: Message, grant: bool = False) -> Message:
        """Send ``m`` until it gets an answer that is not a driver restart; raise refusals."""
        eio = restarts = 0
        while True:
            if self.driver is None:
                self.gone_for_good()
                self.find_driver(dead=None)
            driver = self.driver or 0
            if time.monotonic() - self.looked > params.BDEV_HEARTBEAT_CHECK:
                self.pause(0)  # a long run of requests must not pass for a hang
            if grant:
                m.fields["grant"] = self.granted(driver)
            self.requests += 1
            r, died = successor.sendrec(self.ctx.conn, driver, m)
            status = r.type
            if status == Err.OK:
                return r
            if died or status == Err.ERESTART:
                self.gone_for_good()
                restarts += 1
                if restarts > params.BDEV_RESTART_RETRIES:
                    raise IpcError(Err.EIO, f"{self.label} restarted {restarts - 1} times "
                                   f"under one request")
                self.recover(dead=driver if died else None, reopen=m.type != BdevReq.OPEN)
            elif status == Err.EIO and eio < params.BDEV_EIO_RETRIES:
                eio += 1
            elif status == Err.EIO:
                sector = r.get("sector")
                raise DeviceError(f"{self.label} minor {self.minor}: {r.get('error', 'EIO')}",
                                  sector if type(sector) is int else None)
            else:
                raise IpcError(status, f"{self.label}: {r.get('error', 'refused')}")
            self.retries += 1

    def gone_for_good(self) -> None:
        """At shutdown no driver comes back (RS and DS are going too, the driver perhaps gone
        already): a request that would wait for one fails at once, so the caller's shutdown
        hook ends within the grace instead of being killed in the wait."""
        if self.ctx.shutting_down:
            raise IpcError(Err.EDEADSRCDST, f"{self.label}: driver gone at shutdown")

    def granted(self, driver: int) -> int:
        """Our buffer's grant to ``driver``, made anew for each new driver endpoint."""
        if self.grant is not None and self.grant_to == driver:
            return self.grant
        if self.grant is not None:
            self.ctx.conn.kcall_status(KCall.REVOKE, grant=self.grant)
            self.grant = None
        r = self.ctx.conn.kcall(KCall.SETGRANT, grantee=driver, offset=self.offset,
                                length=BDEV_MAX_IO, access=CPF_READ | CPF_WRITE)
        self.grant, self.grant_to = int(r["grant"]), driver
        return self.grant

    # -- recovery ------------------------------------------------------------------------

    def recover(self, dead: int | None, reopen: bool) -> None:
        """Wait for a driver that is not ``dead``, then reopen what we had open on it."""
        self.find_driver(dead)
        if reopen:
            for _ in range(self.opens):
                self.call(Message(BdevReq.OPEN, {"minor": self.minor,
                                                 "access": self.access}))

    def find_driver(self, dead: int | None) -> None:
        """Block until DS says the driver is up at an endpoint other than ``dead``."""
        endpoint = successor.wait_up(self.ctx.conn, self.label, self.key, dead,
                                     params.BDEV_RECOVERY_WAIT, params.BDEV_RECOVERY_CHECK,
                                     self.pause)
        if self.driver is not None and endpoint != self.driver:
            self.driver_restarts_seen += 1
        self.driver = endpoint

    def pause(self, seconds: float) -> None:
        """Receive for up to ``seconds``: RS's heartbeat is answered, DS's news ends the wait."""
        conn, end = self.ctx.conn, time.monotonic() + seconds
        self.looked = time.monotonic()
        while True:
            conn.start_receive()
            left = end - time.monotonic()
            if not conn.sock.poll(max(0, int(left * 1000)), zmq.POLLIN):
                conn.cancel()
            m = conn.finish()
            if m is not None and not sef.filtered(self.ctx, m):
                if m.kind == Kind.NOTIFY and m.source == DS:
                    while ds.check(conn) is not None:
                        pass
                    return
                if m.kind == Kind.MESSAGE and m.type > 0:
                    self.ctx.loop.hand_back(m)
            if m is None or time.monotonic() >= end:
                return
