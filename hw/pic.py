"""Intel 8259A programmable interrupt controller pair (runs in the board process).

Role: every device interrupt line ends here.  Devices drive ``IrqLine`` objects
from ``pic.line(n)``; the board asks ``pending_irq()`` once per loop turn, which
performs the interrupt-acknowledge cycle (INTA) exactly as a CPU would and
returns the IRQ number to forward to the kernel as a notification.

What is modelled (datasheet / QEMU ``hw/intc/i8259.c`` semantics):

* master at 0x20/0x21, slave at 0xA0/0xA1, the slave's INT output wired to
  master input IR2 (``CASCADE_IRQ``);
* ICW1..ICW4 initialisation, OCW1 (IMR), OCW2 (non-specific / specific EOI,
  rotations, set priority), OCW3 (IRR/ISR read select, poll, special mask);
* edge-triggered inputs: a 0->1 transition of a line sets its IRR bit; a line
  that stays high does not re-trigger.  ``IrqLine`` objects remember their own
  level, so only real transitions reach the chip.  ICW1 clears IRR, so a line
  that is high during initialisation must go low and high again to interrupt
  (the datasheet's "edge sense circuit is reset");
* INTA: highest-priority unmasked IRR bit above the highest in-service
  priority moves to ISR (unless auto-EOI); nothing pending gives the spurious
  IRQ 7 (master) or 15 (slave, with the master's IR2 still acknowledged).

Choices: level-triggered mode (ICW1 LTIM, the ELCR ports 0x4D0/0x4D1) is not
modelled, every input is edge-triggered as on the ISA PC; buffered mode bits of
ICW4 are stored and ignored.
"""
from __future__ import annotations

import enum

from hw.device import Device

MASTER_CMD = 0x20
MASTER_DATA = 0x21
SLAVE_CMD = 0xA0
SLAVE_DATA = 0xA1
CASCADE_IRQ = 2
SPURIOUS_IRQ = 7  # lowest-priority input of each chip; 15 when it comes from the slave

# ICW1 (command port, bit 4 set)
ICW1_INIT = 0x10
ICW1_IC4 = 0x01  # ICW4 follows
ICW1_SNGL = 0x02  # single chip, no ICW3
ICW1_LTIM = 0x08  # level-triggered mode (not modelled)
ICW2_VECTOR_MASK = 0xF8
# ICW4
ICW4_AEOI = 0x02
ICW4_SFNM = 0x10
# OCW2 (command port, bits 4:3 = 00): command in bits 7:5, level in bits 2:0
OCW2_CMD_SHIFT = 5
OCW2_ROTATE_AEOI_CLEAR = 0
OCW2_NONSPECIFIC_EOI = 1
OCW2_SPECIFIC_EOI = 3
OCW2_ROTATE_AEOI_SET = 4
OCW2_ROTATE_NONSPECIFIC_EOI = 5
OCW2_SET_PRIORITY = 6
OCW2_ROTATE_SPECIFIC_EOI = 7
OCW2_LEVEL_MASK = 0x07
# OCW3 (command port, bits 4:3 = 01)
OCW3_SELECT = 0x08
OCW3_POLL = 0x04
OCW3_RR = 0x02  # read-register command enabled
OCW3_RIS = 0x01  # 0 = IRR, 1 = ISR
OCW3_ESMM = 0x40  # enable changing special mask mode
OCW3_SMM = 0x20
POLL_INTERRUPT = 0x80


class InitStep(enum.Enum):
    """Where the chip is in the ICW sequence: which word the data port takes next."""

    OPERATIONAL = "OCW1"  # initialised: data port writes are the IMR
    ICW2 = "ICW2"
    ICW3 = "ICW3"
    ICW4 = "ICW4"


