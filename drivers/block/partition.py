"""Minor devices of a block driver: the whole disk and its MBR primary partitions.

Runs in the block driver's process (drivers/block/framework.py calls it).
Minor 0 is the whole disk; minors 1 to 4 are the four primary entries of the
master boot record in sector 0 (MINIX's partition()).  A sector without the
0x55AA signature has no table: only minor 0, and nothing to report (a file
system made on the whole disk looks like that).  A table with the signature
is taken only if every used entry (type byte not 0) has a size above 0 and
lies inside the disk; otherwise the whole table is refused (only minor 0)
and ``parse`` says why, for the framework to log once.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from minikern.const import SECTOR_SIZE

MBR_SIGNATURE = b"\x55\xaa"
MBR_SIGNATURE_AT = 510
MBR_TABLE_AT = 446  # four 16-byte entries
MBR_ENTRY = struct.Struct("<B3sB3sII")  # status, CHS first, type, CHS last, LBA start, sectors
NR_PARTITIONS = 4
NR_MINORS = 1 + NR_PARTITIONS


class Minor(NamedTuple):
    base: int  # first sector on the disk
    size: int  # sectors


def parse(sector0: bytes, disk_sectors: int) -> tuple[dict[int, Minor], str | None]:
    """The minors sector 0 defines, and why a table was refused (None: nothing wrong)."""
    whole = {0: Minor(0, disk_sectors)}
    if len(sector0) < SECTOR_SIZE or sector0[MBR_SIGNATURE_AT:SECTOR_SIZE] != MBR_SIGNATURE:
        return whole, None
    minors = dict(whole)
    for i in range(NR_PARTITIONS):
        _, _, ptype, _, start, size = MBR_ENTRY.unpack_from(sector0, MBR_TABLE_AT + 16 * i)
        if ptype == 0:
            continue
        if size == 0 or start == 0 or start + size > disk_sectors:
            return whole, (f"partition {i + 1} (type {ptype:#04x}, start {start}, {size} sectors) "
                           f"does not fit a disk of {disk_sectors} sectors")
        minors[i + 1] = Minor(start, size)
    return minors, None


def mbr(entries: list[tuple[int, int, int]]) -> bytes:
    """Sector 0 holding a partition table of (type, start, sectors) entries (tests, tools)."""
    sector = bytearray(SECTOR_SIZE)
    for i, (ptype, start, size) in enumerate(entries[:NR_PARTITIONS]):
        MBR_ENTRY.pack_into(sector, MBR_TABLE_AT + 16 * i, 0, b"\xfe\xff\xff", ptype,
                            b"\xfe\xff\xff", start, size)
    sector[MBR_SIGNATURE_AT:SECTOR_SIZE] = MBR_SIGNATURE
    return bytes(sector)
