"""The MINIX v3 on-disk format as util-linux ``mkfs.minix -3`` writes it (shared/spec/devices.md 6).

Pure data: the superblock and its validation, the 64-byte inode, the 64-byte
directory entry, and the error every layer of MFS raises (``FsError``).
Nothing here does I/O.  Zone numbers are absolute block numbers (the log
zone size is 0); block b is at byte b * 1024.

Layout, in blocks: 0 boot, 1 superblock, then the inode map, the zone map,
the inode table (16 inodes a block), and the data zones from
``firstdatazone`` to ``zones - 1``.
"""
from __future__ import annotations

import stat
import struct
from dataclasses import dataclass

from minikern.const import NAME_MAX, Err

BLOCK = 1024  # the only block (and zone) size fsck.minix accepts
MAGIC_V3 = 0x4D5A
MAX_SIZE = 0x7FFFFFFF  # s_max_size as mkfs.minix -3 writes it
SUPER_BLOCK = 1  # the superblock is block 1 (byte 1024)
ROOT_INO = 1
INODE_SIZE = 64
INODES_PER_BLOCK = BLOCK // INODE_SIZE
DIRENT_SIZE = 64  # u32 inode number + a 60-byte name
DIRENTS_PER_BLOCK = BLOCK // DIRENT_SIZE
BITS_PER_BLOCK = BLOCK * 8
NR_DZONES = 7  # direct zones in an inode
NR_TZONES = 10  # direct, single, double, triple indirect
PER_INDIRECT = BLOCK // 4  # zone numbers in an indirect block
LINK_MAX = 32767  # MINIX's LINK_MAX (SHRT_MAX)
SYMLINK_MAX = BLOCK  # a symlink's target fits in one zone, as Linux's minix driver keeps it

# The first file block each level of the zone tree maps.
SINGLE_START = NR_DZONES
DOUBLE_START = SINGLE_START + PER_INDIRECT
TRIPLE_START = DOUBLE_START + PER_INDIRECT ** 2
MAX_FILE_BLOCKS = TRIPLE_START + PER_INDIRECT ** 3

_SUPER = struct.Struct("<IHHHHHHIIHHHB")
_INODE = struct.Struct("<HHHHIIII10I")
_DIRENT_INO = struct.Struct("<I")

FILE_TYPES = frozenset({stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK,
                        stat.S_IFIFO, stat.S_IFSOCK})


class FsError(Exception):
    """A refusal with MINIX's error code; ``str(e)`` is the one-line reason."""

    def __init__(self, code: Err, message: str = "") -> None:
        super().__init__(message or code.name)
        self.code = code


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Superblock:
    ninodes: int
    imap_blocks: int
    zmap_blocks: int
    firstdatazone: int
    log_zone_size: int
    max_size: int
    zones: int
    magic: int
    blocksize: int
    disk_version: int = 0

    @classmethod
    def unpack(cls, block: bytes | bytearray) -> Superblock:
        (ninodes, _pad0, imap, zmap, first, log_zone, _pad1, max_size, zones, magic, _pad2,
         blocksize, version) = _SUPER.unpack_from(block, 0)
        return cls(ninodes, imap, zmap, first, log_zone, max_size, zones, magic, blocksize,
                   version)

    def pack(self) -> bytes:
        raw = _SUPER.pack(self.ninodes, 0, self.imap_blocks, self.zmap_blocks,
                          self.firstdatazone, self.log_zone_size, 0, self.max_size, self.zones,
                          self.magic, 0, self.blocksize, self.disk_version)
        return raw + bytes(BLOCK - len(raw))

    @property
    def imap_start(self) -> int:
        return SUPER_BLOCK + 1

    @property
    def zmap_start(self) -> int:
        return self.imap_start + self.imap_blocks

    @property
    def itable_start(self) -> int:
        return self.zmap_start + self.zmap_blocks

    @property
    def inode_blocks(self) -> int:
        return ceil_div(self.ninodes, INODES_PER_BLOCK)

    def expected_firstdatazone(self) -> int:
        return self.itable_start + self.inode_blocks

    def data_zones(self) -> int:
        """Zones the zone map describes (bits 1 ..)."""
        return self.zones - self.firstdatazone

    def refusal(self, device_size: int) -> str | None:
        """Why this superblock cannot be mounted on a device of ``device_size`` bytes, or None."""
        if self.magic != MAGIC_V3:
            return f"bad magic {self.magic:#06x} (a MINIX v3 file system has {MAGIC_V3:#06x})"
        if self.blocksize != BLOCK:
            return f"block size {self.blocksize} (only {BLOCK} is supported)"
        if self.log_zone_size != 0:
            return f"log zone size {self.log_zone_size} (only 0 is supported)"
        if self.ninodes < 1 or self.imap_blocks < 1 or self.zmap_blocks < 1:
            return (f"empty geometry: {self.ninodes} inodes, {self.imap_blocks} inode map and "
                    f"{self.zmap_blocks} zone map blocks")
        if self.imap_blocks * BITS_PER_BLOCK < self.ninodes + 1:
            return f"{self.imap_blocks} inode map blocks cannot hold {self.ninodes} inodes"
        if self.firstdatazone != self.expected_firstdatazone():
            return (f"firstdatazone {self.firstdatazone}, the geometry gives "
                    f"{self.expected_firstdatazone()}")
        if self.zones <= self.firstdatazone:
            return f"{self.zones} zones leave no data zone after block {self.firstdatazone}"
        if self.zmap_blocks * BITS_PER_BLOCK < self.data_zones() + 1:
            return f"{self.zmap_blocks} zone map blocks cannot hold {self.data_zones()} zones"
        if self.zones * BLOCK > device_size:
            return f"{self.zones} zones do not fit the device's {device_size} bytes"
        return None


@dataclass
class DiskInode:
    """An inode's 64 bytes, unpacked."""

    mode: int = 0
    nlinks: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    atime: int = 0
    mtime: int = 0
    ctime: int = 0
    zones: list[int] | None = None

    @classmethod
    def unpack(cls, buf: bytes | bytearray | memoryview, offset: int) -> DiskInode:
        f = _INODE.unpack_from(buf, offset)
        return cls(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], list(f[8:18]))

    def pack_into(self, buf: bytearray, offset: int) -> None:
        zones = self.zones or [0] * NR_TZONES
        _INODE.pack_into(buf, offset, self.mode, self.nlinks, self.uid & 0xFFFF,
                         self.gid & 0xFFFF, self.size, self.atime & 0xFFFFFFFF,
                         self.mtime & 0xFFFFFFFF, self.ctime & 0xFFFFFFFF, *zones)


def valid_mode(mode: int) -> bool:
    return stat.S_IFMT(mode) in FILE_TYPES


def dirent_ino(buf: bytes | bytearray, slot: int) -> int:
    ino: int = _DIRENT_INO.unpack_from(buf, slot * DIRENT_SIZE)[0]
    return ino


def dirent_name(buf: bytes | bytearray, slot: int) -> bytes:
    start = slot * DIRENT_SIZE + 4
    raw = bytes(buf[start:start + NAME_MAX])
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


def pack_dirent(buf: bytearray, slot: int, ino: int, name: bytes) -> None:
    start = slot * DIRENT_SIZE
    _DIRENT_INO.pack_into(buf, start, ino)
    buf[start + 4:start + DIRENT_SIZE] = name.ljust(NAME_MAX, b"\0")
