"""PCI IDE bus-master DMA: the PIIX3 IDE function and its bus-master engine (runs in the board process).

Role: the part of the disk controller that moves sector data to and from
memory by itself (devices sheet 2.8, SFF-8038i, as QEMU's ``hw/ide/piix.c``
and MINIX's at_wini use it).  ``PiixIde`` is PCI function 8086:7010 (class
01, subclass 01, prog-if 0x80: bus-master capable, legacy ports) whose BAR4
is a 16-byte I/O window of bus-master registers, eight per channel:

  +0 Command  bit0 Start/Stop, bit3 direction (1 = write memory, a disk READ)
  +2 Status   bit0 Active (RO), bit1 Error (W1C), bit2 Interrupt (W1C),
              bits 5/6 drive 0/1 DMA capable (RW), bit7 simplex (0: RO)
  +4 PRD table address (32 bits, dword aligned)

The legacy task file stays in ``hw.ata.AtaChannel`` (the drive); the primary
channel's ``BusMaster`` is its partner.  Data moves only while the drive has
a DMA command pending, Active is set (Start went 0 -> 1) and the PCI command
register has bus mastering on; whichever of the three comes last starts the
transfer, so a command issued with Start already set runs at once, as in
QEMU, and one issued before Start waits for it.  The engine walks the PRD
table through the IOMMU (``dma``, device "ata"): the table, and every byte of
every region, must be granted, or the transfer stops with a bus error.

End of a transfer (sheet 2.8): the drive raises INTRQ, which sets Interrupt.
Active clears when the table's last (EOT) region is used up; so Interrupt 1 /
Active 0 means the table covered the transfer exactly, Interrupt 1 /
Active 1 that it was larger (both normal); a table smaller than the transfer
leaves Interrupt 0 / Active 0 and the drive waiting in its DMA phase (a new
Start continues from there; SRST ends it).  A bad sector ends the command
with ERR and UNC in the drive's registers, which name that sector; sectors
before it have reached memory; Active clears, Error stays clear.

Choices where the sheet is silent or UNCONFIRMED:

* a bus error (the IOMMU refuses a PRD read or a region, a region crossing a
  64 KiB boundary, or a direction bit that disagrees with the command) sets
  Error, clears Active, latches "received master abort" in the PCI status,
  and ends the drive's command with ERR and ABRT and an IRQ; bytes moved
  before it stay moved (never any outside the grants).  Real PIIX behaviour
  on a straddling region or a wrong direction is undefined; QEMU ignores both;
* a PRD entry's base bit 0 and count bit 0 are ignored (both must be even);
  the table's entry address wraps inside its 64 KiB block, as a 16-bit
  counter would (a table may not cross one; every entry moves >= 2 bytes, so
  a table without EOT still ends with the drive's transfer);
* the secondary channel's registers exist but no drive is behind them;
* the PIIX timing registers (config 0x40-0x4F) are not modelled: the legacy
  ports always decode.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from hw.ata import ST_ERR, AtaChannel
from hw.device import Device, DmaFault, DmaPort
from hw.pci import PCI_COMMAND_IO, PCI_STATUS_REC_MASTER_ABORT, PciFunction

# PCI identity (sheet 2.8) and the window the board's firmware gives BAR4.  The
# disk driver's ``io`` window in etc/system.conf must name the same base.
VENDOR_ID = 0x8086
DEVICE_ID = 0x7010  # PIIX3 IDE
CLASS_CODE = 0x010180  # mass storage, IDE, prog-if 0x80 (bus master, legacy ports)
ISA_BRIDGE_DEVICE_ID = 0x7000  # PIIX3 function 0, the PCI-to-ISA bridge
ISA_BRIDGE_CLASS = 0x060100
BM_BAR = 4
BM_WINDOW = 16
DEFAULT_BM_BASE = 0xC100  # after the NIC's 0xC000:256

# Bus-master registers, offsets from a channel's base (primary +0, secondary +8).
BM_COMMAND = 0
BM_STATUS = 2
BM_PRDT = 4
BM_CHANNEL_SIZE = 8
BMCMD_START = 0x01
BMCMD_TO_MEMORY = 0x08  # "read/write control": 1 = the bus master writes memory
BMCMD_WRITABLE = BMCMD_START | BMCMD_TO_MEMORY
BMSTA_ACTIVE = 0x01
BMSTA_ERROR = 0x02
BMSTA_INTERRUPT = 0x04
BMSTA_DRIVE0_DMA = 0x20
BMSTA_DRIVE1_DMA = 0x40
BMSTA_SIMPLEX = 0x80
BMSTA_W1C = BMSTA_ERROR | BMSTA_INTERRUPT
BMSTA_RW = BMSTA_DRIVE0_DMA | BMSTA_DRIVE1_DMA
PRDT_MASK = 0xFFFFFFFC

# Physical region descriptors.
PRD_SIZE = 8
PRD_EOT = 0x8000
PRD_MAX_BYTES = 0x10000  # a count of 0
BOUNDARY = 0x10000  # neither a region nor the table may cross one


class BusError(Exception):
    """A transfer the bus master cannot make (the IOMMU refused it, or a bad PRD)."""


@dataclass
class Counters:
    transfers: int = 0  # DMA commands the engine finished (the drive ended them)
    bus_errors: int = 0
    bytes: int = 0


class BusMaster:
    """One channel's bus-master registers and engine; ``drive`` is None if nothing is attached."""

    def __init__(self, function: PciFunction, drive: AtaChannel | None, dma: DmaPort) -> None:
        self.function, self.drive, self.dma = function, drive, dma
        self.counters = Counters()
        self.reset()

    def reset(self) -> None:
        self.command = 0
        self.status = 0
        self.prdt = 0
        self._entry = 0  # the next PRD entry to fetch
        self._address = 0  # where the current region continues
        self._left = 0  # bytes left in the current region
        self._last = False  # the current region is the EOT one

    # -- registers --------------------------------------------------------------

    def read_byte(self, offset: int) -> int:
        if offset == BM_COMMAND:
            return self.command
        if offset == BM_STATUS:
            return self.status
        if BM_PRDT <= offset < BM_PRDT + 4:
            return self.prdt >> 8 * (offset - BM_PRDT) & 0xFF
        return 0  # reserved

    def write_byte(self, offset: int, value: int) -> None:
        if offset == BM_COMMAND:
            self._write_command(value & BMCMD_WRITABLE)
        elif offset == BM_STATUS:
            self.status = (self.status & BMSTA_ACTIVE | value & BMSTA_RW
                           | self.status & BMSTA_W1C & ~value)
        elif BM_PRDT <= offset < BM_PRDT + 4:
            shift = 8 * (offset - BM_PRDT)
            self.prdt = (self.prdt & ~(0xFF << shift) | value << shift) & PRDT_MASK

    def _write_command(self, value: int) -> None:
        started = value & BMCMD_START and not self.command & BMCMD_START
        stopped = self.command & BMCMD_START and not value & BMCMD_START
        self.command = value
        if stopped:
            self.status &= ~BMSTA_ACTIVE  # the driver's part once the transfer has ended
        elif started:
            self._entry, self._left, self._last = 0, 0, False  # back to the table's start
            self.status |= BMSTA_ACTIVE
            self.run()

    # -- the drive's signals ----------------------------------------------------

    def drive_request(self) -> None:
        self.run()

    def drive_interrupt(self) -> None:
        self.status |= BMSTA_INTERRUPT

    # -- the engine ---------------------------------------------------------------

    def run(self) -> None:
        """Move data while the drive asks for it, Active is set and bus mastering is on."""
        drive = self.drive
        if (drive is None or not drive.dma_pending or not self.status & BMSTA_ACTIVE
                or not self.function.bus_master):
            return
        try:
            if bool(self.command & BMCMD_TO_MEMORY) != drive.dma_to_memory:
                raise BusError("the direction bit disagrees with the drive's command")
            while drive.dma_pending:
                if self._left == 0:
                    if self._last:  # the table is smaller than the transfer: the drive waits
                        self.status &= ~BMSTA_ACTIVE
                        return
                    self._fetch_region()
                elif drive.dma_to_memory:
                    data = drive.dma_peek(self._left)
                    if not data:
                        break  # the drive ended the command (a bad sector)
                    self.dma.write(self._address, data)
                    drive.dma_take(len(data))
                    self._moved(len(data))
                else:
                    count = min(self._left, drive.dma_room())
                    drive.dma_give(self.dma.read(self._address, count))
                    self._moved(count)
        except (BusError, DmaFault):
            self.counters.bus_errors += 1
            self.status = self.status & ~BMSTA_ACTIVE | BMSTA_ERROR
            self.function.set_status(PCI_STATUS_REC_MASTER_ABORT)
            drive.dma_bus_error()
            return
        self.counters.transfers += 1
        if drive.status & ST_ERR or (self._left == 0 and self._last):  # ERR, or the table used up
            self.status &= ~BMSTA_ACTIVE

    def _moved(self, count: int) -> None:
        self._address += count
        self._left -= count
        self.counters.bytes += count

    def _fetch_region(self) -> None:
        """Read the next PRD entry through the IOMMU and make it the current region."""
        at = self.prdt & ~(BOUNDARY - 1) | (self.prdt + PRD_SIZE * self._entry) & (BOUNDARY - 1)
        base, count, flags = struct.unpack("<IHH", self.dma.read(at, PRD_SIZE))
        self._entry += 1
        base &= ~1
        count = count & ~1 or PRD_MAX_BYTES
        if base // BOUNDARY != (base + count - 1) // BOUNDARY:
            raise BusError(f"PRD region {base:#x}+{count:#x} crosses a 64 KiB boundary")
        self._address, self._left, self._last = base, count, bool(flags & PRD_EOT)


