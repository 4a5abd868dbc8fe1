"""ATA PIO disk: IDENTIFY, READ/WRITE protocol and IRQ points, CHS, SRST, faults."""
from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from minikern import hosttools

from hw.ata import AtaChannel, default_geometry
from hw.device import NullIrq
from tests.hw.conftest import Ports

DATA, ERROR, NSECTOR, SECTOR, LCYL, HCYL, SELECT, STATUS = range(0x1F0, 0x1F8)
FEATURES, COMMAND, CONTROL = ERROR, STATUS, 0x3F6
DISK_SECTORS = 2048  # 1 MiB
_RAMP = bytes(range(256)) * 3


def pattern(lba: int) -> bytes:
    """Distinct, recognisable content for each sector."""
    start = (lba * 7) & 0xFF
    return lba.to_bytes(4, "little") + (_RAMP[start:start + 256] * 2)[4:]


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(b"".join(pattern(lba) for lba in range(DISK_SECTORS)))
    return path


@pytest.fixture
def irq() -> NullIrq:
    return NullIrq()


@pytest.fixture
def ata(irq: NullIrq, image: Path) -> Iterator[AtaChannel]:
    disk = AtaChannel(irq, image)
    yield disk
    disk.close()


@pytest.fixture
def ports(ata: AtaChannel) -> Ports:
    return Ports(ata)


def lba_command(ports: Ports, command: int, lba: int, count: int) -> None:
    ports.outb(SELECT, 0xE0 | (lba >> 24) & 0x0F)
    ports.outb(NSECTOR, count)
    ports.outb(SECTOR, lba & 0xFF)
    ports.outb(LCYL, (lba >> 8) & 0xFF)
    ports.outb(HCYL, (lba >> 16) & 0xFF)
    ports.outb(COMMAND, command)


def read_sector(ports: Ports) -> bytes:
    return struct.pack("<256H", *(ports.inw(DATA) for _ in range(256)))


def write_sector(ports: Ports, data: bytes) -> None:
    for (word,) in struct.iter_unpack("<H", data):
        ports.outw(DATA, word)


def identify(ports: Ports) -> list[int]:
    ports.outb(SELECT, 0xA0)
    ports.outb(COMMAND, 0xEC)
    assert ports.inb(STATUS) == 0x58
    return list(struct.unpack("<256H", read_sector(ports)))


def ata_text(words: list[int]) -> str:
    return "".join(chr(w >> 8) + chr(w & 0xFF) for w in words).rstrip()


def test_power_on_signature(ports: Ports) -> None:
    assert [ports.inb(p) for p in (ERROR, NSECTOR, SECTOR, LCYL, HCYL, STATUS)] == [
        0x01, 0x01, 0x01, 0x00, 0x00, 0x50]


def test_identify_capacity_geometry_and_strings(ata: AtaChannel, irq: NullIrq,
                                                ports: Ports) -> None:
    words = identify(ports)
    assert irq.rises == 1
    assert ports.inb(STATUS) == 0x50  # DRQ clears after the last word, no new IRQ
    assert irq.rises == 1
    assert words[0] & 0x8000 == 0
    assert words[60] | words[61] << 16 == DISK_SECTORS
    cylinders, heads, spt = words[1], words[3], words[6]
    assert cylinders * heads * spt == DISK_SECTORS
    assert 1 <= heads <= 16 and 1 <= spt <= 63
    assert words[54:57] == [cylinders, heads, spt]
    assert words[57] | words[58] << 16 == DISK_SECTORS
    assert words[49] & 0x0300 == 0x0300  # LBA, DMA
    assert words[63] == 0x0407  # multiword DMA 0-2 supported, mode 2 selected
    assert words[83] & 0xC000 == 0x4000 and words[83] & 0x1000  # valid, FLUSH CACHE
    assert not words[83] & 0x0400  # no LBA48
    assert ata_text(words[27:47]) == "MINIKERN HARDDISK"
    assert ata_text(words[10:20]) and ata_text(words[23:27])
    assert words[53] & 0x0001


@pytest.mark.parametrize("sectors", [8192, 2048, 1009, 20_000_000])
def test_default_geometry_never_exceeds_capacity(sectors: int) -> None:
    cylinders, heads, spt = default_geometry(sectors)
    assert cylinders * heads * spt <= sectors
    assert cylinders <= 16383 and heads <= 16 and spt <= 63


