"""tty: the console driver on COM1's 16550A (runs in its own process, label tty).

One minor device, 0, the serial console.  The driver joins three parts: the
UART (drivers/tty/uart.py, the only code that touches registers), the line
discipline (drivers/tty/line.py, pure), and the requests of the character
driver protocol (docs/PROTOCOL.md, "Character drivers"), whose framework
(drivers/char) owns the loop and the restart handshake.

Requests (fields beyond ``minor``):

* READ ``count``: answered when the discipline has a line (canonical) or
  ``vmin`` bytes (raw): ``{data}``; until then the request is suspended (the
  caller waits in SENDREC).  An INTR typed (^C) answers every waiting read
  with EINTR; with none waiting, the next read gets EINTR (the signal-like
  notice that the person wants the program to stop).
* WRITE ``data`` (bytes, at most TTY_MAX_WRITE): queued behind the output
  already waiting and answered ``{count}`` once all of it is in the UART, so
  a writer is held while output is stopped (^S, or CTS low with crtscts).
* IOCTL ``request``: "TCGETS" answers ``{termios}``; "TCSETS" with
  ``termios`` (any subset of drivers/tty/line.Termios's fields) changes them;
  anything else is ENOTTY, as a tty answers an ioctl it does not have.
* CANCEL: the suspended read of that caller ends with EINTR.

Input typed while no driver runs waits in the UART; a restarted driver
drains it (uart.reset) and takes back what its predecessor had read but not
handed over: the discipline's unread input and settings are backed up in DS
(private key ``tty.ld``) after every change, and the backup is updated
*before* a read is answered, so a byte is never handed over twice (README,
"the console").
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass

from drivers.tty import regs
from drivers.tty.line import LineDiscipline, Termios
from drivers.tty.uart import Uart
from minikern import ds, params, sef
from minikern.const import DsFlag, Err, IrqOp, KCall
from minikern.devio import ChannelError, open_channel
from minikern.ipc import IpcError, KernelGone
from minikern.proto import Message

CONSOLE = 0  # the one minor: COM1
MINORS = (CONSOLE,)
BACKUP_KEY = "tty.ld"
IOCTLS = ("TCGETS", "TCSETS")


@dataclass
class Write:
    request: Message
    end: int  # the position in the output stream after this write's last byte
    count: int


class Tty:
    irq = regs.COM1_IRQ

    def __init__(self) -> None:
        self.ld = LineDiscipline()
        self.reads: deque[Message] = deque()  # suspended READs, oldest first
        self.writes: deque[Write] = deque()  # WRITEs not yet all in the UART, oldest first
        self.tx = bytearray()  # output not yet in the UART
        self.queued = 0  # bytes ever put in ``tx``
        self.sent = 0  # bytes ever given to the UART
        self.thre = False  # the UART said its transmitter can take a FIFO's worth
        self.counters = {"rx": 0, "tx": 0, "line_errors": 0, "taken_back": 0}
        self.uart: Uart | None = None

    # -- start-up -------------------------------------------------------------------------

    def init(self, ctx: sef.Context) -> None:
        self.ctx = ctx
        try:
            self.uart = Uart(open_channel(ctx.conn))
        except (IpcError, ChannelError) as e:
            sef.panic(f"cannot reach the UART: {e}")
        if ctx.restarted:
            self.ld = LineDiscipline.restore(self._backup())
            self.counters["taken_back"] = self.ld.held()
        waiting = self.uart.reset()
        ctx.conn.kcall(KCall.IRQCTL, op=IrqOp.SETPOLICY, irq=self.irq)
        if waiting:
            self.input(waiting)

    def _backup(self) -> object:
        try:
            raw = ds.retrieve(self.ctx.conn, BACKUP_KEY)
            return json.loads(raw) if isinstance(raw, (bytes, str)) else None
        except KernelGone:
            raise
        except (IpcError, ValueError):
            return None  # nothing backed up (a first start), or unreadable: start empty

    def save(self) -> None:
        """Back the discipline up in DS; without DS the driver runs on (nothing to restore)."""
        try:
            ds.publish(self.ctx.conn, BACKUP_KEY, json.dumps(self.ld.snapshot()).encode(),
                       DsFlag.PRIVATE | DsFlag.OVERWRITE)
        except KernelGone:
            raise
        except IpcError:
            pass

    # -- requests -------------------------------------------------------------------------

    @staticmethod
    def bad_minor(m: Message) -> Message | None:
        minor = m.get("minor")
        if type(minor) is not int or minor not in MINORS:
            return Message(Err.ENXIO, {"error": f"no minor device {minor!r}"})
        return None

    def do_open(self, m: Message) -> Message:
        return self.bad_minor(m) or Message(Err.OK)

    def do_close(self, m: Message) -> Message:
        return self.bad_minor(m) or Message(Err.OK)

    def do_read(self, m: Message) -> Message | None:
        count = m.get("count")
        if (bad := self.bad_minor(m)) is not None:
            return bad
        if type(count) is not int or not 0 < count <= params.TTY_MAX_READ:
            return Message(Err.EINVAL, {"error": f"count must be 1..{params.TTY_MAX_READ}"})
        if self.ld.interrupted:
            self.ld.interrupted = False
            return Message(Err.EINTR, {"error": "interrupted"})
        if not self.reads and self.ld.readable():
            data = self.ld.take(count)
            self.save()
            return Message(Err.OK, {"data": data})
        self.reads.append(m)
        return None

    def do_write(self, m: Message) -> Message | None:
        data = m.get("data")
        if (bad := self.bad_minor(m)) is not None:
            return bad
        if not isinstance(data, bytes):
            return Message(Err.EINVAL, {"error": "data must be bytes"})
        if len(data) > params.TTY_MAX_WRITE:
            return Message(Err.E2BIG, {"error": f"at most {params.TTY_MAX_WRITE} bytes a write"})
        if not data:
            return Message(Err.OK, {"count": 0})
        self.queue(self.ld.output(data))
        self.writes.append(Write(m, self.queued, len(data)))
        self.transmit()
        return None

    def do_ioctl(self, m: Message) -> Message:
        request = m.get("request")
        if (bad := self.bad_minor(m)) is not None:
            return bad
        if request == "TCGETS":
            return Message(Err.OK, {"termios": self.ld.termios.to_wire()})
        if request == "TCSETS":
            termios = Termios.from_wire(m.get("termios"), self.ld.termios)
            if termios is None:
                return Message(Err.EINVAL, {"error": "termios: unknown field or bad value"})
            self.ld.set_termios(termios)
            self.save()
            self.serve_reads()
            self.transmit()
            return Message(Err.OK, {"termios": termios.to_wire()})
        return Message(Err.ENOTTY, {"error": f"no ioctl {request!r} on a tty ({', '.join(IOCTLS)})"})

    def do_cancel(self, m: Message) -> Message | None:
        """End the caller's suspended read (EINTR); nothing to cancel: nothing happens."""
        for waiting in list(self.reads):
            if waiting.source == m.source:
                self.reads.remove(waiting)
                self.answer(waiting, Message(Err.EINTR, {"error": "cancelled"}))
        return None

    def readiness(self) -> dict[str, bool]:
        """SELECT's answer now: a read would not wait, a write would be taken."""
        return {"read": self.ld.readable() or self.ld.interrupted,
                "write": len(self.tx) < params.TTY_MAX_WRITE}

    # -- the interrupt and the two directions ----------------------------------------------

    def on_interrupt(self) -> None:
        uart = self.device
        ev = uart.interrupt()
        self.counters["line_errors"] += ev.line_errors
        self.thre = self.thre or ev.thre
        if ev.rx:
            self.input(bytes(ev.rx))
        self.transmit()
        self.ctx.conn.kcall(KCall.IRQCTL, op=IrqOp.ENABLE, irq=self.irq)

    @property
    def device(self) -> Uart:
        if self.uart is None:
            raise RuntimeError("the UART was not set up")
        return self.uart

    def input(self, data: bytes) -> None:
        self.counters["rx"] += len(data)
        self.ld.receive(data)
        self.queue(self.ld.take_echo())
        if self.ld.interrupted and self.reads:
            self.ld.interrupted = False
            while self.reads:
                self.answer(self.reads.popleft(), Message(Err.EINTR, {"error": "interrupted"}))
        self.save()
        self.serve_reads()

    def serve_reads(self) -> None:
        """Answer waiting reads while the discipline has something for them; the backup is
        updated before the answers go (a byte is lost by a crash there, never doubled)."""
        answers: list[tuple[Message, bytes]] = []
        while self.reads and self.ld.readable():
            m = self.reads.popleft()
            answers.append((m, self.ld.take(int(m["count"]))))
        if answers:
            self.save()
        for m, data in answers:
            self.answer(m, Message(Err.OK, {"data": data}))

    def queue(self, data: bytes) -> None:
        self.tx += data
        self.queued += len(data)

    def transmit(self) -> None:
        """Give the UART what it can take now; ask for the THRE interrupt while output waits."""
        uart = self.device
        held = self.ld.stopped or (self.ld.termios.crtscts and not uart.cts)
        if self.tx and not held and self.thre:
            chunk = bytes(self.tx[:regs.FIFO_DEPTH])
            uart.send(chunk)
            del self.tx[:len(chunk)]
            self.sent += len(chunk)
            self.counters["tx"] += len(chunk)
            self.thre = False
        if self.tx and not held:
            uart.start()
        else:
            uart.idle()
        while self.writes and self.writes[0].end <= self.sent:
            w = self.writes.popleft()
            self.answer(w.request, Message(Err.OK, {"count": w.count}))

    def answer(self, request: Message, reply: Message) -> None:
        """Answer a suspended request (the framework's deferred reply)."""
        self.ctx.loop.reply(request, reply)
