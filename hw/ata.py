"""ATA/IDE primary channel, PIO and DMA, 0x1F0-0x1F7 and 0x3F6, IRQ 14 (runs in the board process).

Role: the disk.  A master drive backed by a disk image file (512-byte
sectors; a partial last sector is not addressable); the slave is absent and
every register reads 0 while it is selected.

What is modelled (spec sheet 2, QEMU ``hw/ide/core.c`` semantics): the task
file registers, LBA28 and CHS addressing, IDENTIFY DEVICE, READ SECTORS,
WRITE SECTORS, READ DMA, WRITE DMA, FLUSH CACHE, INITIALIZE DEVICE
PARAMETERS, RECALIBRATE; any other command aborts (status 0x41, error ABRT).
A DMA command puts the drive in its DMA phase (status 0x58, no IRQ) and the
bus master (``hw.ata_dma``, the PIIX3 IDE function) moves the bytes through
the ``dma_*`` methods below; the drive ends the command as PIO does, with
INTRQ, once its last sector is done (or at a bad sector, or when the bus
master reports a bus error).  The drive tells the bus master of each
interrupt it drives (the bus-master status Interrupt bit).  The BSY/DRQ/ERR protocol and
its IRQ points follow sheet 2.4: a data-in block is announced by DRQ + IRQ and
the last word of the last block ends the command without an IRQ; WRITE's first
block needs no IRQ, every written block is followed by one.  INTRQ is a level
set at those points and cleared by reading Status (0x1F7, not 0x3F6) or
writing a command; the line carries it unless nIEN is set.  Register writes
other than Command are ignored while BSY or DRQ is set, and so are commands.
The address registers advance (and the count drops) as each sector completes,
so after an error they name the failing sector.  SRST on 0x3F6 holds the
drive BSY while set; clearing it posts the diagnostic signature (count 1,
sector 1, cylinder 0, error 0x01, status 0x50) and an IRQ.

Choices:

* BSY is instantaneous: media access happens inside the register access
  that starts it, so a driver never sees BSY except while SRST is held; the
  phases (idle, data-in, data-out, reset) are still an explicit state machine;
* writes go to the image with ``pwrite`` (the host page cache acts as the
  drive's write cache); FLUSH CACHE calls ``fsync``, which makes them durable;
* geometry: the largest heads x sectors-per-track (<= 16 x 63) that divides the
  capacity exactly, so CHS covers the whole image; if none does, 16 x 63 and
  C x H x S falls a little short of the LBA capacity (words 60-61);
  INITIALIZE DEVICE PARAMETERS sets the current geometry (words 54-58) used
  by CHS translation, as on a real drive (QEMU ignores it); SRST keeps it,
  power-on restores the default (UNCONFIRMED: what ATA-6 requires on SRST);
* word 47 reports no READ/WRITE MULTIPLE, word 49 LBA and DMA, word 63
  multiword DMA modes 0-2 supported and mode 2 selected (no Ultra DMA);
* fault knobs: ``bad_sectors`` (reads fail with ERR and error UNC, with the
  usual IRQ, for PIO and DMA alike; writes to them succeed, the drive
  "remaps") and
  ``irq_disabled`` (the drive never drives INTRQ, for driver timeout paths).
"""
from __future__ import annotations

import enum
import os
import struct
from typing import Protocol

from hw.device import Device, IrqLine

ATA_PRIMARY_BASE = 0x1F0
ATA_PRIMARY_CONTROL = 0x3F6
ATA_PRIMARY_IRQ = 14
SECTOR_SIZE = 512
WORDS_PER_SECTOR = SECTOR_SIZE // 2
LBA28_LIMIT = (1 << 28) - 1

