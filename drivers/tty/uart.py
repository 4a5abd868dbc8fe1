"""The tty driver's hand on the 16550A (runs in the tty driver's process).

Only this module touches the UART's registers, through the board's fast-path
channel (minikern/devio.py), which reaches exactly the ports system.conf
gives the driver (0x3F8, 8 ports).

Programming (``reset``), in the sheet's order: interrupts off; DLAB on, the
divisor latch, DLAB off with 8N1; the FIFOs on with the receive trigger at 8
and the transmit FIFO cleared; DTR, RTS and OUT2; then the receive, line
status and modem status interrupts.  The receive FIFO is *not* cleared:
what was typed while no driver ran waits there (and in the board's host-side
buffer behind it), and ``reset`` drains it and hands it to the caller, so a
restarted driver delivers it rather than losing it (README, "the console").

Interrupts (``interrupt``): IIR is read until it says none is pending, each
cause handled by priority as the sheet orders them: line status (read LSR,
count the errors), received data or character timeout (drain the FIFO: one
round trip of LSR/RBR pairs per FIFO's worth), THR empty (the caller may
write ``FIFO_DEPTH`` bytes), modem status (read MSR: CTS for flow control).

Output: ``start`` turns the THRE interrupt on, which the UART raises at once
when the holding register is empty; ``idle`` turns it off again when there
is nothing to send, so that the next ``start`` interrupts again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from drivers.tty import regs as R
from minikern.devio import Channel

DEFAULT_BAUD = 115200
RX_TRIGGER = R.FCR_TRIGGER_8
IER_ALWAYS = R.IER_ERBFI | R.IER_ELSI | R.IER_EDSSI
MAX_CAUSES = 32  # interrupt causes handled in one go before giving the loop back
MAX_DRAIN = 16 * R.FIFO_DEPTH  # bytes taken in one drain (the board refills the FIFO as we read)


@dataclass
class Events:
    """What one interrupt brought: bytes received, whether THR can take more, CTS."""

    rx: bytearray = field(default_factory=bytearray)
    thre: bool = False
    line_errors: int = 0


class Uart:
    def __init__(self, ch: Channel, base: int = R.COM1_BASE, baud: int = DEFAULT_BAUD) -> None:
        if not 1 <= baud <= R.CLOCK_BASE or R.CLOCK_BASE % baud:
            raise ValueError(f"{baud} baud is not a divisor of {R.CLOCK_BASE}")
        self.ch, self.base, self.baud = ch, base, baud
        self.ier = 0
        self.cts = True
        self.overruns = 0

    def reset(self) -> bytes:
        """Program the UART; return what was already waiting in the receive FIFO."""
        b, divisor = self.base, R.CLOCK_BASE // self.baud
        self.ch.vec([(b + R.IER, 1, 0),
                     (b + R.LCR, 1, R.LCR_DLAB),
                     (b + R.DLL, 1, divisor & 0xFF), (b + R.DLM, 1, divisor >> 8),
                     (b + R.LCR, 1, R.LCR_8BITS),
                     (b + R.FCR, 1, R.FCR_ENABLE | R.FCR_CLEAR_TX | RX_TRIGGER),
                     (b + R.MCR, 1, R.MCR_DTR | R.MCR_RTS | R.MCR_OUT2)])
        waiting = self.drain()
        self.cts = bool(self.ch.inb(b + R.MSR) & R.MSR_CTS)
        self.set_ier(IER_ALWAYS)
        return bytes(waiting)

    def set_ier(self, value: int) -> None:
        if value != self.ier:
            self.ier = value
            self.ch.outb(self.base + R.IER, value)

    def drain(self) -> bytearray:
        """Every byte in the receive FIFO now: pairs of (LSR, RBR) reads in one round trip; an
        RBR read counts only when the LSR read before it showed data ready."""
        lsr, rbr = self.base + R.LSR, self.base + R.RBR
        out = bytearray()
        while len(out) < MAX_DRAIN:
            got = self.ch.vec([op for _ in range(R.FIFO_DEPTH)
                               for op in ((lsr, 1, None), (rbr, 1, None))])
            for status, byte in zip(got[::2], got[1::2], strict=True):
                if status is None or byte is None or not status & R.LSR_DR:
                    return out
                if status & R.LSR_OE:
                    self.overruns += 1
                out.append(byte & 0xFF)
        return out

    def interrupt(self) -> Events:
        ev = Events()
        for _ in range(MAX_CAUSES):
            cause = self.ch.inb(self.base + R.IIR) & R.IIR_ID_MASK
            if cause & R.IIR_NO_INT:
                break
            if cause == R.IIR_RLSI:
                if self.ch.inb(self.base + R.LSR) & (R.LSR_OE | R.LSR_PE | R.LSR_FE | R.LSR_BI):
                    ev.line_errors += 1
            elif cause in (R.IIR_RDI, R.IIR_CTI):
                ev.rx += self.drain()
            elif cause == R.IIR_THRI:
                ev.thre = True
            elif cause == R.IIR_MSI:
                self.cts = bool(self.ch.inb(self.base + R.MSR) & R.MSR_CTS)
        return ev

    def send(self, data: bytes) -> None:
        """At most FIFO_DEPTH bytes, only after THR emptied (a THRE interrupt)."""
        if data:
            self.ch.outs(self.base + R.THR, 1, data[:R.FIFO_DEPTH])

    def start(self) -> None:
        self.set_ier(IER_ALWAYS | R.IER_ETBEI)

    def idle(self) -> None:
        self.set_ier(IER_ALWAYS)
