"""PCI IDE bus-master DMA (sheet 2.8): the PIIX3 function, PRD tables through the IOMMU,
READ/WRITE DMA, the four end-of-transfer status combinations, errors, and PIO after DMA."""
from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from hw.ata import AtaChannel
from hw.ata_dma import DEFAULT_BM_BASE, PiixIde
from hw.device import NullIrq
from hw.memory import Iommu, PhysicalMemory
from tests.hw.conftest import Ports
from tests.hw.test_ata import (COMMAND, CONTROL, ERROR, HCYL, LCYL, NSECTOR, SECTOR, SELECT,
                               STATUS, image, irq, lba_command, pattern, read_sector)  # noqa: F401

BM = DEFAULT_BM_BASE
BM_CMD, BM_STATUS, BM_PRDT = BM, BM + 2, BM + 4
START, TO_MEMORY = 0x01, 0x08
ACTIVE, ERR, INTR = 0x01, 0x02, 0x04
EOT = 0x8000
READ_DMA, WRITE_DMA = 0xC8, 0xCA
MEMORY = 0x40000  # 256 KiB of physical memory
TABLE = 0x1000  # the PRD table
BUF = 0x2000  # data buffers from here
POISON = 0xEE


class Rig:
    """The drive, the PIIX3 function in front of it, memory and the IOMMU: a driver's view."""

    def __init__(self, line: NullIrq, path: Path) -> None:
        self.irq, self.image = line, path
        self.memory = PhysicalMemory(MEMORY)
        self.memory.write(0, bytes([POISON]) * MEMORY)
        self.audit: list[dict[str, object]] = []
        self.iommu = Iommu(self.memory, audit=self.audit.append)
        self.iommu.grant("ata", 0, MEMORY, write=True)  # tests of refusals revoke it
        self.ata = AtaChannel(line, path)
        self.ide = PiixIde(self.ata, self.iommu.port_for("ata"))
        self.ports, self.bm = Ports(self.ata), Ports(self.ide)
        self.ide.write_config(0x04, 2, 0x0005)  # I/O decoding and bus mastering

    def close(self) -> None:
        self.ata.close()
        self.memory.close()

    def table(self, regions: list[tuple[int, int]], at: int = TABLE) -> None:
        """Write a PRD table of (base, count) regions, EOT on the last, and point +4 at it."""
        entries = b"".join(struct.pack("<IHH", base, count & 0xFFFF,
                                       EOT if n == len(regions) - 1 else 0)
                           for n, (base, count) in enumerate(regions))
        self.memory.write(at, entries)
        self.ide.io_write(BM_PRDT, 4, at)

    def start(self, to_memory: bool) -> None:
        self.bm.outb(BM_STATUS, ERR | INTR)  # clear Error and Interrupt
        self.bm.outb(BM_CMD, TO_MEMORY if to_memory else 0)
        self.bm.outb(BM_CMD, (TO_MEMORY if to_memory else 0) | START)

    def dma(self, command: int, lba: int, count: int, regions: list[tuple[int, int]]) -> int:
        """Sheet 2.8's sequence; the bus-master status once the transfer is over."""
        self.table(regions)
        self.bm.outb(BM_STATUS, ERR | INTR)
        self.bm.outb(BM_CMD, TO_MEMORY if command == READ_DMA else 0)
        lba_command(self.ports, command, lba, count)
        self.bm.outb(BM_CMD, self.bm.inb(BM_CMD) | START)
        return self.bm.inb(BM_STATUS)

    def disk(self, lba: int, count: int) -> bytes:
        with self.image.open("rb") as f:
            f.seek(lba * 512)
            return f.read(count * 512)


@pytest.fixture
def rig(irq: NullIrq, image: Path) -> Iterator[Rig]:  # noqa: F811
    r = Rig(irq, image)
    yield r
    r.close()