class PiixIde(PciFunction, Device):
    """PIIX3 IDE (function 1 of the PIIX3): BAR4's bus-master registers, both channels."""

    name = "piix-ide"

    def __init__(self, drive: AtaChannel, dma: DmaPort, io_base: int = DEFAULT_BM_BASE) -> None:
        PciFunction.__init__(self, VENDOR_ID, DEVICE_ID, CLASS_CODE, revision=0)
        self.primary = BusMaster(self, drive, dma)
        self.secondary = BusMaster(self, None, dma)
        drive.bus_master = self.primary
        self.add_bar(BM_BAR, BM_WINDOW, io=True, base=io_base)
        self.set_command(PCI_COMMAND_IO)  # the firmware's part; bus mastering is the driver's
        self.snapshot_config()
        self.config_written(0, 0)

    def config_written(self, offset: int, size: int) -> None:
        # The window follows BAR4; turning bus mastering on lets a waiting transfer go.
        self.ports = ((self.bar_base(BM_BAR), BM_WINDOW),)
        self.primary.run()

    def reset(self) -> None:
        self.primary.reset()
        self.secondary.reset()

    def _lane(self, offset: int) -> tuple[BusMaster, int]:
        channel = self.primary if offset < BM_CHANNEL_SIZE else self.secondary
        return channel, offset % BM_CHANNEL_SIZE

    def io_read(self, port: int, size: int) -> int:
        offset = port - self.bar_base(BM_BAR)
        if not self.io_enabled or offset < 0 or offset + size > BM_WINDOW:
            return (1 << (8 * size)) - 1
        value = 0
        for lane in range(size):
            channel, register = self._lane(offset + lane)
            value |= channel.read_byte(register) << 8 * lane
        return value

    def io_write(self, port: int, size: int, value: int) -> None:
        offset = port - self.bar_base(BM_BAR)
        if not self.io_enabled or offset < 0 or offset + size > BM_WINDOW:
            return
        for lane in range(size):
            channel, register = self._lane(offset + lane)
            channel.write_byte(register, value >> 8 * lane & 0xFF)


def isa_bridge() -> PciFunction:
    """PIIX3 function 0 (8086:7000), so the IDE function sits where it does on a PC."""
    return PciFunction(VENDOR_ID, ISA_BRIDGE_DEVICE_ID, ISA_BRIDGE_CLASS, revision=0)
