"""printer: the driver of the printer on LPT1 (runs in its own process).

MINIX's drivers/printer on the character driver framework (drivers/char):
minor 0, written to by the spooler (services/lpd).  Init resets the printer
(nINIT low for LPT_INIT_HOLD, then SELECT IN | nINIT), as MINIX does on the
first open.  A WRITE is printed LPT_CHUNK bytes per board round trip: one
vector that reads the data latch and the status, then does the Centronics
handshake for every byte (data, STROBE on, STROBE off) and ends by leaving a
tag in the data latch (docs/PROTOCOL.md 22.1).

Why the tag: the spooler must never print a byte twice, yet this driver may
be SIGKILLed between the board's printing of a chunk and the WRITE's answer.
The board performs a vector whole or not at all (one frame, served in one
turn of its loop, so no fault knob changes in the middle), and a strobe-less
write of the data latch is remembered by the port, not by this process, and
survives it.  So after chunk ``i`` of a WRITE tagged ``t`` the latch holds
``(t + i) & 0xFF``: a restarted driver reads it (ioctl LPTAG) and the spooler
counts how many chunks of the WRITE in flight reached the paper.  A WRITE
prints at most MAX_CHUNKS = 255 chunks (a longer one is answered with the
bytes printed, a short write the spooler continues), so the count is
unambiguous modulo 256.  A chunk's vector is one chain of the driver's port
I/O ring (minikern.proto.ring.MAX_CHAIN accesses at most), which is what
makes it whole or nothing.

Status (MINIX's mapping): ``status & 0xB0 == 0x90`` is ready; paper out
answers EAGAIN, off line or a printer error EIO, with ``count`` the bytes
printed before it.  Those strobes were refused by the printer, so the latch
is put back to what it held: it names only chunks that reached the paper.
(One race is left: a driver killed between a refused chunk's answer and
that put-back, while the printer went out of paper in the microseconds since
the chunk before; the spooler would then skip one chunk.)  The instant
printer is ready again after every STROBE release, so no chunk waits for
IRQ 7; the driver holds the line (system.conf) and acknowledges a stray one.

Fail-stop: before a chunk's vector goes to the board, ``write`` checks its
shape (``well_formed``: the two reads, three accesses per byte, the tag
last).  A bug that builds a short or wrong vector (a statement skipped, an
early return, found by bin/experiment's code faults) would print part of a
chunk and report it whole; the check turns it into a panic before anything
is printed, RS starts a new driver, and the spooler resumes from the bytes
confirmed, so the paper still has each byte once.
"""
from __future__ import annotations

import time

from drivers.char import CharDriver, Framework, Request, run
from minikern import params, sef
from minikern.const import Err
from minikern.devio import Channel, ChannelError, open_channel
from minikern.ipc import IpcError
from minikern.proto import Message

LPT1_BASE = 0x378  # MINIX reads it from the BIOS data area; the board puts LPT1 here
LPT1_IRQ = 7
DATA = LPT1_BASE + 0
STATUS = LPT1_BASE + 1
CONTROL = LPT1_BASE + 2

# Status register
ST_NBUSY = 0x80  # 1 = not busy
ST_PE = 0x20  # paper end
ST_SLCT = 0x10  # on line
ST_NERROR = 0x08  # 0 = error
ST_MASK = ST_NBUSY | ST_PE | ST_SLCT  # MINIX's 0xB0
ST_READY = ST_NBUSY | ST_SLCT  # MINIX's 0x90
# Control register
CT_STROBE = 0x01
CT_NINIT = 0x04  # 0 = printer reset
CT_SELECT_IN = 0x08
CT_RESET = CT_SELECT_IN  # MINIX's 0x08: selected, held in reset
CT_IDLE = CT_SELECT_IN | CT_NINIT  # MINIX's 0x0C

STATES = {"paper out": Err.EAGAIN, "offline": Err.EIO, "error": Err.EIO, "busy": Err.EAGAIN}


MAX_CHUNKS = 255  # chunks one WRITE prints: the tags of one WRITE are distinct modulo 256


