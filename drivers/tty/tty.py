"""tty: the console driver on COM1's 16550A (runs in its own process, label tty).

One minor device, 0, the serial console.  The driver joins three parts: the
UART (drivers/tty/uart.py, the only code that touches registers), the line
discipline (drivers/tty/line.py, pure), and the character driver framework
(drivers/char, docs/PROTOCOL.md section 22), which owns the loop, checks
every request's fields, keeps the suspended requests and the opens, refuses
a restarted instance's requests from callers it never saw open the device
(ERESTART), and calls these callbacks:

* READ: answered when the discipline has a line (canonical) or ``vmin``
  bytes (raw), ``{data}`` of at most ``count`` bytes; until then SUSPENDed.
  An INTR typed (^C) answers every waiting read with EINTR; with none
  waiting, the next read gets EINTR (the signal-like notice that the person
  wants the program to stop).
* WRITE: queued behind the output already waiting (NL sent as CR NL with
  ``onlcr``) and answered ``{count}`` once all of it is in the UART, so a
  writer is held while output is stopped (^S, or CTS low with ``crtscts``).
  With NONBLOCK it is answered at once: the bytes are queued.
* IOCTL "TCGETS" answers ``{termios}``; "TCSETS" with ``arg`` (a map of
  any of drivers/tty/line.Termios's fields) changes them and answers the
  whole new set; "TCFLSH" with ``arg`` "in", "out" or "both" discards the
  input typed and not yet read, the output not yet sent, or both (POSIX
  tcflush: TCIFLUSH, TCOFLUSH, TCIOFLUSH), as a program does after garbage;
  any other name is ENOTTY, as a tty answers an ioctl it does not have.
  SELECT: RD when a read would be answered now, WR while the output queue
  has room.

Input typed while no driver runs waits in the UART; a restarted driver
drains it (uart.reset) and takes back what its predecessor had read but not
handed over: the discipline's settings and unread input are backed up in DS
(private key ``tty.ld``) after every change, and updated *before* a read is
answered, so a byte is never handed over twice (README, "the console").
"""
from __future__ import annotations

import json
from collections.abc import Callable

from drivers.char import SUSPEND, Answer, CharDriver, Framework, Request
from drivers.tty import regs
from drivers.tty.line import LineDiscipline, Termios
from drivers.tty.uart import Uart
from minikern import ds, sef
from minikern.const import CDEV_MAX_IO, CharReq, DsFlag, Err, SelOp, endpoint_slot
from minikern.devio import Channel, ChannelError, open_channel
from minikern.ipc import Connection, IpcError, KernelGone
from minikern.proto import Message

CONSOLE = 0  # the one minor: COM1
BACKUP_KEY = "tty.ld"
IOCTLS = ("TCGETS", "TCSETS", "TCFLSH")
FLUSH = {"in": (True, False), "out": (False, True), "both": (True, True)}  # TCFLSH arg
OUTPUT_ROOM = CDEV_MAX_IO  # bytes of queued output below which SELECT says WR
MAX_INPUT = 2048  # typed and unread bytes held: with the settings, a DS value (4 KiB) holds them


