"""The inode table and MFS's inode cache with reference counts (MINIX get_inode/put_inode).

An ``Inode`` is the in-memory copy of a 64-byte disk inode plus ``refs``,
the references VFS holds (GETNODE adds one, PUTNODE drops some).  Every
change is written through to the inode table's buffer at once (``store``),
so the copy may be dropped whenever no one references it; the cache keeps at
most ``limit`` unreferenced inodes.

An inode read from the disk is checked before use: its number is in range,
its bit in the inode map is set, and its mode names a file type; otherwise
the object is corrupt and the caller gets EIO (logged once by the file
system).  An inode whose link count reaches zero while VFS still references
it stays allocated until the last PUTNODE (``orphans``).
"""
from __future__ import annotations

import stat
import time
from collections import OrderedDict
from collections.abc import Callable

from services.mfs.bitmap import Bitmap
from services.mfs.cache import BufferCache, Kind
from services.mfs.layout import (INODE_SIZE, INODES_PER_BLOCK, NR_TZONES, DiskInode, FsError,
                                 Superblock, valid_mode)


class Inode:
    __slots__ = ("ino", "mode", "nlinks", "uid", "gid", "size", "atime", "mtime", "ctime",
                 "zones", "refs", "nzones")

    def __init__(self, ino: int, d: DiskInode) -> None:
        self.ino = ino
        self.mode, self.nlinks, self.uid, self.gid = d.mode, d.nlinks, d.uid, d.gid
        self.size, self.atime, self.mtime, self.ctime = d.size, d.atime, d.mtime, d.ctime
        self.zones: list[int] = list(d.zones or [0] * NR_TZONES)
        self.refs = 0
        self.nzones = -1  # zones in use (data and indirect), -1 until counted

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    def disk(self) -> DiskInode:
        return DiskInode(self.mode, self.nlinks, self.uid, self.gid, self.size,
                         int(self.atime), int(self.mtime), int(self.ctime), self.zones)

    def touch(self, *, a: bool = False, m: bool = False, c: bool = False) -> None:
        now = int(time.time())
        if a:
            self.atime = now
        if m:
            self.mtime = now
        if c:
            self.ctime = now


class InodeTable:
    def __init__(self, sb: Superblock, cache: BufferCache, imap: Bitmap, limit: int,
                 corrupt: Callable[[str], FsError]) -> None:
        self.sb = sb
        self.cache = cache
        self.imap = imap
        self.limit = limit
        self.corrupt = corrupt  # makes the EIO of a corrupt object (and logs it once)
        self.inodes: OrderedDict[int, Inode] = OrderedDict()

    def _where(self, ino: int) -> tuple[int, int]:
        block, index = divmod(ino - 1, INODES_PER_BLOCK)
        return self.sb.itable_start + block, index * INODE_SIZE

    def get(self, ino: int) -> Inode:
        ip = self.inodes.get(ino)
        if ip is not None:
            self.inodes.move_to_end(ino)
            return ip
        if not 1 <= ino <= self.sb.ninodes:
            raise self.corrupt(f"inode {ino} out of range 1..{self.sb.ninodes}")
        if not self.imap.is_set(ino):
            raise self.corrupt(f"inode {ino} is referenced but free in the inode map")
        block, offset = self._where(ino)
        d = DiskInode.unpack(self.cache.get(block, Kind.INODE).data, offset)
        if not valid_mode(d.mode):
            raise self.corrupt(f"inode {ino} has a bad mode {d.mode:#o}")
        ip = Inode(ino, d)
        self.inodes[ino] = ip
        self._bound()
        return ip

    def _bound(self) -> None:
        if len(self.inodes) <= self.limit:
            return
        for ino in [i for i, ip in self.inodes.items() if ip.refs == 0][:len(self.inodes)
                                                                         - self.limit]:
            del self.inodes[ino]

    def store(self, ip: Inode) -> None:
        """Write ``ip`` into its block of the inode table (written back in order later)."""
        block, offset = self._where(ip.ino)
        buf = self.cache.get(block, Kind.INODE)
        ip.disk().pack_into(buf.data, offset)
        self.cache.mark_dirty(buf)

    def alloc(self, mode: int, uid: int, gid: int) -> Inode:
        ino = self.imap.alloc()
        ip = Inode(ino, DiskInode(mode=mode, nlinks=0, uid=uid, gid=gid))
        ip.touch(a=True, m=True, c=True)
        ip.nzones = 0
        self.inodes[ino] = ip
        self.store(ip)
        self._bound()
        return ip

    def free(self, ip: Inode) -> None:
        """Clear the inode on disk and queue its bit (its zones are already freed)."""
        block, offset = self._where(ip.ino)
        buf = self.cache.get(block, Kind.INODE)
        buf.data[offset:offset + INODE_SIZE] = bytes(INODE_SIZE)
        self.cache.mark_dirty(buf)
        self.imap.free(ip.ino)
        self.inodes.pop(ip.ino, None)

    def orphans(self) -> list[Inode]:
        return [ip for ip in self.inodes.values() if ip.nlinks == 0 and ip.refs > 0]