def test_write_then_read_with_exact_irq_points(ata: AtaChannel, irq: NullIrq,
                                               ports: Ports, image: Path) -> None:
    blocks = [bytes([n]) * 512 for n in (0xA1, 0xB2, 0xC3)]
    lba_command(ports, 0x30, 100, 3)
    assert ports.inb(0x3F6) == 0x58  # DRQ at once
    assert irq.rises == 0  # no IRQ for the first block
    for n, block in enumerate(blocks):
        write_sector(ports, block)
        assert irq.rises == n + 1 and irq.level
        assert ports.inb(0x3F6) == (0x58 if n < 2 else 0x50)
        assert irq.level  # alternate status does not acknowledge
        ports.inb(STATUS)
        assert not irq.level
    with image.open("rb") as disk:
        disk.seek(100 * 512)
        assert disk.read(3 * 512) == b"".join(blocks)
    lba_command(ports, 0x20, 100, 3)
    for n, block in enumerate(blocks):
        assert irq.rises == 4 + n
        assert ports.inb(STATUS) == 0x58
        assert read_sector(ports) == block
    assert ports.inb(STATUS) == 0x50
    assert irq.rises == 6  # no IRQ after the last sector's data
    assert (ports.inb(SECTOR), ports.inb(LCYL), ports.inb(NSECTOR)) == (103, 0, 0)


def test_count_zero_reads_256_sectors(ata: AtaChannel, irq: NullIrq, ports: Ports) -> None:
    lba_command(ports, 0x20, 1000, 0)
    for lba in range(1000, 1256):
        assert ports.inb(STATUS) == 0x58
        assert ata.read_words(256) == list(struct.unpack("<256H", pattern(lba)))
    assert ports.inb(STATUS) == 0x50
    assert irq.rises == 256
    assert ports.inb(SECTOR) | ports.inb(LCYL) << 8 == 1256


def test_32bit_data_reads(ports: Ports) -> None:
    lba_command(ports, 0x20, 7, 1)
    ports.inb(STATUS)
    data = b"".join(ports.inl(DATA).to_bytes(4, "little") for _ in range(128))
    assert data == pattern(7)
    assert ports.inb(STATUS) == 0x50


def test_chs_addressing_and_advance_across_a_track(ata: AtaChannel, ports: Ports) -> None:
    heads, spt = ata.heads, ata.spt
    cylinder, head, sector = 2, heads - 1, spt  # last sector of a cylinder
    lba = (cylinder * heads + head) * spt + sector - 1
    ports.outb(SELECT, 0xA0 | head)
    ports.outb(NSECTOR, 2)
    ports.outb(SECTOR, sector)
    ports.outb(LCYL, cylinder)
    ports.outb(HCYL, 0)
    ports.outb(COMMAND, 0x20)
    ports.inb(STATUS)
    assert read_sector(ports) == pattern(lba)
    ports.inb(STATUS)
    assert read_sector(ports) == pattern(lba + 1)
    assert (ports.inb(LCYL), ports.inb(SELECT) & 0x0F, ports.inb(SECTOR)) == (3, 0, 2)


def test_chs_sector_zero_aborts(ports: Ports) -> None:
    ports.outb(SELECT, 0xA0)
    ports.outb(SECTOR, 0)
    ports.outb(COMMAND, 0x20)
    assert (ports.inb(STATUS), ports.inb(ERROR)) == (0x41, 0x04)


def test_out_of_range_read_aborts(ports: Ports) -> None:
    lba_command(ports, 0x20, DISK_SECTORS, 1)
    assert (ports.inb(STATUS), ports.inb(ERROR)) == (0x41, 0x04)


def test_unknown_command_aborts_with_irq(irq: NullIrq, ports: Ports) -> None:
    ports.outb(SELECT, 0xA0)
    ports.outb(COMMAND, 0xC8)  # READ DMA: not supported
    assert irq.rises == 1
    assert (ports.inb(STATUS), ports.inb(ERROR)) == (0x41, 0x04)
    ports.outb(COMMAND, 0xE7)  # the next command clears ERR
    assert (ports.inb(STATUS), ports.inb(ERROR)) == (0x50, 0x00)