def test_pci_identity_and_bar4(rig: Rig) -> None:
    ide = rig.ide
    assert ide.read_config(0x00, 4) == 0x7010 << 16 | 0x8086
    assert ide.read_config(0x08, 4) >> 8 == 0x010180  # mass storage, IDE, bus master
    assert ide.read_config(0x20, 4) == BM | 0x01  # BAR4: 16 bytes of I/O space
    ide.write_config(0x20, 4, 0xFFFFFFFF)
    assert ide.read_config(0x20, 4) == 0xFFFFFFF1
    ide.write_config(0x20, 4, BM)
    assert ide.ports == ((BM, 16),)
    assert rig.bm.inb(BM_STATUS) == 0 and rig.bm.inb(BM_CMD) == 0


def test_read_dma_over_several_regions(rig: Rig) -> None:
    regions = [(BUF, 700), (BUF + 0x1000, 1000), (BUF + 0x3000, 348)]  # 2048: four sectors
    assert rig.dma(READ_DMA, 10, 4, regions) == INTR  # done, the table covered it exactly
    data = rig.disk(10, 4)
    got = b"".join(rig.memory.read(base, n) for base, n in regions)
    assert got == data == b"".join(pattern(lba) for lba in range(10, 14))
    assert rig.memory.read(BUF + 700, 1) == bytes([POISON])  # between the regions: untouched
    assert rig.irq.rises == 1 and rig.irq.level
    assert rig.ports.inb(STATUS) == 0x50 and not rig.irq.level
    assert (rig.ports.inb(SECTOR), rig.ports.inb(NSECTOR)) == (14, 0)
    rig.bm.outb(BM_CMD, TO_MEMORY)  # the driver clears Start
    assert rig.bm.inb(BM_STATUS) == INTR


def test_write_dma_over_several_regions(rig: Rig) -> None:
    payload = bytes((n * 13 + 5) & 0xFF for n in range(3 * 512))
    regions = [(BUF, 512 + 100), (BUF + 0x1000, 412 + 256), (BUF + 0x2000, 256)]
    offset = 0
    for base, n in regions:
        rig.memory.write(base, payload[offset:offset + n])
        offset += n
    assert rig.dma(WRITE_DMA, 200, 3, regions) == INTR
    assert rig.disk(200, 3) == payload
    assert rig.disk(203, 1) == pattern(203)
    assert rig.ports.inb(STATUS) == 0x50 and rig.irq.rises == 1


def test_chs_dma_like_pio(rig: Rig) -> None:
    heads, spt = rig.ata.heads, rig.ata.spt
    lba = (1 * heads + 2) * spt + 4  # cylinder 1, head 2, sector 5
    rig.table([(BUF, 1024)])
    rig.start(to_memory=True)
    for port, value in ((SELECT, 0xA2), (NSECTOR, 2), (SECTOR, 5), (LCYL, 1), (HCYL, 0),
                        (COMMAND, READ_DMA)):
        rig.ports.outb(port, value)
    assert rig.bm.inb(BM_STATUS) == INTR
    assert rig.memory.read(BUF, 1024) == rig.disk(lba, 2)


def test_table_larger_than_the_transfer_stays_active(rig: Rig) -> None:
    assert rig.dma(READ_DMA, 0, 2, [(BUF, 1024), (BUF + 0x1000, 512)]) == INTR | ACTIVE
    assert rig.memory.read(BUF, 1024) == rig.disk(0, 2)
    assert rig.memory.read(BUF + 0x1000, 1) == bytes([POISON])
    assert rig.ports.inb(STATUS) == 0x50
    rig.bm.outb(BM_CMD, TO_MEMORY)  # clearing Start ends Active
    assert rig.bm.inb(BM_STATUS) == INTR


