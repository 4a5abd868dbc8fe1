"""FileSystem: one mounted MINIX v3 file system, every request of PROTOCOL.md 20 as a method.

The name space is in names.py, the mount, write-back and data path in
core.py; here are the requests on one inode's data and attributes: READ,
WRITE, FTRUNC, STAT, CHMOD, CHOWN, UTIME.  Use::

    fs = FileSystem(device)            # mounts: EINVAL with the reason if not MINIX v3
    st = fs.create(1, "a", 0o644, 0, 0)
    fs.write(st["ino"], 0, b"hello")
    fs.sync(); fs.unmount()

Each method raises FsError(Err.X, reason) or returns the reply's fields.
Sizes past the end of a file read as zeros; growing a file with FTRUNC or a
write past the end leaves holes (zone 0), which take no space.
"""
from __future__ import annotations

import stat
import time

from minikern.const import Err
from services.mfs.core import Stat, operation
from services.mfs.inode import Inode
from services.mfs.layout import BLOCK, MAX_FILE_BLOCKS, FsError, ceil_div
from services.mfs.names import Names

UTIME_NOW = -1  # UTIME's atime or mtime: the current time


class FileSystem(Names):
    def _file(self, ino: int) -> Inode:
        ip = self.inodes.get(ino)
        if ip.is_dir:
            raise FsError(Err.EISDIR, f"inode {ino} is a directory")
        return ip

    @operation(modifies=False)
    def read(self, ino: int, pos: int, count: int) -> bytes:
        if pos < 0 or count < 0:
            raise FsError(Err.EINVAL, f"pos {pos} count {count}")
        return self._read(self._file(ino), pos, count)

    @operation(modifies=True)
    def write(self, ino: int, pos: int, data: bytes) -> tuple[int, int]:
        """Returns (bytes written, the file's new size)."""
        if pos < 0:
            raise FsError(Err.EINVAL, f"pos {pos}")
        ip = self._file(ino)
        if not ip.is_reg:
            raise FsError(Err.EINVAL, f"inode {ino} is not a regular file")
        return self._write(ip, pos, data), ip.size

    @operation(modifies=True)
    def ftrunc(self, ino: int, size: int) -> Stat:
        ip = self._file(ino)
        if not ip.is_reg:
            raise FsError(Err.EINVAL, f"inode {ino} is not a regular file")
        if size < 0:
            raise FsError(Err.EINVAL, f"size {size}")
        if size > self.sb.max_size or ceil_div(size, BLOCK) > MAX_FILE_BLOCKS:
            raise FsError(Err.EFBIG, f"a file cannot reach {size} bytes")
        if size < ip.size:
            self.zones.truncate(ip, ceil_div(size, BLOCK))
            if size % BLOCK:  # the tail of the last block must read as zeros if the file grows
                zone = self.zones.bmap(ip, size // BLOCK)
                if zone:
                    buf = self.cache.get(zone)
                    buf.data[size % BLOCK:] = bytes(BLOCK - size % BLOCK)
                    self.cache.mark_dirty(buf)
        ip.size = size
        ip.touch(m=True, c=True)
        self.inodes.store(ip)
        return self._stat(ip)

    @operation(modifies=False)
    def stat(self, ino: int) -> Stat:
        return self._stat(self.inodes.get(ino))

    @operation(modifies=True)
    def chmod(self, ino: int, mode: int) -> Stat:
        ip = self.inodes.get(ino)
        ip.mode = stat.S_IFMT(ip.mode) | (mode & 0o7777)
        ip.touch(c=True)
        self.inodes.store(ip)
        return self._stat(ip)

    @operation(modifies=True)
    def chown(self, ino: int, uid: int, gid: int) -> Stat:
        if not (0 <= uid <= 0xFFFF and 0 <= gid <= 0xFFFF):
            raise FsError(Err.EINVAL, f"uid {uid} gid {gid} (16 bits on disk)")
        ip = self.inodes.get(ino)
        ip.uid, ip.gid = uid, gid
        ip.touch(c=True)
        self.inodes.store(ip)
        return self._stat(ip)

    @operation(modifies=True)
    def utime(self, ino: int, atime: float, mtime: float) -> Stat:
        ip = self.inodes.get(ino)
        now = time.time()
        for t in (atime, mtime):
            if t != UTIME_NOW and not 0 <= t <= 0xFFFFFFFF:
                raise FsError(Err.EINVAL, f"time {t} does not fit 32 bits")
        ip.atime = int(now if atime == UTIME_NOW else atime)
        ip.mtime = int(now if mtime == UTIME_NOW else mtime)
        ip.touch(c=True)
        self.inodes.store(ip)
        return self._stat(ip)