class Pic8259:
    """One 8259A chip.  Holds the registers; the pair does the wiring."""

    def __init__(self, is_master: bool) -> None:
        self.is_master = is_master
        self.reset()

    def reset(self) -> None:
        self.irr = 0
        self.isr = 0
        self.imr = 0
        self.vector_base = 0
        self.priority_add = 0  # the input that currently has highest priority
        self.read_isr = False
        self.poll = False
        self.special_mask = False
        self.init_step = InitStep.OPERATIONAL
        self.expect_icw4 = False
        self.single = False
        self.auto_eoi = False
        self.rotate_on_auto_eoi = False
        self.special_fully_nested = False
        self.icw3 = 0
        self.icw4 = 0

    def rising_edge(self, irq: int) -> None:
        self.irr |= 1 << irq

    def _priority(self, mask: int) -> int:
        """Priority (0 = highest) of the best bit set in ``mask``, 8 if none."""
        for priority in range(8):
            if mask & (1 << ((priority + self.priority_add) & 7)):
                return priority
        return 8

    def best_request(self) -> int | None:
        """The input INTA would acknowledge now, or None (the chip's INT output)."""
        priority = self._priority(self.irr & ~self.imr)
        if priority == 8:
            return None
        in_service = self.isr
        if self.special_mask:
            in_service &= ~self.imr
        if self.special_fully_nested and self.is_master:
            in_service &= ~(1 << CASCADE_IRQ)
        if priority < self._priority(in_service):
            return (priority + self.priority_add) & 7
        return None

    def acknowledge(self, irq: int) -> None:
        if self.auto_eoi:
            if self.rotate_on_auto_eoi:
                self.priority_add = (irq + 1) & 7
        else:
            self.isr |= 1 << irq
        self.irr &= ~(1 << irq)

    def write_command(self, value: int) -> None:
        if value & ICW1_INIT:
            self.reset()
            self.init_step = InitStep.ICW2
            self.expect_icw4 = bool(value & ICW1_IC4)
            self.single = bool(value & ICW1_SNGL)
        elif value & OCW3_SELECT:
            if value & OCW3_POLL:
                self.poll = True
            if value & OCW3_RR:
                self.read_isr = bool(value & OCW3_RIS)
            if value & OCW3_ESMM:
                self.special_mask = bool(value & OCW3_SMM)
        else:
            self._ocw2(value >> OCW2_CMD_SHIFT, value & OCW2_LEVEL_MASK)

    def _ocw2(self, command: int, level: int) -> None:
        if command in (OCW2_ROTATE_AEOI_CLEAR, OCW2_ROTATE_AEOI_SET):
            self.rotate_on_auto_eoi = command == OCW2_ROTATE_AEOI_SET
        elif command in (OCW2_NONSPECIFIC_EOI, OCW2_ROTATE_NONSPECIFIC_EOI):
            priority = self._priority(self.isr)
            if priority != 8:
                irq = (priority + self.priority_add) & 7
                self.isr &= ~(1 << irq)
                if command == OCW2_ROTATE_NONSPECIFIC_EOI:
                    self.priority_add = (irq + 1) & 7
        elif command == OCW2_SPECIFIC_EOI:
            self.isr &= ~(1 << level)
        elif command == OCW2_SET_PRIORITY:
            self.priority_add = (level + 1) & 7
        elif command == OCW2_ROTATE_SPECIFIC_EOI:
            self.isr &= ~(1 << level)
            self.priority_add = (level + 1) & 7

    def write_data(self, value: int) -> None:
        after_icw3 = InitStep.ICW4 if self.expect_icw4 else InitStep.OPERATIONAL
        if self.init_step is InitStep.OPERATIONAL:
            self.imr = value
        elif self.init_step is InitStep.ICW2:
            self.vector_base = value & ICW2_VECTOR_MASK
            self.init_step = after_icw3 if self.single else InitStep.ICW3
        elif self.init_step is InitStep.ICW3:
            self.icw3 = value
            self.init_step = after_icw3
        else:
            self.icw4 = value
            self.auto_eoi = bool(value & ICW4_AEOI)
            self.special_fully_nested = bool(value & ICW4_SFNM)
            self.init_step = InitStep.OPERATIONAL

    def read(self, is_command_port: bool) -> int:
        if self.poll:
            self.poll = False
            irq = self.best_request()
            if irq is None:
                return 0
            self.acknowledge(irq)
            return POLL_INTERRUPT | irq
        if is_command_port:
            return self.isr if self.read_isr else self.irr
        return self.imr


class PicLine:
    """An ``IrqLine`` into one input of the pair; forwards only real transitions."""

    def __init__(self, pair: PicPair, irq: int) -> None:
        self._pair = pair
        self.irq = irq
        self.level = False
        self.rises = 0

    def set_level(self, level: bool) -> None:
        level = bool(level)
        if level == self.level:
            return
        self.level = level
        if level:
            self.rises += 1
            self._pair.rising_edge(self.irq)