def test_table_smaller_than_the_transfer_leaves_the_drive_waiting(rig: Rig) -> None:
    assert rig.dma(READ_DMA, 0, 3, [(BUF, 512), (BUF + 0x1000, 700)]) == 0  # no Interrupt
    assert rig.memory.read(BUF, 512) + rig.memory.read(BUF + 0x1000, 700) == rig.disk(0, 3)[:1212]
    assert rig.irq.rises == 0
    assert rig.ports.inb(0x3F6) == 0x58  # still DRQ: the drive waits
    rig.ports.outb(COMMAND, 0xEC)  # and ignores commands
    assert rig.ports.inb(0x3F6) == 0x58
    rig.ports.outb(CONTROL, 0x04)  # the driver's timeout path: SRST
    rig.ports.outb(CONTROL, 0x00)
    assert rig.ports.inb(STATUS) == 0x50 and rig.ports.inb(ERROR) == 0x01


def test_still_running_until_the_command_comes(rig: Rig) -> None:
    rig.table([(BUF, 512)])
    rig.start(to_memory=True)
    assert rig.bm.inb(BM_STATUS) == ACTIVE  # Interrupt 0, Active 1: running
    lba_command(rig.ports, READ_DMA, 7, 1)  # Start already set: the transfer runs now
    assert rig.bm.inb(BM_STATUS) == INTR
    assert rig.memory.read(BUF, 512) == pattern(7)


def test_prd_count_zero_means_64k(rig: Rig) -> None:
    assert rig.dma(READ_DMA, 300, 128, [(0x10000, 0)]) == INTR
    assert rig.memory.read(0x10000, 0x10000) == rig.disk(300, 128)
    assert rig.memory.read(0x20000, 1) == bytes([POISON])


def test_no_transfer_while_bus_mastering_is_off(rig: Rig) -> None:
    rig.ide.write_config(0x04, 2, 0x0001)  # I/O only
    assert rig.dma(READ_DMA, 0, 1, [(BUF, 512)]) == ACTIVE  # Start set, nothing moves
    assert rig.memory.read(BUF, 512) == bytes([POISON]) * 512
    assert rig.ports.inb(0x3F6) == 0x58 and rig.irq.rises == 0
    rig.ide.write_config(0x04, 2, 0x0005)  # bus mastering on: the waiting transfer goes
    assert rig.bm.inb(BM_STATUS) == INTR
    assert rig.memory.read(BUF, 512) == pattern(0)


def test_iommu_refusal_is_a_bus_error(rig: Rig) -> None:
    rig.iommu.revoke("ata")
    rig.iommu.grant("ata", TABLE, 16, write=False)
    rig.iommu.grant("ata", BUF, 512, write=True)  # a first region of two is granted
    regions = [(BUF, 512), (BUF + 0x1000, 512)]
    assert rig.dma(READ_DMA, 0, 2, regions) == ERR | INTR  # Error, Active clear
    assert rig.memory.read(BUF, 512) == pattern(0)
    assert rig.memory.read(BUF + 0x1000, 512) == bytes([POISON]) * 512  # never written
    assert rig.ports.inb(STATUS) == 0x41 and rig.ports.inb(ERROR) == 0x04  # ERR, ABRT
    assert rig.irq.rises == 1
    assert rig.iommu.refusals == 1
    assert rig.audit == [{"device": "ata", "address": BUF + 0x1000, "length": 512,
                          "op": "write"}]
    assert rig.ide.read_config(0x06, 2) & 0x2000  # PCI status: received master abort
    rig.bm.outb(BM_STATUS, ERR)  # write 1 clears Error
    assert rig.bm.inb(BM_STATUS) == INTR


def test_refused_memory_is_not_written_to_the_disk(rig: Rig) -> None:
    rig.iommu.revoke("ata")
    rig.iommu.grant("ata", TABLE, 8, write=False)  # the table only: no data region
    rig.memory.write(BUF, bytes(512))
    assert rig.dma(WRITE_DMA, 50, 1, [(BUF, 512)]) == ERR | INTR
    assert rig.disk(50, 1) == pattern(50)
    assert rig.audit[0]["op"] == "read"