# Command block registers (offsets from 0x1F0)
REG_DATA = 0
REG_ERROR = REG_FEATURES = 1
REG_NSECTOR = 2
REG_SECTOR = 3  # sector number / LBA 7:0
REG_LCYL = 4  # cylinder low / LBA 15:8
REG_HCYL = 5  # cylinder high / LBA 23:16
REG_SELECT = 6  # device / head
REG_STATUS = REG_COMMAND = 7
# Status
ST_BSY = 0x80
ST_DRDY = 0x40
ST_DF = 0x20
ST_DSC = 0x10
ST_DRQ = 0x08
ST_ERR = 0x01
STATUS_IDLE = ST_DRDY | ST_DSC  # 0x50
STATUS_DATA = STATUS_IDLE | ST_DRQ  # 0x58
STATUS_ABORTED = ST_DRDY | ST_ERR  # 0x41
# Error
ER_UNC = 0x40
ER_IDNF = 0x10
ER_ABRT = 0x04
ER_DIAG_PASSED = 0x01
# Device/Head
SEL_OBSOLETE = 0xA0  # bits 7 and 5, forced on
SEL_LBA = 0x40
SEL_DEV = 0x10  # 1 = slave
SEL_HEAD = 0x0F
# Device Control (0x3F6 write)
CTL_NIEN = 0x02
CTL_SRST = 0x04
# Commands
CMD_RECALIBRATE = 0x10
CMD_READ_SECTORS = 0x20
CMD_WRITE_SECTORS = 0x30
CMD_INIT_DEV_PARAMS = 0x91
CMD_READ_DMA = 0xC8
CMD_WRITE_DMA = 0xCA
CMD_FLUSH_CACHE = 0xE7
CMD_IDENTIFY = 0xEC

MAX_CHS_CYLINDERS = 16383
MAX_HEADS = 16
MAX_SPT = 63
SERIAL = "MK0001"
FIRMWARE = "0.1"
MODEL = "MINIKERN HARDDISK"


class Phase(enum.Enum):
    IDLE = "idle"  # no command; status 0x50 or an error status
    DATA_IN = "data-in"  # DRQ: the host reads the buffer
    DATA_OUT = "data-out"  # DRQ: the host fills the buffer
    RESET = "reset"  # SRST held: BSY
    DMA = "dma"  # DRQ: the bus master moves the data


class BusMasterLink(Protocol):
    """What the drive tells its channel's bus master (``hw.ata_dma.BusMaster``)."""

    def drive_request(self) -> None:
        """A DMA command is waiting for data to move (DMARQ)."""

    def drive_interrupt(self) -> None:
        """The drive has driven INTRQ."""


def ata_string(text: str, length: int) -> list[int]:
    """IDENTIFY string words: space padded, first character in the high byte."""
    raw = text.ljust(length)[:length].encode("ascii")
    return [raw[i] << 8 | raw[i + 1] for i in range(0, length, 2)]