class PicPair(Device):
    """The PC's cascaded master/slave 8259A pair, IRQ 0-15."""

    name = "pic"
    ports = ((MASTER_CMD, 2), (SLAVE_CMD, 2))

    def __init__(self) -> None:
        self.master = Pic8259(is_master=True)
        self.slave = Pic8259(is_master=False)
        self._lines: dict[int, PicLine] = {}
        self._cascade_level = False
        self.spurious = 0  # spurious INTA cycles (IRQ 7 / 15)
        self.bad_accesses = 0

    def line(self, irq: int) -> PicLine:
        """The line for IRQ ``irq`` (0-15, not the cascade input 2); one object per IRQ."""
        if not 0 <= irq < 16 or irq == CASCADE_IRQ:
            raise ValueError(f"no device IRQ line {irq}")
        if irq not in self._lines:
            self._lines[irq] = PicLine(self, irq)
        return self._lines[irq]

    def reset(self) -> None:
        self.master.reset()
        self.slave.reset()
        self._cascade_level = False
        for line in self._lines.values():
            line.level = False

    def rising_edge(self, irq: int) -> None:
        if irq < 8:
            self.master.rising_edge(irq)
        else:
            self.slave.rising_edge(irq - 8)
        self._update_cascade()

    def _update_cascade(self) -> None:
        """The slave's INT output is an edge-triggered input of the master."""
        level = self.slave.best_request() is not None
        if level and not self._cascade_level:
            self.master.rising_edge(CASCADE_IRQ)
        self._cascade_level = level

    def interrupt_output(self) -> bool:
        """The master's INT pin: a request the CPU would be interrupted for."""
        return self.master.best_request() is not None

    def inta(self) -> int:
        """One interrupt-acknowledge cycle; returns the vector the CPU would receive."""
        vector, _, _ = self._acknowledge()
        return vector

    def pending_irq(self) -> int | None:
        """If INT is asserted, acknowledge and return the IRQ number (0-15).

        Returns None when nothing is pending or the cycle was spurious.  A
        spurious IRQ 15 leaves the master's cascade input in service; the board
        has no handler to run, so it ends it the way an OS handler for a
        spurious slave interrupt does (EOI to the master only).
        """
        if not self.interrupt_output():
            return None
        _, irq, spurious = self._acknowledge()
        if not spurious:
            return irq
        if irq >= 8 and not self.master.auto_eoi:
            self.master.isr &= ~(1 << CASCADE_IRQ)
        return None

    def _acknowledge(self) -> tuple[int, int, bool]:
        """INTA: (vector, irq number, spurious)."""
        irq = self.master.best_request()
        if irq is None:
            self.spurious += 1
            return self.master.vector_base + SPURIOUS_IRQ, SPURIOUS_IRQ, True
        self.master.acknowledge(irq)
        if irq != CASCADE_IRQ:
            return self.master.vector_base + irq, irq, False
        slave_irq = self.slave.best_request()
        spurious = slave_irq is None
        if slave_irq is None:
            self.spurious += 1
            slave_irq = SPURIOUS_IRQ
        else:
            self.slave.acknowledge(slave_irq)
        self._update_cascade()
        return self.slave.vector_base + slave_irq, 8 + slave_irq, spurious

    def _chip(self, port: int, size: int) -> Pic8259 | None:
        """The chip decoding ``port``, or None for an access the pair ignores."""
        if size != 1:
            self.bad_accesses += 1
            return None
        if port in (MASTER_CMD, MASTER_DATA):
            return self.master
        if port in (SLAVE_CMD, SLAVE_DATA):
            return self.slave
        self.bad_accesses += 1
        return None

    def io_read(self, port: int, size: int) -> int:
        chip = self._chip(port, size)
        if chip is None:
            return (1 << (8 * size)) - 1
        value = chip.read(is_command_port=port in (MASTER_CMD, SLAVE_CMD))
        self._update_cascade()
        return value

    def io_write(self, port: int, size: int, value: int) -> None:
        chip = self._chip(port, size)
        if chip is None:
            return
        if port in (MASTER_CMD, SLAVE_CMD):
            chip.write_command(value & 0xFF)
        else:
            chip.write_data(value & 0xFF)
        self._update_cascade()