def test_refused_prd_table(rig: Rig) -> None:
    rig.iommu.revoke("ata")
    rig.iommu.grant("ata", BUF, 512, write=True)  # the data, but not the table
    assert rig.dma(READ_DMA, 0, 1, [(BUF, 512)]) == ERR | INTR
    assert rig.audit[0]["address"] == TABLE
    assert rig.memory.read(BUF, 512) == bytes([POISON]) * 512


def test_region_crossing_64k_or_wrong_direction_is_a_bus_error(rig: Rig) -> None:
    assert rig.dma(READ_DMA, 0, 1, [(0xFF00, 512)]) == ERR | INTR
    assert rig.memory.read(0xFF00, 512) == bytes([POISON]) * 512
    assert rig.ports.inb(STATUS) == 0x41
    rig.table([(BUF, 512)])
    rig.start(to_memory=False)  # a disk READ needs the bus master to write memory
    lba_command(rig.ports, READ_DMA, 0, 1)
    assert rig.bm.inb(BM_STATUS) == ERR | INTR
    assert rig.memory.read(BUF, 512) == bytes([POISON]) * 512
    assert rig.iommu.refusals == 0  # bad programming, not the IOMMU


def test_bad_sector(rig: Rig) -> None:
    rig.ata.bad_sectors = {22}
    assert rig.dma(READ_DMA, 20, 4, [(BUF, 2048)]) == INTR  # Error stays clear, Active ends
    assert rig.memory.read(BUF, 1024) == rig.disk(20, 2)  # the sectors before it arrived
    assert rig.memory.read(BUF + 1024, 1024) == bytes([POISON]) * 1024
    assert rig.ports.inb(STATUS) == 0x41 and rig.ports.inb(ERROR) == 0x40  # ERR, UNC
    assert (rig.ports.inb(SECTOR), rig.ports.inb(NSECTOR)) == (22, 2)  # names the bad one
    assert rig.irq.rises == 1


def test_status_bits(rig: Rig) -> None:
    assert rig.dma(READ_DMA, 0, 1, [(BUF, 512)]) == INTR
    rig.bm.outb(BM_STATUS, 0xFF & ~INTR)  # W1C Error (clear already), drive DMA bits set
    assert rig.bm.inb(BM_STATUS) == INTR | 0x60  # simplex 0, Interrupt not written: kept
    rig.bm.outb(BM_STATUS, INTR | ACTIVE | 0x20)  # Active is read only
    assert rig.bm.inb(BM_STATUS) == 0x20
    rig.bm.outb(BM_CMD, 0xFF)  # Start was still set: no new start
    assert rig.bm.inb(BM_STATUS) == 0x20
    rig.bm.outb(BM_CMD, 0)
    rig.bm.outb(BM_CMD, 0xFF)  # only Start and direction exist
    assert rig.bm.inb(BM_CMD) == START | TO_MEMORY
    assert rig.bm.inb(BM_STATUS) == 0x20 | ACTIVE
    rig.ide.io_write(BM_PRDT, 4, 0x12345677)
    assert rig.ide.io_read(BM_PRDT, 4) == 0x12345674  # dword aligned
    assert rig.ide.io_read(BM + 8 + 2, 1) == 0  # the secondary channel: nothing attached


def test_pio_still_works_after_dma(rig: Rig) -> None:
    assert rig.dma(WRITE_DMA, 40, 1, [(BUF, 512)]) == INTR
    rig.bm.outb(BM_CMD, 0)
    rig.ports.inb(STATUS)
    lba_command(rig.ports, 0x20, 40, 2)
    assert rig.ports.inb(STATUS) == 0x58
    assert read_sector(rig.ports) == bytes([POISON]) * 512
    assert read_sector(rig.ports) == pattern(41)
    assert rig.ports.inb(STATUS) == 0x50
    assert rig.irq.rises == 3  # the DMA's, then one per PIO sector
