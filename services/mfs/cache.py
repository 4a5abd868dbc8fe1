"""MFS's buffer cache: 1 KiB blocks, LRU with a bound, write-back, batched device requests.

Every block the file system reads or writes (except the bitmaps, which
services/mfs/bitmap.py keeps whole in memory) goes through here.  A buffer
has a kind, which fixes when it is written back (``WRITE_ORDER``):

* DATA: file contents and indirect blocks, written first;
* INODE: blocks of the inode table, written after the zone and inode maps
  (the file system writes the bitmaps between, see FileSystem.write_back);
* DIR: directory blocks, last, so that a name on disk never points at an
  inode or zones that are not there yet.

Invariants:

* The cache never evicts while an operation runs: ``get`` and ``fresh`` only
  add; ``trim`` (called by the file system between operations) evicts the
  least recently used buffers down to the bound.  A buffer an operation holds
  can therefore never be dropped under it.
* Evicting a dirty DATA buffer writes it together with its dirty DATA
  neighbours, one device request per contiguous run (at most ``max_io``
  bytes).  Evicting a dirty INODE or DIR buffer first writes back everything
  in order (the ``write_back`` callback), so eviction never reverses the
  order.
* Misses are read in runs: ``prefetch`` takes a list of blocks (a read and
  its read-ahead window) and reads the missing ones with one request per
  contiguous run.
* A device failure raises FsError(EIO); the buffer stays dirty.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from enum import IntEnum

from minikern.const import BDEV_MAX_IO, Err
from minikern.ipc import KernelGone
from services.mfs.device import Device
from services.mfs.layout import BLOCK, FsError


class Kind(IntEnum):
    DATA = 0
    INODE = 1
    DIR = 2


class Buf:
    __slots__ = ("block", "data", "dirty", "kind")

    def __init__(self, block: int, data: bytearray, kind: Kind) -> None:
        self.block = block
        self.data = data
        self.dirty = False
        self.kind = kind


class BufferCache:
    def __init__(self, dev: Device, limit: int, max_io: int = BDEV_MAX_IO,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dev = dev
        self.limit = max(limit, 256)  # one operation touches at most ~50 blocks
        self.run_max = max(1, max_io // BLOCK)
        self.clock = clock
        self.bufs: OrderedDict[int, Buf] = OrderedDict()
        self.dirty: dict[Kind, set[int]] = {k: set() for k in Kind}
        self.dirty_since: float | None = None  # when the oldest dirty buffer became dirty
        self.write_back: Callable[[], None] = self.write_all
        self.stats = {"hits": 0, "misses": 0, "reads": 0, "writes": 0, "evicted": 0}

    # -- device requests ---------------------------------------------------------------

    def _dev_read(self, block: int, n: int) -> bytes:
        try:
            data = self.dev.read(block * BLOCK, n * BLOCK)
        except (FsError, KernelGone):
            raise
        except Exception as e:  # noqa: BLE001 (whatever the device raises is an I/O error)
            raise FsError(Err.EIO, f"reading blocks {block}..{block + n - 1}: {e}") from e
        if len(data) != n * BLOCK:
            raise FsError(Err.EIO, f"reading blocks {block}..{block + n - 1}: short read")
        self.stats["reads"] += 1
        return data

    def dev_write(self, block: int, data: bytes) -> None:
        try:
            self.dev.write(block * BLOCK, data)
        except (FsError, KernelGone):
            raise
        except Exception as e:  # noqa: BLE001
            raise FsError(Err.EIO, f"writing from block {block}: {e}") from e
        self.stats["writes"] += 1

    # -- lookups -----------------------------------------------------------------------

    def get(self, block: int, kind: Kind = Kind.DATA) -> Buf:
        """The buffer of ``block``, read from the device on a miss."""
        buf = self.bufs.get(block)
        if buf is not None:
            self.bufs.move_to_end(block)
            self.stats["hits"] += 1
        else:
            self.stats["misses"] += 1
            buf = Buf(block, bytearray(self._dev_read(block, 1)), kind)
            self.bufs[block] = buf
        if buf.kind != kind:
            self._rekind(buf, kind)
        return buf

    def fresh(self, block: int, kind: Kind = Kind.DATA) -> Buf:
        """The buffer of ``block`` filled with zeros, without reading (a newly allocated zone)."""
        buf = self.bufs.get(block)
        if buf is None:
            buf = Buf(block, bytearray(BLOCK), kind)
            self.bufs[block] = buf
        else:
            buf.data[:] = bytes(BLOCK)
            self.bufs.move_to_end(block)
            if buf.kind != kind:
                self._rekind(buf, kind)
        return buf

    def _rekind(self, buf: Buf, kind: Kind) -> None:
        if buf.dirty:
            self.dirty[buf.kind].discard(buf.block)
            self.dirty[kind].add(buf.block)
        buf.kind = kind

    def prefetch(self, blocks: Iterable[int]) -> None:
        """Read the missing ones of ``blocks`` (0 is a hole: skipped), one request per run."""
        missing = sorted({b for b in blocks if b and b not in self.bufs})
        i = 0
        while i < len(missing):
            j = i + 1
            while j < len(missing) and missing[j] == missing[j - 1] + 1 and j - i < self.run_max:
                j += 1
            first, n = missing[i], j - i
            data = self._dev_read(first, n)
            for k in range(n):
                self.bufs[first + k] = Buf(first + k, bytearray(data[k * BLOCK:(k + 1) * BLOCK]),
                                           Kind.DATA)
            self.stats["misses"] += n
            i = j

    def mark_dirty(self, buf: Buf) -> None:
        if not buf.dirty:
            buf.dirty = True
            self.dirty[buf.kind].add(buf.block)
            if self.dirty_since is None:
                self.dirty_since = self.clock()

    def discard(self, block: int) -> None:
        """Forget ``block`` without writing it (its zone was freed)."""
        buf = self.bufs.pop(block, None)
        if buf is not None and buf.dirty:
            self.dirty[buf.kind].discard(block)

    # -- writing back ------------------------------------------------------------------

    def _write_runs(self, blocks: list[int]) -> None:
        """Write the dirty buffers ``blocks`` (sorted), one request per contiguous run."""
        i = 0
        while i < len(blocks):
            j = i + 1
            while j < len(blocks) and blocks[j] == blocks[j - 1] + 1 and j - i < self.run_max:
                j += 1
            run = [self.bufs[b] for b in blocks[i:j]]
            self.dev_write(blocks[i], b"".join(bytes(b.data) for b in run))
            for b in run:
                b.dirty = False
                self.dirty[b.kind].discard(b.block)
            i = j
        if not any(self.dirty.values()):
            self.dirty_since = None

    def write_kind(self, kind: Kind) -> None:
        self._write_runs(sorted(self.dirty[kind]))

    def write_all(self) -> None:
        for kind in Kind:
            self.write_kind(kind)

    def dirty_count(self) -> int:
        return sum(len(s) for s in self.dirty.values())

    def trim(self) -> None:
        """Evict least recently used buffers down to the bound (between operations only)."""
        while len(self.bufs) > self.limit:
            block, buf = next(iter(self.bufs.items()))
            if buf.dirty and buf.kind == Kind.DATA:
                self._write_runs(self._dirty_run(block))
            elif buf.dirty:
                self.write_back()
            self.bufs.pop(block)
            self.stats["evicted"] += 1

    def _dirty_run(self, block: int) -> list[int]:
        """The contiguous dirty DATA blocks around ``block``, at most ``run_max`` of them."""
        dirty = self.dirty[Kind.DATA]
        lo = block
        while lo - 1 in dirty and block - lo + 1 < self.run_max:
            lo -= 1
        hi = block
        while hi + 1 in dirty and hi - lo + 1 < self.run_max:
            hi += 1
        return list(range(lo, hi + 1))

    def drop_all(self) -> None:
        """Forget everything, dirty or not (a crash, for tests; or after a failed mount)."""
        self.bufs.clear()
        for s in self.dirty.values():
            s.clear()
        self.dirty_since = None