@pytest.mark.parametrize("command", [0x91, 0x10])
def test_specify_and_recalibrate_succeed(irq: NullIrq, ports: Ports, command: int) -> None:
    ports.outb(SELECT, 0xA0 | 15)
    ports.outb(NSECTOR, 32)
    ports.outb(COMMAND, command)
    assert irq.rises == 1
    assert ports.inb(STATUS) == 0x50


def test_specify_changes_chs_translation(ata: AtaChannel, ports: Ports) -> None:
    ports.outb(SELECT, 0xA0 | 3)  # 4 heads
    ports.outb(NSECTOR, 16)  # 16 sectors per track
    ports.outb(COMMAND, 0x91)
    assert identify(ports)[54:57] == [DISK_SECTORS // 64, 4, 16]
    ports.outb(SELECT, 0xA0 | 1)
    ports.outb(NSECTOR, 1)
    ports.outb(SECTOR, 5)
    ports.outb(LCYL, 1)
    ports.outb(COMMAND, 0x20)
    ports.inb(STATUS)
    assert read_sector(ports) == pattern((1 * 4 + 1) * 16 + 4)


def test_task_file_locked_while_drq(ports: Ports) -> None:
    lba_command(ports, 0x20, 5, 1)
    ports.outb(SECTOR, 99)
    ports.outb(COMMAND, 0xEC)  # ignored: DRQ is set
    assert ports.inb(SECTOR) == 5
    assert read_sector(ports) == pattern(5)


def test_srst_holds_bsy_then_posts_signature(irq: NullIrq, ports: Ports) -> None:
    lba_command(ports, 0x20, 5, 4)
    ports.inb(STATUS)
    ports.outb(CONTROL, 0x04)
    assert ports.inb(0x3F6) & 0x80 and ports.inb(STATUS) & 0x80
    rises = irq.rises
    ports.outb(CONTROL, 0x00)
    assert irq.rises == rises + 1
    assert [ports.inb(p) for p in (NSECTOR, SECTOR, LCYL, HCYL, ERROR, STATUS)] == [
        1, 1, 0, 0, 0x01, 0x50]
    assert ports.inb(SELECT) == 0xA0
    assert ports.inw(DATA) == 0  # the aborted transfer is gone


def test_nien_suppresses_the_irq(irq: NullIrq, ports: Ports) -> None:
    ports.outb(CONTROL, 0x02)
    words = identify(ports)
    assert words[60] | words[61] << 16 == DISK_SECTORS
    lba_command(ports, 0x30, 1, 1)
    write_sector(ports, bytes(512))
    assert ports.inb(STATUS) == 0x50
    assert irq.rises == 0


def test_irq_disabled_knob(ata: AtaChannel, irq: NullIrq, ports: Ports) -> None:
    ata.irq_disabled = True
    lba_command(ports, 0x20, 0, 1)
    assert irq.rises == 0
    assert ports.inb(STATUS) == 0x58  # the command still runs; only INTRQ is dead


def test_bad_sector_read_fails_with_unc(ata: AtaChannel, irq: NullIrq, ports: Ports) -> None:
    ata.bad_sectors = {41}
    lba_command(ports, 0x20, 40, 3)
    ports.inb(STATUS)
    assert read_sector(ports) == pattern(40)
    assert irq.rises == 2
    assert (ports.inb(STATUS), ports.inb(ERROR)) == (0x41, 0x40)
    assert ports.inb(SECTOR) == 41  # the task file names the failing sector
    assert ports.inw(DATA) == 0


def test_flush_cache_fsyncs(ata: AtaChannel, irq: NullIrq, ports: Ports,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    lba_command(ports, 0x30, 3, 1)
    write_sector(ports, b"\x5a" * 512)
    assert not synced
    ports.outb(COMMAND, 0xE7)
    assert synced
    assert irq.rises == 2
    assert ports.inb(STATUS) == 0x50


def test_absent_slave_reads_zero(ata: AtaChannel, irq: NullIrq, ports: Ports) -> None:
    ports.outb(SELECT, 0xB0)
    assert [ports.inb(p) for p in (ERROR, NSECTOR, SECTOR, SELECT, STATUS, 0x3F6)] == [0] * 6
    ports.outb(COMMAND, 0xEC)
    assert irq.rises == 0
    ports.outb(SELECT, 0xA0)
    assert ports.inb(STATUS) == 0x50


# A disk nobody here wrote: util-linux's mkfs.minix, checked by its fsck.minix.

MKFS_MINIX = hosttools.find("mkfs.minix")
FSCK_MINIX = hosttools.find("fsck.minix")
MINIX_BLOCK = 1024


@pytest.fixture
def minix_image(tmp_path: Path) -> Path:
    if MKFS_MINIX is None:
        pytest.skip("mkfs.minix not installed (util-linux; `make test` installs it as root)")
    path = tmp_path / "minix.img"
    with path.open("wb") as disk:
        disk.truncate(1024 * MINIX_BLOCK)
    subprocess.run([MKFS_MINIX, "-3", str(path)], check=True, capture_output=True, timeout=30)
    return path


def fsck(image: Path) -> subprocess.CompletedProcess[bytes]:
    if FSCK_MINIX is None:
        pytest.skip("fsck.minix not installed (util-linux)")
    # Check only: -a / -r would "repair" a v3 image at the wrong offset (spec 6.8).
    return subprocess.run([FSCK_MINIX, "-f", str(image)], check=False, capture_output=True,
                          timeout=30)


def read_all_sectors(ports: Ports, sectors: int) -> bytes:
    chunks = []
    for start in range(0, sectors, 256):
        lba_command(ports, 0x20, start, 0)
        for _ in range(min(256, sectors - start)):
            assert ports.inb(STATUS) == 0x58
            chunks.append(b"".join(ports.inl(DATA).to_bytes(4, "little") for _ in range(128)))
        assert ports.inb(STATUS) == 0x50
    return b"".join(chunks)


def write_and_flush(ports: Ports, lba: int, data: bytes) -> None:
    count = len(data) // 512
    lba_command(ports, 0x30, lba, count)
    for n in range(count):
        assert ports.inb(0x3F6) == 0x58
        write_sector(ports, data[n * 512:(n + 1) * 512])
        ports.inb(STATUS)
    ports.outb(COMMAND, 0xE7)
    assert ports.inb(STATUS) == 0x50


def unused_last_block(image: bytes) -> int:
    """The file system's last block, after checking the zone map says it is free."""
    ninodes, imap_blocks, zmap_blocks, first_data = struct.unpack_from("<I2xHHH", image, 1024)
    zones, magic = struct.unpack_from("<IH", image, 1024 + 20)
    assert magic == 0x4D5A and zmap_blocks >= 1 and ninodes > 0
    block: int = zones - 1
    bit = block - first_data + 1
    zmap = (2 + imap_blocks) * MINIX_BLOCK
    assert not image[zmap + bit // 8] & (1 << (bit % 8))
    return block


def test_mkfs_minix_image_reads_back_byte_for_byte(irq: NullIrq, minix_image: Path) -> None:
    disk = AtaChannel(irq, minix_image)
    try:
        data = read_all_sectors(Ports(disk), disk.sectors)
    finally:
        disk.close()
    assert data == minix_image.read_bytes()
    assert irq.rises == disk.sectors


def test_writes_keep_the_minix_image_valid(irq: NullIrq, minix_image: Path) -> None:
    assert fsck(minix_image).returncode == 0
    original = minix_image.read_bytes()
    block = unused_last_block(original)
    disk = AtaChannel(irq, minix_image)
    ports = Ports(disk)
    try:
        write_and_flush(ports, 2, original[1024:1536])  # the superblock, unchanged
        scribble = os.urandom(MINIX_BLOCK)
        write_and_flush(ports, block * 2, scribble)  # a free data block
    finally:
        disk.close()
    after = minix_image.read_bytes()
    assert after[block * MINIX_BLOCK:] == scribble
    assert after[:block * MINIX_BLOCK] == original[:block * MINIX_BLOCK]
    result = fsck(minix_image)
    assert result.returncode == 0, result.stdout + result.stderr


def test_fsck_notices_a_broken_superblock_written_through_the_disk(irq: NullIrq,
                                                                    minix_image: Path) -> None:
    superblock = bytearray(minix_image.read_bytes()[1024:1536])
    superblock[24:26] = b"\0\0"  # s_magic
    disk = AtaChannel(irq, minix_image)
    try:
        write_and_flush(Ports(disk), 2, bytes(superblock))
    finally:
        disk.close()
    assert fsck(minix_image).returncode != 0
