"""Parallel port LPT1 with a printer on it, 0x378-0x37A, IRQ 7 (runs in the board process).

Role: the printer driver's device.  Each character the driver hands over
with the Centronics handshake is appended exactly once to the output file
given at construction, so a test (or a person) reads the "paper".

What is modelled (spec sheet 5): the data latch, the status register (nBUSY,
nACK, PE, SLCT, nERROR) and the control register (STROBE, AUTOFD, nINIT,
SELECT IN, IRQ enable, DIR; bits 7:6 read as 1 as in QEMU).  Handshake: the
data byte is latched when STROBE is asserted (the printer shows BUSY while it
is held) and printed when STROBE is released; the printer then pulses nACK,
and the rising edge of nACK raises IRQ 7 if control bit 4 is set at that
moment.  As in QEMU the line then stays high until the status register is
read; clearing control bit 4 or resetting the printer also drops it.

Choices:

* an "instant printer" (sheet 5.5): printing and the ACK pulse complete
  within the STROBE-release write, so the next status read shows ready
  (0xD8, ``& 0xB0 == 0x90``) and a MINIX-style driver streams a whole chunk;
* the printer takes data only with SELECT IN set and nINIT = 1 (QEMU); while
  nINIT = 0 it is held in reset: strobes are ignored and it reads ready;
* fault knobs: ``paper_out`` shows PE = 1, nERROR = 0, BUSY; ``offline``
  shows SLCT = 0, nERROR = 0, BUSY.  A strobe while either is set prints
  nothing (counted in ``refused``), as a real printer ignores it when busy;
* the EPP timeout bit 0 and reserved bits 2:1 read 0.
"""
from __future__ import annotations

import os

from hw.device import Device, IrqLine

LPT1_BASE = 0x378
LPT1_IRQ = 7
DATA = 0
STATUS = 1
CONTROL = 2

# Status register (base + 1)
ST_NBUSY = 0x80  # 1 = not busy
ST_NACK = 0x40  # 0 while ACK is pulsed
ST_PE = 0x20  # paper end
ST_SLCT = 0x10  # selected / on line
ST_NERROR = 0x08  # 0 = error
# Control register (base + 2)
CT_STROBE = 0x01
CT_AUTOFD = 0x02
CT_NINIT = 0x04  # 0 = printer reset
CT_SELECT_IN = 0x08
CT_IRQ_ENABLE = 0x10
CT_DIR = 0x20
CT_READS_ONE = 0xC0

RESET_DATA = 0xFF
RESET_CONTROL = CT_READS_ONE | CT_SELECT_IN | CT_NINIT
READY_STATUS = ST_NBUSY | ST_NACK | ST_SLCT | ST_NERROR  # 0xD8


class ParallelPrinter(Device):
    """LPT1 and an instant printer appending to ``output_path``."""

    name = "lpt"
    ports = ((LPT1_BASE, 3),)

    def __init__(self, irq: IrqLine, output_path: str | os.PathLike[str],
                 base: int = LPT1_BASE) -> None:
        self._irq = irq
        self.base = base
        self.ports = ((base, 3),)
        self.output_path = os.fspath(output_path)
        self._out = os.open(self.output_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.paper_out = False
        self.offline = False
        self.printed = 0  # bytes appended to the output file
        self.refused = 0  # strobes the printer ignored (busy, off line, no paper, in reset)
        self.write_errors = 0
        self.bad_accesses = 0
        self.reset()

    def reset(self) -> None:
        self.data = RESET_DATA
        self.control = RESET_CONTROL
        self._latched: int | None = None  # byte taken on STROBE, printed on release
        self._irq_pending = False
        self._irq.set_level(False)

    def _accepting(self) -> bool:
        return (not self.paper_out and not self.offline
                and bool(self.control & CT_NINIT) and bool(self.control & CT_SELECT_IN))

    def status(self) -> int:
        """The status register as the printer drives it now (no side effects)."""
        if self.offline or self.paper_out:
            value = ST_NACK
            value |= 0 if self.offline else ST_SLCT
            value |= ST_PE if self.paper_out else 0
            return value
        if self._latched is not None:
            return READY_STATUS & ~ST_NBUSY
        return READY_STATUS

    def _set_irq(self, pending: bool) -> None:
        self._irq_pending = pending
        self._irq.set_level(pending)

    def _write_control(self, value: int) -> None:
        old, self.control = self.control, value | CT_READS_ONE
        if not value & CT_NINIT:
            self._latched = None  # printer reset: a half-done character is lost
            self._set_irq(False)
            if value & CT_STROBE and not old & CT_STROBE:
                self.refused += 1
            return
        if value & CT_STROBE and not old & CT_STROBE:
            if self._accepting():
                self._latched = self.data
            else:
                self.refused += 1
        elif old & CT_STROBE and not value & CT_STROBE and self._latched is not None:
            self._print(self._latched)
            self._latched = None
            self._ack_pulse()
        if not value & CT_IRQ_ENABLE and self._irq_pending:
            self._set_irq(False)

    def _print(self, byte: int) -> None:
        try:
            os.write(self._out, bytes([byte]))
            self.printed += 1
        except OSError:
            self.write_errors += 1

    def _ack_pulse(self) -> None:
        """nACK goes low and back high; the rising edge interrupts if enabled."""
        if self.control & CT_IRQ_ENABLE:
            self._irq.set_level(False)
            self._set_irq(True)

    def io_read(self, port: int, size: int) -> int:
        offset = port - self.base
        if size != 1 or not 0 <= offset <= CONTROL:
            self.bad_accesses += 1
            return (1 << (8 * size)) - 1
        if offset == DATA:
            return 0xFF if self.control & CT_DIR else self.data  # nothing drives the lines
        if offset == STATUS:
            value = self.status()
            if self._irq_pending:
                self._set_irq(False)
            return value
        return self.control

    def io_write(self, port: int, size: int, value: int) -> None:
        offset = port - self.base
        if size != 1 or not 0 <= offset <= CONTROL:
            self.bad_accesses += 1
            return
        if offset == DATA:
            self.data = value & 0xFF
        elif offset == CONTROL:
            self._write_control(value & 0xFF)
        # the status register is read-only

    def close(self) -> None:
        os.close(self._out)