class Tty(CharDriver):
    minors = (CONSOLE,)
    irq = regs.COM1_IRQ

    def __init__(self, connect: Callable[[Connection], Channel] = open_channel) -> None:
        self.connect = connect  # the way to the board's ports (a test passes the UART model's)
        self.ld = LineDiscipline(max_input=MAX_INPUT)
        self.tx = bytearray()  # output not yet in the UART
        self.queued = 0  # bytes ever put in ``tx``
        self.sent = 0  # bytes ever given to the UART
        self.write_ends: dict[tuple[int, int], int] = {}  # a suspended WRITE's last byte's
        #   position in the output stream, by (caller, id) as the framework names it
        self.thre = False  # the UART said its transmitter can take a FIFO's worth
        self.counters = {"rx": 0, "tx": 0, "line_errors": 0, "taken_back": 0,
                         "backup_refused": 0}
        self.uart: Uart | None = None

    # -- start-up -------------------------------------------------------------------------

    def init(self, fw: Framework) -> None:
        self.fw = fw
        try:
            self.uart = Uart(self.connect(fw.ctx.conn))
        except (IpcError, ChannelError) as e:
            sef.panic(f"cannot reach the UART: {e}")
        if fw.ctx.restarted:
            self.ld = LineDiscipline.restore(self._backup(), MAX_INPUT)
            self.counters["taken_back"] = self.ld.held()
        waiting = self.uart.reset()
        if waiting:
            self.input(waiting)
        # Output (the echo of what waited) starts from the loop, once the framework has
        # subscribed the IRQ: the THRE interrupt is asked for then, on an edge of its own.
        self.uart.idle()
        fw.ctx.loop.call_later(0.0, self.transmit)

    def _backup(self) -> object:
        try:
            raw = ds.retrieve(self.fw.ctx.conn, BACKUP_KEY)
            return json.loads(raw) if isinstance(raw, (bytes, str)) else None
        except KernelGone:
            raise
        except (IpcError, ValueError):
            return None  # nothing backed up (a first start), or unreadable: start empty

    def save(self) -> None:
        """Back the discipline up in DS.  A backup DS refuses (more unread input than a DS
        value holds, or no DS) is deleted instead: a restart then loses that input, where a
        stale backup would hand over again what was read since."""
        conn = self.fw.ctx.conn
        try:
            ds.publish(conn, BACKUP_KEY, json.dumps(self.ld.snapshot()).encode(),
                       DsFlag.PRIVATE | DsFlag.OVERWRITE)
            return
        except KernelGone:
            raise
        except IpcError as e:
            self.counters["backup_refused"] += 1
            if self.counters["backup_refused"] == 1:
                self.fw.log(f"input backup refused by DS ({e}); later ones counted")
        try:
            ds.delete(conn, BACKUP_KEY)
        except KernelGone:
            raise
        except IpcError:
            pass  # none there, or no DS: nothing stale to restore either way

    @property
    def device(self) -> Uart:
        if self.uart is None:
            raise RuntimeError("the UART was not set up")
        return self.uart

    # -- the callbacks --------------------------------------------------------------------

    def open(self, req: Request, access: int) -> Message:
        self.forget_predecessors(req.caller)
        return Message(Err.OK)

    def forget_predecessors(self, caller: int) -> None:
        """Drop the suspended requests of a dead process that had ``caller``'s slot.

        A slot holds one process at a time, so a request from another endpoint of the same
        slot says the old one is dead (a restarted shell, typically): its read, left waiting,
        would otherwise take the next line typed and lose it in a reply nobody receives."""
        for waiting in self.fw.suspended(CONSOLE):
            if waiting.caller != caller and endpoint_slot(waiting.caller) == endpoint_slot(caller):
                self.write_ends.pop((waiting.caller, waiting.id), None)
                self.fw.reply(waiting, Message(Err.EDEADSRCDST))

    def read(self, req: Request) -> Answer:
        self.forget_predecessors(req.caller)
        if self.ld.interrupted:
            self.ld.interrupted = False
            return Message(Err.EINTR, {"error": "interrupted"})
        if not self.fw.suspended(CONSOLE, CharReq.READ) and self.ld.readable():
            data = self.ld.take(req.count)
            self.save()
            return Message(Err.OK, {"data": data})
        return SUSPEND

    def write(self, req: Request) -> Answer:
        if not req.data:
            return Message(Err.OK, {"count": 0})
        self.queue(self.ld.output(req.data))
        end = self.queued
        self.transmit()
        if self.sent >= end or req.nonblock:
            return Message(Err.OK, {"count": len(req.data)})
        self.write_ends[(req.caller, req.id)] = end
        return SUSPEND

    def ioctl(self, req: Request, name: str, arg: object) -> Answer:
        if name == "TCGETS":
            return Message(Err.OK, {"termios": self.ld.termios.to_wire()})
        if name == "TCSETS":
            termios = Termios.from_wire(arg, self.ld.termios)
            if termios is None:
                return Message(Err.EINVAL, {"error": "termios: unknown field or bad value"})
            self.ld.set_termios(termios)
            self.save()
            self.serve_reads()
            self.transmit()
            return Message(Err.OK, {"termios": termios.to_wire()})
        if name == "TCFLSH":
            which = FLUSH.get(arg) if isinstance(arg, str) else None
            if which is None:
                return Message(Err.EINVAL, {"error": f"TCFLSH: arg is one of {', '.join(FLUSH)}"})
            if which[0]:
                self.ld.flush_input()
                self.save()
            if which[1]:
                self.tx.clear()
            return Message(Err.OK)
        return Message(Err.ENOTTY, {"error": f"no ioctl {name!r} on a tty "
                                             f"({', '.join(IOCTLS)})"})

    def select(self, minor: int, ops: SelOp) -> SelOp:
        ready = SelOp.NONE
        if self.ld.readable() or self.ld.interrupted:
            ready |= SelOp.RD
        if len(self.tx) < OUTPUT_ROOM:
            ready |= SelOp.WR
        return ops & ready

    def cancel(self, req: Request) -> None:
        self.write_ends.pop((req.caller, req.id), None)  # its bytes stay queued: they go out

    def interrupt(self) -> None:
        ev = self.device.interrupt()
        self.counters["line_errors"] += ev.line_errors
        self.thre = self.thre or ev.thre
        if ev.rx:
            self.input(bytes(ev.rx))
        self.transmit()

    # -- the two directions ----------------------------------------------------------------

    def input(self, data: bytes) -> None:
        self.counters["rx"] += len(data)
        self.ld.receive(data)
        self.queue(self.ld.take_echo())
        waiting = self.fw.suspended(CONSOLE, CharReq.READ)
        if self.ld.interrupted and waiting:
            self.ld.interrupted = False
            for req in waiting:
                self.fw.reply(req, Message(Err.EINTR, {"error": "interrupted"}))
        self.save()
        self.serve_reads()
        if self.ld.readable() or self.ld.interrupted:
            self.fw.select_ready(CONSOLE, SelOp.RD)

    def serve_reads(self) -> None:
        """Answer waiting reads while the discipline has something for them; the backup is
        updated before the answers go (a crash there loses those bytes, never doubles them)."""
        answers: list[tuple[Request, bytes]] = []
        for req in self.fw.suspended(CONSOLE, CharReq.READ):
            if not self.ld.readable():
                break
            answers.append((req, self.ld.take(req.count)))
        if answers:
            self.save()
        undelivered = [data for req, data in answers
                       if not self.fw.reply(req, Message(Err.OK, {"data": data}))]
        if undelivered:  # a reader that died waiting (a killed shell): the next one gets it
            for data in reversed(undelivered):
                self.ld.unread(data)
            self.save()
            self.serve_reads()

    def queue(self, data: bytes) -> None:
        self.tx += data
        self.queued += len(data)

    def transmit(self) -> None:
        """Give the UART what it can take now; ask for the THRE interrupt while output waits;
        answer the writes whose last byte went out."""
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
        for req in self.fw.suspended(CONSOLE, CharReq.WRITE):
            end = self.write_ends.get((req.caller, req.id))
            if end is not None and end <= self.sent:
                del self.write_ends[(req.caller, req.id)]
                self.fw.reply(req, Message(Err.OK, {"count": len(req.data)}))
        if len(self.tx) < OUTPUT_ROOM:
            self.fw.select_ready(CONSOLE, SelOp.WR)