def default_geometry(sectors: int) -> tuple[int, int, int]:
    """(cylinders, heads, sectors per track) for a disk of ``sectors`` sectors."""
    best: tuple[int, int, int] | None = None
    for spt in range(MAX_SPT, 0, -1):
        for heads in range(MAX_HEADS, 0, -1):
            cylinders, rest = divmod(sectors, heads * spt)
            if rest == 0 and 1 <= cylinders <= MAX_CHS_CYLINDERS and (
                    best is None or heads * spt > best[1] * best[2]):
                best = (cylinders, heads, spt)
    if best is not None:
        return best
    return max(1, min(MAX_CHS_CYLINDERS, sectors // (MAX_HEADS * MAX_SPT))), MAX_HEADS, MAX_SPT


class AtaChannel(Device):
    """Primary ATA channel with one PIO disk (master) backed by ``image_path``."""

    name = "ata"
    ports = ((ATA_PRIMARY_BASE, 8), (ATA_PRIMARY_CONTROL, 1))

    def __init__(self, irq: IrqLine, image_path: str | os.PathLike[str]) -> None:
        self._irq = irq
        self.image_path = os.fspath(image_path)
        self._fd = os.open(self.image_path, os.O_RDWR)
        self.sectors = os.fstat(self._fd).st_size // SECTOR_SIZE
        self.cylinders, self.heads, self.spt = default_geometry(self.sectors)
        self.bad_sectors: set[int] = set()
        self._irq_disabled = False
        self.bad_accesses = 0
        self.bus_master: BusMasterLink | None = None  # set by the PCI IDE function
        self._dma_to_memory = False  # READ DMA (True) or WRITE DMA
        self.reset()

    # State
    def reset(self) -> None:
        """Power-on: default geometry, interrupts enabled, the diagnostic signature, no IRQ."""
        self.control = 0
        self.cur_cylinders, self.cur_heads, self.cur_spt = self.cylinders, self.heads, self.spt
        self._intrq = False
        self._post_diagnostic()
        self._update_irq()

    def _post_diagnostic(self) -> None:
        """The end of a reset: registers hold the ATA signature, the drive is idle."""
        self.features = 0
        self.error = ER_DIAG_PASSED
        self.nsector = 1
        self.sector = 1
        self.lcyl = 0
        self.hcyl = 0
        self.select = SEL_OBSOLETE
        self.status = STATUS_IDLE
        self.phase = Phase.IDLE
        self._buffer = bytearray()
        self._pos = 0
        self._remaining = 0  # sectors of the command still to transfer

    def _enter(self, phase: Phase, status: int, *, interrupt: bool) -> None:
        """The one transition point: new phase and status, and INTRQ if asked."""
        self.phase = phase
        self.status = status
        if interrupt:
            self._interrupt()
        self._update_irq()

    def _interrupt(self) -> None:
        """An interrupt point: INTRQ, which the bus master's status also records if driven."""
        self._intrq = True
        if self.bus_master is not None and not self.control & CTL_NIEN and not self._irq_disabled:
            self.bus_master.drive_interrupt()

    def _update_irq(self) -> None:
        self._irq.set_level(self._intrq and not self.control & CTL_NIEN and not self._irq_disabled)

    @property
    def irq_disabled(self) -> bool:
        """Fault knob: the drive stops driving INTRQ (commands still complete)."""
        return self._irq_disabled

    @irq_disabled.setter
    def irq_disabled(self, disabled: bool) -> None:
        self._irq_disabled = disabled
        self._update_irq()

    @property
    def slave_selected(self) -> bool:
        return bool(self.select & SEL_DEV)

    # Addressing
    def _current_sector(self) -> int | None:
        """The sector the task file names, or None if CHS names no sector."""
        if self.select & SEL_LBA:
            return (self.select & SEL_HEAD) << 24 | self.hcyl << 16 | self.lcyl << 8 | self.sector
        cylinder = self.hcyl << 8 | self.lcyl
        head = self.select & SEL_HEAD
        if not 1 <= self.sector <= self.cur_spt or head >= self.cur_heads:
            return None
        return (cylinder * self.cur_heads + head) * self.cur_spt + self.sector - 1

    def _advance(self) -> None:
        """One sector done: next address in the task file, one fewer to go."""
        self.nsector = (self.nsector - 1) & 0xFF
        self._remaining -= 1
        current = self._current_sector()
        if current is None:
            return
        nxt = current + 1
        if self.select & SEL_LBA:
            self.select = self.select & ~SEL_HEAD | (nxt >> 24) & SEL_HEAD
            self.hcyl, self.lcyl, self.sector = nxt >> 16 & 0xFF, nxt >> 8 & 0xFF, nxt & 0xFF
            return
        cylinder, rest = divmod(nxt, self.cur_heads * self.cur_spt)
        head, sector = divmod(rest, self.cur_spt)
        self.select = self.select & ~SEL_HEAD | head
        self.hcyl, self.lcyl, self.sector = cylinder >> 8 & 0xFF, cylinder & 0xFF, sector + 1

    def _in_range(self, lba: int | None) -> bool:
        return lba is not None and lba < min(self.sectors, LBA28_LIMIT + 1)

    # Commands
    def _abort(self, error: int = ER_ABRT) -> None:
        self.error = error
        self._buffer = bytearray()
        self._remaining = 0
        self._enter(Phase.IDLE, STATUS_ABORTED, interrupt=True)

    def _command(self, command: int) -> None:
        self.error = 0
        if command == CMD_IDENTIFY:
            self._remaining = 0
            self._start_data_in(self.identify_data())
        elif command in (CMD_READ_SECTORS, CMD_WRITE_SECTORS):
            self._remaining = self.nsector or 256
            if not self._in_range(self._current_sector()):
                self._abort()
            elif command == CMD_READ_SECTORS:
                self._read_next_sector()
            else:
                self._buffer, self._pos = bytearray(SECTOR_SIZE), 0
                self._enter(Phase.DATA_OUT, STATUS_DATA, interrupt=False)
        elif command in (CMD_READ_DMA, CMD_WRITE_DMA):
            self._start_dma(command == CMD_READ_DMA)
        elif command == CMD_FLUSH_CACHE:
            try:
                os.fsync(self._fd)
            except OSError:
                self._abort()
                return
            self._enter(Phase.IDLE, STATUS_IDLE, interrupt=True)
        elif command == CMD_INIT_DEV_PARAMS:
            self._init_device_parameters()
        elif command == CMD_RECALIBRATE:
            self._enter(Phase.IDLE, STATUS_IDLE, interrupt=True)
        else:
            self._abort()

    def _init_device_parameters(self) -> None:
        heads, spt = (self.select & SEL_HEAD) + 1, self.nsector
        if spt == 0:
            self._abort()
            return
        self.cur_heads, self.cur_spt = heads, spt
        self.cur_cylinders = min(0xFFFF, self.sectors // (heads * spt))
        self._enter(Phase.IDLE, STATUS_IDLE, interrupt=True)

    def _start_data_in(self, data: bytes) -> None:
        self._buffer, self._pos = bytearray(data), 0
        self._enter(Phase.DATA_IN, STATUS_DATA, interrupt=True)

    def _read_next_sector(self) -> None:
        lba = self._current_sector()
        if lba is None or not self._in_range(lba):
            self._abort()
        elif lba in self.bad_sectors:
            self._abort(ER_UNC)
        else:
            self._start_data_in(os.pread(self._fd, SECTOR_SIZE, lba * SECTOR_SIZE))

    def _data_in_done(self) -> None:
        """The host has read the whole buffer."""
        if self._remaining == 0:  # IDENTIFY
            self._enter(Phase.IDLE, STATUS_IDLE, interrupt=False)
            return
        self._advance()
        if self._remaining > 0:
            self._read_next_sector()
        else:
            self._enter(Phase.IDLE, STATUS_IDLE, interrupt=False)

    def _data_out_done(self) -> None:
        """The host has filled the buffer: write the sector (BSY is instantaneous)."""
        lba = self._current_sector()
        if lba is None or not self._in_range(lba):
            self._abort()
            return
        os.pwrite(self._fd, bytes(self._buffer), lba * SECTOR_SIZE)
        self._advance()
        if self._remaining > 0:
            self._buffer, self._pos = bytearray(SECTOR_SIZE), 0
            self._enter(Phase.DATA_OUT, STATUS_DATA, interrupt=True)
        else:
            self._buffer = bytearray()
            self._enter(Phase.IDLE, STATUS_IDLE, interrupt=True)

    # DMA data phase: the bus master's side of the transfer
    def _start_dma(self, to_memory: bool) -> None:
        self._remaining = self.nsector or 256
        if self.bus_master is None or not self._in_range(self._current_sector()):
            self._abort()
            return
        self._dma_to_memory = to_memory
        self._buffer, self._pos = bytearray(), 0
        self._enter(Phase.DMA, STATUS_DATA, interrupt=False)
        self.bus_master.drive_request()

    @property
    def dma_pending(self) -> bool:
        """The drive waits for the bus master (a DMA command has data left to move)."""
        return self.phase is Phase.DMA

    @property
    def dma_to_memory(self) -> bool:
        """The pending command is READ DMA (data flows to memory)."""
        return self._dma_to_memory

    def dma_peek(self, limit: int) -> bytes:
        """READ DMA: up to ``limit`` bytes of the current sector, read from the image when
        it starts; b"" if the command has ended (a bad sector ends it with ERR, UNC)."""
        if self.phase is not Phase.DMA or not self._dma_to_memory:
            return b""
        if self._pos >= len(self._buffer):
            lba = self._current_sector()
            if lba is None or not self._in_range(lba):
                self._abort()
                return b""
            if lba in self.bad_sectors:
                self._abort(ER_UNC)
                return b""
            self._buffer, self._pos = bytearray(os.pread(self._fd, SECTOR_SIZE,
                                                         lba * SECTOR_SIZE)), 0
        return bytes(self._buffer[self._pos:self._pos + limit])

    def dma_take(self, count: int) -> None:
        """READ DMA: ``count`` peeked bytes reached memory; a finished sector advances."""
        self._pos += count
        if self._pos >= len(self._buffer):
            self._dma_sector_done()

    def dma_room(self) -> int:
        """WRITE DMA: bytes the current sector still needs (0 if no WRITE DMA is pending)."""
        if self.phase is not Phase.DMA or self._dma_to_memory:
            return 0
        return SECTOR_SIZE - len(self._buffer)

    def dma_give(self, data: bytes) -> None:
        """WRITE DMA: bytes from memory; a full sector is written to the image."""
        self._buffer += data[:self.dma_room()]
        if len(self._buffer) < SECTOR_SIZE:
            return
        lba = self._current_sector()
        if lba is None or not self._in_range(lba):
            self._abort()
            return
        os.pwrite(self._fd, bytes(self._buffer), lba * SECTOR_SIZE)
        self._dma_sector_done()

    def dma_bus_error(self) -> None:
        """The bus master could not move the data: the command ends with ABRT."""
        if self.phase is Phase.DMA:
            self._abort()

    def _dma_sector_done(self) -> None:
        self._advance()
        self._buffer, self._pos = bytearray(), 0
        if self._remaining == 0:
            self._enter(Phase.IDLE, STATUS_IDLE, interrupt=True)

    def identify_data(self) -> bytes:
        words = [0] * 256
        words[0] = 0x0040  # ATA device, fixed
        words[1], words[3], words[6] = self.cylinders, self.heads, self.spt
        words[10:20] = ata_string(SERIAL, 20)
        words[23:27] = ata_string(FIRMWARE, 8)
        words[27:47] = ata_string(MODEL, 40)
        words[47] = 0x8000  # READ/WRITE MULTIPLE not supported
        words[49] = 0x0300  # LBA, DMA
        words[50] = 0x4000
        words[51] = 0x0200  # PIO timing mode 2
        words[53] = 0x0003  # words 54-58 and 64-70 valid
        words[54], words[55], words[56] = self.cur_cylinders, self.cur_heads, self.cur_spt
        current = self.cur_cylinders * self.cur_heads * self.cur_spt
        words[57], words[58] = current & 0xFFFF, current >> 16
        lba28 = min(self.sectors, LBA28_LIMIT)
        words[60], words[61] = lba28 & 0xFFFF, lba28 >> 16
        words[63] = 0x0407  # multiword DMA modes 0-2 supported, mode 2 selected
        words[64] = 0x0003  # PIO modes 3 and 4
        words[65:69] = [120, 120, 120, 120]  # minimum cycle times, ns
        words[80] = 0x0070  # ATA/ATAPI-4..6
        words[82], words[83], words[84] = 0x4000, 0x5000, 0x4000  # 83: FLUSH CACHE
        words[85], words[86], words[87] = 0x4000, 0x1000, 0x4000
        return struct.pack("<256H", *words)

    # Port access
    def io_read(self, port: int, size: int) -> int:
        if port == ATA_PRIMARY_CONTROL:
            return self._register(REG_STATUS) if size == 1 else self._bad((1 << (8 * size)) - 1)
        offset = port - ATA_PRIMARY_BASE
        if offset == REG_DATA and size in (2, 4):
            return 0 if self.slave_selected else self._read_data(size)
        if size != 1 or not 0 < offset < 8:
            return self._bad((1 << (8 * size)) - 1)
        value = self._register(offset)
        if offset == REG_STATUS:
            self._intrq = False  # QEMU lowers INTRQ whichever drive is selected
            self._update_irq()
        return value

    def _bad(self, value: int) -> int:
        self.bad_accesses += 1
        return value

    def _register(self, offset: int) -> int:
        if self.slave_selected:
            return 0
        return (0, self.error, self.nsector, self.sector, self.lcyl, self.hcyl, self.select,
                ST_BSY if self.phase is Phase.RESET else self.status)[offset]

    def _read_data(self, size: int) -> int:
        if self.phase is not Phase.DATA_IN:
            return 0
        chunk = self._buffer[self._pos:self._pos + size]
        self._pos += size
        if self._pos >= len(self._buffer):
            self._data_in_done()
        return int.from_bytes(chunk.ljust(size, b"\0"), "little")

    def read_words(self, count: int) -> list[int]:
        """``rep insw`` on the data port: ``count`` 16-bit reads through the register path."""
        return [self.io_read(ATA_PRIMARY_BASE + REG_DATA, 2) for _ in range(count)]

    def write_words(self, words: list[int]) -> None:
        """``rep outsw`` on the data port."""
        for word in words:
            self.io_write(ATA_PRIMARY_BASE + REG_DATA, 2, word)

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == ATA_PRIMARY_CONTROL and size == 1:
            self._write_control(value & 0xFF)
            return
        offset = port - ATA_PRIMARY_BASE
        if offset == REG_DATA and size in (2, 4):
            self._write_data(size, value)
            return
        if size != 1 or not 0 < offset < 8:
            self.bad_accesses += 1
            return
        value &= 0xFF
        if offset == REG_COMMAND:
            self._intrq = False
            self._update_irq()
            if self.phase is Phase.IDLE and not self.slave_selected:
                self._command(value)
            return
        if self.phase is not Phase.IDLE:
            return  # BSY or DRQ: the task file is locked
        if offset == REG_FEATURES:
            self.features = value
        elif offset == REG_NSECTOR:
            self.nsector = value
        elif offset == REG_SECTOR:
            self.sector = value
        elif offset == REG_LCYL:
            self.lcyl = value
        elif offset == REG_HCYL:
            self.hcyl = value
        else:
            self.select = value | SEL_OBSOLETE

    def _write_data(self, size: int, value: int) -> None:
        if self.phase is not Phase.DATA_OUT or self.slave_selected:
            return
        chunk = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        room = len(self._buffer) - self._pos
        self._buffer[self._pos:self._pos + min(size, room)] = chunk[:room]
        self._pos += size
        if self._pos >= len(self._buffer):
            self._data_out_done()

    def _write_control(self, value: int) -> None:
        was_reset = bool(self.control & CTL_SRST)
        self.control = value
        if value & CTL_SRST and not was_reset:
            self._buffer, self._remaining = bytearray(), 0
            self._enter(Phase.RESET, ST_BSY, interrupt=False)
        elif was_reset and not value & CTL_SRST:
            self._post_diagnostic()
            self._interrupt()
        self._update_irq()

    def close(self) -> None:
        os.close(self._fd)
