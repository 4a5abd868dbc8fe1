"""The core of a mounted MINIX v3 file system: mount, write-back order, and shared helpers.

Layers, bottom up: a ``Device`` (device.py: byte positions, sector
multiples), the buffer cache (cache.py), the two bitmaps (bitmap.py), the
inode table (inode.py), zone mapping (zones.py), directories (dirs.py), this
module, then the requests: names.py (the name space) and fs.py (data and
attributes; ``FileSystem`` is the class to use).  Each public method is one
request; it raises ``FsError`` with MINIX's error name, or returns the
reply's fields.

Write-back order (``write_back``), so that the image on disk after any
completed write-back is one fsck.minix finds clean, and a crash in the
middle of one leaves at worst zones or inodes marked used that nothing uses:

1. DATA buffers: file contents and indirect blocks;
2. the zone and inode maps (allocations);
3. the inode table;
4. directory blocks;
5. the frees queued since the last write-back are applied to the maps, and
   the maps written again (freeing is the reverse order: the name goes, then
   the inode, then the bits).

``sync`` is a write-back and the device's flush.  Dirty buffers also go out
when the cache evicts them (cache.py keeps the order), on UNMOUNT, and, in
the server, when the oldest is ``MFS_DIRTY_AGE`` old (``due``).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from minikern import params
from minikern.const import NAME_MAX, Err
from minikern.ipc import KernelGone
from services.mfs.bitmap import Bitmap
from services.mfs.cache import BufferCache, Kind
from services.mfs.device import Device
from services.mfs.dirs import Directories
from services.mfs.inode import Inode, InodeTable
from services.mfs.layout import (BLOCK, MAX_FILE_BLOCKS, ROOT_INO,
                                 SUPER_BLOCK, FsError, Superblock, ceil_div)
from services.mfs.zones import Zones

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound="Core")
Stat = dict[str, int]


def operation(modifies: bool) -> Callable[[Callable[Concatenate[C, P], R]],
                                          Callable[Concatenate[C, P], R]]:
    """One request: EROFS first if it modifies a read-only mount; the cache trimmed after."""
    def wrap(fn: Callable[Concatenate[C, P], R]) -> Callable[Concatenate[C, P], R]:
        def run(fs: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
            if modifies and fs.readonly:
                raise FsError(Err.EROFS, "mounted read-only")
            try:
                return fn(fs, *args, **kwargs)
            finally:
                fs.cache.trim()
        run.__name__, run.__doc__ = fn.__name__, fn.__doc__
        return run
    return wrap


def encode_name(name: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    if not raw or b"/" in raw or b"\0" in raw:
        raise FsError(Err.EINVAL, f"bad name {name!r}")
    if len(raw) > NAME_MAX:
        raise FsError(Err.ENAMETOOLONG, f"name of {len(raw)} bytes (at most {NAME_MAX})")
    return raw


class Core:
    """The mounted file system's state and the helpers every request uses."""

    def __init__(self, dev: Device, readonly: bool = False, minor: int = 0,
                 cache_blocks: int = params.MFS_CACHE_BLOCKS,
                 log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Mount: read and check the superblock, load the maps, check the root directory."""
        self.dev, self.readonly, self.minor = dev, readonly, minor
        self.log = log or (lambda text: print(f"mfs: {text}", file=sys.stderr, flush=True))
        self.logged: set[str] = set()
        self.cache = BufferCache(dev, cache_blocks, clock=clock)
        self.flushed_writes = 0  # the cache's device writes counted at the last flush
        try:
            dev.open()
        except (FsError, KernelGone):
            raise
        except Exception as e:  # noqa: BLE001 (whatever the device raises is an I/O error)
            raise FsError(Err.EIO, f"cannot open the device: {e}") from e
        try:
            self._mount()
        except FsError:
            dev.close()
            raise

    def _mount(self) -> None:
        size = int(self.dev.geometry().get("size", 0))
        if size < 2 * BLOCK:
            raise FsError(Err.EINVAL, f"device of {size} bytes has no superblock")
        self.sb = sb = Superblock.unpack(self.cache.get(SUPER_BLOCK).data)
        why = sb.refusal(size)
        if why is not None:
            raise FsError(Err.EINVAL, f"not a MINIX v3 file system: {why}")
        self.imap = Bitmap("inode", sb.imap_start, sb.imap_blocks, sb.ninodes + 1)
        self.zmap = Bitmap("zone", sb.zmap_start, sb.zmap_blocks, sb.data_zones() + 1)
        step = self.cache.run_max
        for bitmap in (self.imap, self.zmap):
            end = bitmap.start + bitmap.nblocks
            bitmap.load(b"".join(self.cache.read_blocks(b, min(step, end - b))
                                 for b in range(bitmap.start, end, step)))
            bitmap.reclaim = self.write_back
        self.cache.write_back = self.write_back
        self.inodes = InodeTable(sb, self.cache, self.imap, params.MFS_INODE_CACHE, self.corrupt)
        self.zones = Zones(sb, self.cache, self.zmap, self.corrupt)
        self.dirs = Directories(self.cache, self.inodes, self.zones, self.corrupt)
        self.next_read: dict[int, int] = {}  # inode -> where its last read ended (read-ahead)
        root = self.inodes.get(ROOT_INO)
        if not root.is_dir:
            raise FsError(Err.EINVAL, f"the root inode has mode {root.mode:#o}, not a directory")
        self.dirs.check(root)

    def corrupt(self, what: str) -> FsError:
        """The EIO for a corrupt object; the reason is logged once."""
        if what not in self.logged and len(self.logged) < 1000:
            self.logged.add(what)
            self.log(f"corrupt: {what}")
        return FsError(Err.EIO, what)

    # -- writing back --------------------------------------------------------------------

    def _write_maps(self) -> None:
        runs = sorted(self.imap.dirty_runs() + self.zmap.dirty_runs())
        i = 0
        while i < len(runs):
            j = i + 1
            while j < len(runs) and runs[j][0] == runs[j - 1][0] + 1 and j - i < self.cache.run_max:
                j += 1
            self.cache.dev_write(runs[i][0], b"".join(data for _, data in runs[i:j]))
            i = j

    def write_back(self) -> None:
        """Write every dirty block, in the order of the module docstring."""
        self.cache.write_kind(Kind.DATA)
        self._write_maps()
        self.cache.write_kind(Kind.INODE)
        self.cache.write_kind(Kind.DIR)
        if self.imap.pending or self.zmap.pending:
            self.imap.apply_frees()
            self.zmap.apply_frees()
            self._write_maps()

    def dirty(self) -> bool:
        return bool(self.cache.dirty_count() or self.imap.dirty or self.zmap.dirty
                    or self.imap.pending or self.zmap.pending)

    def due(self, now: float, age: float = params.MFS_DIRTY_AGE) -> bool:
        """True if the oldest dirty buffer is ``age`` old (the server's timer then syncs)."""
        since = self.cache.dirty_since
        return since is not None and now - since >= age or (
            since is None and self.dirty())

    @operation(modifies=False)
    def sync(self) -> None:
        if not self.readonly:
            self.write_back()
        self.flush()

    def flush(self) -> None:
        self.dev.flush()
        self.flushed_writes = self.cache.stats["writes"]

    def unmount(self) -> None:
        """Free what only VFS's references kept, write everything back, close the device."""
        try:
            if not self.readonly:
                for ip in self.inodes.orphans():
                    ip.refs = 0
                    self._release(ip)
                self.write_back()
                if self.cache.stats["writes"] != self.flushed_writes:
                    self.flush()  # (a synced file system asks nothing of a driver perhaps gone)
        finally:
            self.dev.close()

    # -- helpers ------------------------------------------------------------------------

    def _stat(self, ip: Inode) -> Stat:
        return {"ino": ip.ino, "mode": ip.mode, "nlinks": ip.nlinks, "uid": ip.uid,
                "gid": ip.gid, "size": ip.size, "atime": int(ip.atime), "mtime": int(ip.mtime),
                "ctime": int(ip.ctime), "blocks": self.zones.count(ip) * (BLOCK // 512),
                "dev": self.minor}

    def _dir(self, ino: int) -> Inode:
        dp = self.inodes.get(ino)
        if not dp.is_dir:
            raise FsError(Err.ENOTDIR, f"inode {ino} is not a directory")
        self.dirs.check(dp)
        return dp

    def _child(self, dp: Inode, name: bytes) -> Inode:
        ino = self.dirs.lookup(dp, name)
        if ino is None:
            raise FsError(Err.ENOENT, f"{name!r} not in directory {dp.ino}")
        return self.inodes.get(ino)

    def _live_dir(self, ino: int) -> Inode:
        """A directory to enter a name in: it must still have links."""
        dp = self._dir(ino)
        if dp.nlinks == 0:
            raise FsError(Err.ENOENT, f"directory {ino} was removed")
        return dp

    def _release(self, ip: Inode) -> None:
        """Free ``ip`` if no name and no reference keeps it (zones first, then the inode)."""
        if ip.nlinks == 0 and ip.refs == 0:
            self.zones.truncate(ip, 0)
            self.inodes.free(ip)
            self.next_read.pop(ip.ino, None)

    def _unlink_from(self, dp: Inode, ip: Inode, buf_slot: tuple[Any, int], is_dir: bool) -> None:
        buf, slot = buf_slot
        self.dirs.set(buf, slot, 0)
        dp.touch(m=True, c=True)
        if is_dir:
            dp.nlinks -= 1
            ip.nlinks = 0
        else:
            ip.nlinks -= 1
        ip.touch(c=True)
        self.inodes.store(dp)
        self.inodes.store(ip)
        self._release(ip)

    def _new_node(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> tuple[Inode,
                                                                                       Inode,
                                                                                       bytes]:
        raw = encode_name(name)
        dp = self._live_dir(dir_ino)
        if self.dirs.lookup(dp, raw) is not None:
            raise FsError(Err.EEXIST, f"{name!r} exists")
        ip = self.inodes.alloc(mode, uid, gid)
        return dp, ip, raw

    # -- the data path (READ, WRITE, SLINK, RDLINK) ---------------------------------------

    def _read(self, ip: Inode, pos: int, count: int) -> bytes:
        """Up to ``count`` bytes at ``pos`` (short at the end of the file); holes read as zeros.

        A read that continues the previous one, and whose next block is not cached yet, also
        reads ahead ``MFS_READAHEAD`` blocks: with the blocks of this read that are missing,
        in one device request per contiguous run (the device moves 128 KiB at a time, so a
        sequential reader costs one request per 128 KiB)."""
        count = min(count, ip.size - pos)
        if count <= 0:
            return b""
        first, last = pos // BLOCK, (pos + count - 1) // BLOCK
        zones = [self.zones.bmap(ip, fb) for fb in range(first, last + 1)]
        wanted = list(zones)
        end = min(ceil_div(ip.size, BLOCK), last + 1 + params.MFS_READAHEAD)
        if self.next_read.get(ip.ino) == pos and end > last + 1 \
                and self.zones.bmap(ip, last + 1) not in self.cache.bufs:
            wanted += [self.zones.bmap(ip, fb) for fb in range(last + 1, end)]
        self.cache.prefetch(wanted)
        self.next_read[ip.ino] = pos + count
        out = bytearray()
        for fb, zone in enumerate(zones, first):
            lo = pos - fb * BLOCK if fb == first else 0
            hi = pos + count - fb * BLOCK if fb == last else BLOCK
            out += self.cache.get(zone).data[lo:hi] if zone else bytes(hi - lo)
        return bytes(out)

    def _write(self, ip: Inode, pos: int, data: bytes) -> int:
        """Write ``data`` at ``pos``; returns the bytes written (short only if the disk filled)."""
        end = pos + len(data)
        if end > self.sb.max_size or ceil_div(end, BLOCK) > MAX_FILE_BLOCKS:
            raise FsError(Err.EFBIG, f"a file cannot reach {end} bytes")
        done, near = 0, 0
        fb = pos // BLOCK
        try:
            while done < len(data):
                lo = (pos + done) % BLOCK
                n = min(BLOCK - lo, len(data) - done)
                zone, new = self.zones.bmap_alloc(ip, fb, near)
                # a whole block overwritten needs no read; a new one is already zeros
                buf = self.cache.get(zone) if new or n < BLOCK else self.cache.fresh(zone)
                buf.data[lo:lo + n] = data[done:done + n]
                self.cache.mark_dirty(buf)
                done, near, fb = done + n, zone, fb + 1
        except FsError as e:
            if e.code != Err.ENOSPC or done == 0:
                raise
        finally:  # zones taken so far belong to the inode even if the write failed
            if pos + done > ip.size:
                ip.size = pos + done
            ip.touch(m=True, c=True)
            self.inodes.store(ip)
        return done