def state_of(status: int) -> str:
    """The printer's state from its status register."""
    if status & ST_PE:
        return "paper out"
    if not status & ST_SLCT:
        return "offline"
    if not status & ST_NERROR:
        return "error"
    if not status & ST_NBUSY:
        return "busy"
    return "ready"


def well_formed(ops: list[tuple[int, int, int | None]], chunk: bytes, tag: int) -> bool:
    """Whether ``ops`` is chunk_ops(chunk, tag)'s shape: checked by the caller, apart from the
    code that builds it, so a fault in one is caught by the other."""
    strobe = [(CONTROL, 1, CT_IDLE | CT_STROBE), (CONTROL, 1, CT_IDLE)]
    return (len(ops) == 3 * len(chunk) + 3 and ops[:2] == [(DATA, 1, None), (STATUS, 1, None)]
            and ops[-1] == (DATA, 1, tag & 0xFF)
            and all(ops[2 + 3 * k] == (DATA, 1, b) and ops[3 + 3 * k:5 + 3 * k] == strobe
                    for k, b in enumerate(chunk)))


def chunk_ops(chunk: bytes, tag: int) -> list[tuple[int, int, int | None]]:
    """One chunk's vector: read latch and status, a handshake per byte, the tag in the latch."""
    ops: list[tuple[int, int, int | None]] = [(DATA, 1, None), (STATUS, 1, None)]
    for byte in chunk:
        ops += [(DATA, 1, byte), (CONTROL, 1, CT_IDLE | CT_STROBE), (CONTROL, 1, CT_IDLE)]
    ops.append((DATA, 1, tag & 0xFF))
    return ops


class Printer(CharDriver):
    irq = LPT1_IRQ

    def __init__(self) -> None:
        self.ch: Channel | None = None
        self.printed = 0  # bytes this instance printed

    @property
    def chan(self) -> Channel:
        if self.ch is None:
            raise RuntimeError("no channel to the board")
        return self.ch

    def init(self, fw: Framework) -> None:
        self.fw = fw
        try:
            self.ch = open_channel(fw.ctx.conn)
            self.ch.outb(CONTROL, CT_RESET)
            time.sleep(params.LPT_INIT_HOLD)  # the reset pulse (MINIX holds it 50 ms)
            self.ch.outb(CONTROL, CT_IDLE)
        except (IpcError, ChannelError) as e:
            sef.panic(f"cannot reach the printer port: {e}")

    def write(self, req: Request) -> Message:
        tag = req.msg.get("tag", 0)
        if type(tag) is not int or not 0 <= tag <= 0xFF:
            return self.fw.refuse("tag is not 0 to 255")
        done, step = 0, params.LPT_CHUNK
        for i, start in enumerate(range(0, min(len(req.data), MAX_CHUNKS * step), step)):
            chunk = req.data[start:start + step]
            ops = chunk_ops(chunk, tag + i)
            if not well_formed(ops, chunk, tag + i):  # fail-stop: nothing of it is printed
                sef.panic(f"chunk {i} of a write built wrong ({len(ops)} accesses for "
                          f"{len(chunk)} bytes): not printed")
            try:
                got = self.chan.vec(ops)
            except ChannelError as e:
                return Message(Err.EIO, {"count": done, "state": "error", "error": str(e)})
            latch, status = got[0], got[1]
            state = state_of(status if type(status) is int else 0)
            if state != "ready":
                self.chan.outb(DATA, latch if type(latch) is int else 0)  # nothing was printed
                return Message(STATES[state], {"count": done, "state": state})
            done += len(chunk)
            self.printed += len(chunk)
        return Message(Err.OK, {"count": done})

    def ioctl(self, req: Request, name: str, arg: object) -> Message:
        if name == "LPSTATUS":
            status = self.chan.inb(STATUS)
            return Message(Err.OK, {"state": state_of(status), "status": status})
        if name == "LPTAG":
            return Message(Err.OK, {"tag": self.chan.inb(DATA)})
        return super().ioctl(req, name, arg)  # type: ignore[return-value]

    def interrupt(self) -> None:
        self.chan.inb(STATUS)  # reading the status acknowledges the printer's ACK


def main() -> None:
    run(Printer())
