"""Zone mapping: file block -> zone through 7 direct, single, double and triple indirect zones.

An inode's ``zones[0..6]`` map file blocks 0..6; ``zones[7]`` is an indirect
block of 256 zone numbers (blocks 7..262); ``zones[8]`` a double indirect
block (263..65798); ``zones[9]`` a triple (then up to the 2 GiB max size).
Zone 0 is a hole and reads as zeros.  A zone number outside
``firstdatazone <= z < zones`` is corruption: EIO for that file.

Indirect blocks are DATA buffers of the cache (written back before the
inode, see cache.py); a new zone is taken from the zone map near the
previous one, so a file written sequentially is contiguous on the disk and
its blocks move in few device requests.
"""
from __future__ import annotations

import struct
from collections.abc import Callable

from minikern.const import Err
from services.mfs.bitmap import Bitmap
from services.mfs.cache import BufferCache
from services.mfs.inode import Inode
from services.mfs.layout import (DOUBLE_START, NR_DZONES, NR_TZONES,
                                 PER_INDIRECT, SINGLE_START, TRIPLE_START, FsError, Superblock)

_U32 = struct.Struct("<I")
_LEVELS = ((NR_DZONES, 1, SINGLE_START), (NR_DZONES + 1, 2, DOUBLE_START),
           (NR_DZONES + 2, 3, TRIPLE_START))


def _path(fblock: int) -> tuple[int, int, int]:
    """(slot in the inode, indirection level, index below that slot) of file block ``fblock``."""
    if fblock < NR_DZONES:
        return fblock, 0, 0
    for slot, level, start in _LEVELS:
        if fblock < start + PER_INDIRECT ** level:
            return slot, level, fblock - start
    raise FsError(Err.EFBIG, f"file block {fblock} is past the largest file")


class Zones:
    def __init__(self, sb: Superblock, cache: BufferCache, zmap: Bitmap,
                 corrupt: Callable[[str], FsError]) -> None:
        self.sb = sb
        self.cache = cache
        self.zmap = zmap
        self.corrupt = corrupt
        self.first, self.end = sb.firstdatazone, sb.zones

    def check(self, ip: Inode, zone: int) -> int:
        if zone and not self.first <= zone < self.end:
            raise self.corrupt(f"inode {ip.ino}: zone {zone} outside {self.first}..{self.end - 1}")
        return zone

    def bmap(self, ip: Inode, fblock: int) -> int:
        """The zone of file block ``fblock`` (0: a hole)."""
        slot, level, index = _path(fblock)
        zone = self.check(ip, ip.zones[slot])
        while level and zone:
            level -= 1
            entry = (index // PER_INDIRECT ** level) % PER_INDIRECT
            zone = self.check(ip, _U32.unpack_from(self.cache.get(zone).data, entry * 4)[0])
        return zone

    def alloc_zone(self, ip: Inode, near: int) -> int:
        bit = self.zmap.alloc(near - self.first + 2 if near else 0)
        if ip.nzones >= 0:
            ip.nzones += 1
        return self.first + bit - 1

    def bmap_alloc(self, ip: Inode, fblock: int, near: int = 0) -> tuple[int, bool]:
        """The zone of ``fblock``, allocating it and any missing indirect block.

        Returns (zone, new): a new zone's buffer is fresh (zeros) in the cache."""
        slot, level, index = _path(fblock)
        zone = self.check(ip, ip.zones[slot])
        if not zone:
            zone = self.alloc_zone(ip, near)
            ip.zones[slot] = zone
            self.cache.mark_dirty(self.cache.fresh(zone))
            if not level:
                return zone, True
        elif not level:
            return zone, False
        while level:
            level -= 1
            entry = (index // PER_INDIRECT ** level) % PER_INDIRECT
            buf = self.cache.get(zone)
            child = self.check(ip, _U32.unpack_from(buf.data, entry * 4)[0])
            if child:
                zone = child
                continue
            child = self.alloc_zone(ip, near or zone)
            _U32.pack_into(buf.data, entry * 4, child)
            self.cache.mark_dirty(buf)
            fresh = self.cache.fresh(child)
            self.cache.mark_dirty(fresh)
            zone = child
            if not level:
                return zone, True
        return zone, False

    # -- freeing -----------------------------------------------------------------------

    def free_zone(self, ip: Inode, zone: int) -> None:
        if not self.zmap.free(zone - self.first + 1):
            self.corrupt(f"inode {ip.ino}: zone {zone} freed twice or not in use")  # logged only
        self.cache.discard(zone)
        if ip.nzones > 0:
            ip.nzones -= 1

    def _trunc(self, ip: Inode, zone: int, level: int, base: int, keep: int) -> bool:
        """Free what ``zone`` (covering file blocks from ``base``) maps at or past ``keep``;
        True if ``zone`` itself was freed (its pointer must be cleared)."""
        self.check(ip, zone)
        span = PER_INDIRECT ** level
        if base >= keep:
            if level:
                entries = self._entries(zone)
                if level > 1:
                    self.cache.prefetch(entries)
                for child in entries:
                    if child:
                        self._trunc(ip, child, level - 1, keep, keep)
            self.free_zone(ip, zone)
            return True
        if not level:
            return False
        child_span = span // PER_INDIRECT
        buf = self.cache.get(zone)
        first = max(0, (keep - base) // child_span)
        for i in range(first, PER_INDIRECT):
            child = _U32.unpack_from(buf.data, i * 4)[0]
            if child and self._trunc(ip, child, level - 1, base + i * child_span, keep):
                buf = self.cache.get(zone)
                _U32.pack_into(buf.data, i * 4, 0)
                self.cache.mark_dirty(buf)
        return False

    def _entries(self, zone: int) -> list[int]:
        return list(struct.unpack_from(f"<{PER_INDIRECT}I", self.cache.get(zone).data))

    def truncate(self, ip: Inode, keep: int) -> None:
        """Free every zone (data and indirect) of ``ip`` past its first ``keep`` file blocks."""
        bases = list(range(NR_DZONES)) + [start for _, _, start in _LEVELS]
        levels = [0] * NR_DZONES + [1, 2, 3]
        for slot in range(NR_TZONES):
            zone = ip.zones[slot]
            if zone and self._trunc(ip, zone, levels[slot], bases[slot], keep):
                ip.zones[slot] = 0

    def count(self, ip: Inode) -> int:
        """Zones in use by ``ip``, data and indirect (for stat's ``blocks``)."""
        if ip.nzones >= 0:
            return ip.nzones
        total = 0
        levels = [0] * NR_DZONES + [1, 2, 3]
        stack = [(self.check(ip, z), lv) for z, lv in zip(ip.zones, levels, strict=True) if z]
        while stack:
            zone, level = stack.pop()
            total += 1
            if level:
                stack.extend((self.check(ip, c), level - 1) for c in self._entries(zone) if c)
        ip.nzones = total
        return total

