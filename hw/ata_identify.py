"""The ATA drive's IDENTIFY DEVICE block and default geometry (runs in the board process).

Pure functions of the drive's size and geometry, for ``hw.ata.AtaChannel``:
word meanings are the devices sheet's section 2.6 (QEMU's ``ide_identify``);
strings put their first character in the high byte of each word.
"""
from __future__ import annotations

import struct

LBA28_LIMIT = (1 << 28) - 1
MAX_CHS_CYLINDERS = 16383
MAX_HEADS = 16
MAX_SPT = 63
SERIAL = "MK0001"
FIRMWARE = "0.1"
MODEL = "MINIKERN HARDDISK"

Geometry = tuple[int, int, int]  # cylinders, heads, sectors per track


def ata_string(text: str, length: int) -> list[int]:
    """IDENTIFY string words: space padded, first character in the high byte."""
    raw = text.ljust(length)[:length].encode("ascii")
    return [raw[i] << 8 | raw[i + 1] for i in range(0, length, 2)]


def default_geometry(sectors: int) -> Geometry:
    """(cylinders, heads, sectors per track) for a disk of ``sectors`` sectors."""
    best: Geometry | None = None
    for spt in range(MAX_SPT, 0, -1):
        for heads in range(MAX_HEADS, 0, -1):
            cylinders, rest = divmod(sectors, heads * spt)
            if rest == 0 and 1 <= cylinders <= MAX_CHS_CYLINDERS and (
                    best is None or heads * spt > best[1] * best[2]):
                best = (cylinders, heads, spt)
    if best is not None:
        return best
    return max(1, min(MAX_CHS_CYLINDERS, sectors // (MAX_HEADS * MAX_SPT))), MAX_HEADS, MAX_SPT


def identify_block(sectors: int, geometry: Geometry, current: Geometry) -> bytes:
    """The 512 bytes IDENTIFY DEVICE returns for a disk of ``sectors`` sectors with the
    default ``geometry`` and the ``current`` one (INITIALIZE DEVICE PARAMETERS)."""
    words = [0] * 256
    words[0] = 0x0040  # ATA device, fixed
    words[1], words[3], words[6] = geometry[0], geometry[1], geometry[2]
    words[10:20] = ata_string(SERIAL, 20)
    words[23:27] = ata_string(FIRMWARE, 8)
    words[27:47] = ata_string(MODEL, 40)
    words[47] = 0x8000  # READ/WRITE MULTIPLE not supported
    words[49] = 0x0300  # LBA, DMA
    words[50] = 0x4000
    words[51] = 0x0200  # PIO timing mode 2
    words[53] = 0x0003  # words 54-58 and 64-70 valid
    words[54], words[55], words[56] = current
    capacity = current[0] * current[1] * current[2]
    words[57], words[58] = capacity & 0xFFFF, capacity >> 16
    lba28 = min(sectors, LBA28_LIMIT)
    words[60], words[61] = lba28 & 0xFFFF, lba28 >> 16
    words[63] = 0x0407  # multiword DMA modes 0-2 supported, mode 2 selected
    words[64] = 0x0003  # PIO modes 3 and 4
    words[65:69] = [120, 120, 120, 120]  # minimum cycle times, ns
    words[80] = 0x0070  # ATA/ATAPI-4..6
    words[82], words[83], words[84] = 0x4000, 0x5000, 0x4000  # 83: FLUSH CACHE
    words[85], words[86], words[87] = 0x4000, 0x1000, 0x4000
    return struct.pack("<256H", *words)
