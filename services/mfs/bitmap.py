"""The inode map and the zone map, kept whole in memory (devices.md 6.5).

Bit i is byte i >> 3, bit i & 7.  Bit 0 is reserved and always set; bits
past the last inode or zone are set by mkfs and never handed out.  For the
zone map, bit b is zone ``firstdatazone + b - 1``.

Allocation searches for a clear bit from a remembered start (MINIX's
``i_search``/``z_search``) with one C-speed regex scan for a byte that is not
0xFF, so a sequential writer gets consecutive zones at a constant cost.

Freeing is deferred: ``free`` only queues the bit.  The file system applies
the queue (``apply_frees``) after it has written the inodes and directory
blocks that no longer use those bits, so the map on disk never shows free a
zone or inode that a written inode still references (the reverse of the
allocation order).  A queued bit is not reused until then; an allocation
that finds the map full asks for a write-back (``reclaim``) and tries again.
"""
from __future__ import annotations

import re
from collections.abc import Callable

from minikern.const import Err
from services.mfs.layout import BITS_PER_BLOCK, BLOCK, FsError

_NOT_FULL = re.compile(b"[^\xff]")


class Bitmap:
    def __init__(self, name: str, start_block: int, nblocks: int, nbits: int) -> None:
        """``nbits``: bits in use by the map, bit 0 included (ninodes + 1, or data zones + 1)."""
        self.name = name
        self.start = start_block
        self.nblocks = nblocks
        self.nbits = nbits
        self.data = bytearray(nblocks * BLOCK)
        self.dirty: set[int] = set()  # map block indexes to write
        self.pending: set[int] = set()  # bits freed, not yet cleared (see the docstring)
        self.search = 1
        self.free_bits = 0
        self.reclaim: Callable[[], None] = lambda: None

    def load(self, data: bytes) -> None:
        self.data[:] = data
        self.data[0] |= 1  # bit 0 is reserved, whatever the disk says
        used = int.from_bytes(self.data[:(self.nbits + 7) // 8], "little")
        used &= (1 << self.nbits) - 1
        self.free_bits = self.nbits - used.bit_count()
        self.dirty.clear()
        self.pending.clear()
        self.search = 1

    def is_set(self, bit: int) -> bool:
        return bool(self.data[bit >> 3] & (1 << (bit & 7)))

    def _set(self, bit: int, on: bool) -> None:
        if on:
            self.data[bit >> 3] |= 1 << (bit & 7)
        else:
            self.data[bit >> 3] &= ~(1 << (bit & 7)) & 0xFF
        self.dirty.add(bit // BITS_PER_BLOCK)

    def _find(self, start: int) -> int | None:
        limit = (self.nbits + 7) // 8
        pos = start >> 3
        while True:
            m = _NOT_FULL.search(self.data, pos, limit)
            if m is None:
                return None
            byte = m.start()
            value = self.data[byte]
            for k in range(8):
                bit = byte * 8 + k
                if not value & (1 << k) and bit >= start and bit < self.nbits:
                    return bit
            pos = byte + 1

    def alloc(self, near: int = 0) -> int:
        """Set and return a clear bit, searching from ``near`` (or the remembered start)."""
        for attempt in range(2):
            start = near if 0 < near < self.nbits else self.search
            bit = self._find(start)
            if bit is None and start > 1:
                bit = self._find(1)
            if bit is not None:
                self._set(bit, True)
                self.free_bits -= 1
                self.search = bit + 1
                return bit
            if attempt == 0 and self.pending:
                self.reclaim()
        raise FsError(Err.ENOSPC, f"no free {self.name}")

    def free(self, bit: int) -> bool:
        """Queue ``bit`` to be cleared; False if it is out of range or already clear."""
        if not 0 < bit < self.nbits or not self.is_set(bit) or bit in self.pending:
            return False
        self.pending.add(bit)
        return True

    def apply_frees(self) -> None:
        for bit in self.pending:
            self._set(bit, False)
            self.free_bits += 1
            self.search = min(self.search, bit)
        self.pending.clear()

    def free_count(self) -> int:
        return self.free_bits + len(self.pending)

    def dirty_runs(self) -> list[tuple[int, bytes]]:
        """(device block, contents) of each dirty map block; clears the dirty set."""
        out = [(self.start + i, bytes(self.data[i * BLOCK:(i + 1) * BLOCK]))
               for i in sorted(self.dirty)]
        self.dirty.clear()
        return out
