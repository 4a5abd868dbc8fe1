"""Directories: arrays of 64-byte entries (u32 inode, 60-byte NUL-padded name) in the zones of an inode.

Rules kept (and checked on every use, devices.md 6.4): a directory's size is
a multiple of 64 and at least 128; slot 0 is "." (itself) and slot 1 is
".." (its parent).  A directory that breaks them is corrupt: EIO for that
directory, logged once.  Slot inode 0 is free.  A hole in a directory reads
as free slots and is never filled (a new block is added at the end).

Lookups search each block with one ``bytes.find`` for the NUL-terminated
name at a name field's offset, so a directory of a thousand entries costs a
few C-speed scans, not a thousand unpacks.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from minikern.const import NAME_MAX
from services.mfs.cache import Buf, BufferCache, Kind
from services.mfs.inode import Inode, InodeTable
from services.mfs.layout import (BLOCK, DIRENT_SIZE, DIRENTS_PER_BLOCK, FsError, ceil_div,
                                 dirent_ino, dirent_name, pack_dirent)
from services.mfs.zones import Zones


class Directories:
    def __init__(self, cache: BufferCache, inodes: InodeTable, zones: Zones,
                 corrupt: Callable[[str], FsError]) -> None:
        self.cache = cache
        self.inodes = inodes
        self.zones = zones
        self.corrupt = corrupt

    def check(self, dp: Inode) -> None:
        """Raise EIO if ``dp`` breaks the rules of a directory."""
        if dp.size % DIRENT_SIZE or dp.size < 2 * DIRENT_SIZE:
            raise self.corrupt(f"directory {dp.ino} has size {dp.size}")
        zone = self.zones.bmap(dp, 0)
        data = self.cache.get(zone, Kind.DIR).data if zone else bytes(BLOCK)
        if dirent_name(data, 0) != b"." or dirent_ino(data, 0) != dp.ino:
            raise self.corrupt(f"directory {dp.ino}: '.' isn't first")
        if dirent_name(data, 1) != b".." or not dirent_ino(data, 1):
            raise self.corrupt(f"directory {dp.ino}: '..' isn't second")

    def _blocks(self, dp: Inode, first: int = 0) -> Iterator[tuple[int, int, Buf | None, int]]:
        """(file block, zone, buffer or None for a hole, slots in use in it) from ``first`` on."""
        nblocks = ceil_div(dp.size, BLOCK)
        zones = [self.zones.bmap(dp, fb) for fb in range(first, nblocks)]
        self.cache.prefetch(zones)
        for fb, zone in enumerate(zones, first):
            slots = min(DIRENTS_PER_BLOCK, (dp.size - fb * BLOCK) // DIRENT_SIZE)
            yield fb, zone, self.cache.get(zone, Kind.DIR) if zone else None, slots

    def find(self, dp: Inode, name: bytes) -> tuple[int, Buf, int] | None:
        """(inode, buffer, slot) of ``name`` in ``dp``, or None."""
        pattern = name if len(name) == NAME_MAX else name + b"\0"
        for _fb, _zone, buf, slots in self._blocks(dp):
            if buf is None:
                continue
            data, pos, limit = buf.data, 0, slots * DIRENT_SIZE
            while True:
                at = data.find(pattern, pos, limit)
                if at < 0:
                    break
                slot, rem = divmod(at - 4, DIRENT_SIZE)
                if rem == 0 and dirent_ino(data, slot):
                    return dirent_ino(data, slot), buf, slot
                pos = at + 1
        return None

    def lookup(self, dp: Inode, name: bytes) -> int | None:
        found = self.find(dp, name)
        return None if found is None else found[0]

    def entries(self, dp: Inode, start: int, limit: int) -> tuple[list[tuple[bytes, int]], int]:
        """Up to ``limit`` (name, inode) from slot ``start``; and the slot to go on from, -1 at the end."""
        out: list[tuple[bytes, int]] = []
        total = dp.size // DIRENT_SIZE
        if start >= total:
            return out, -1
        for fb, _zone, buf, slots in self._blocks(dp, start // DIRENTS_PER_BLOCK):
            for slot in range(max(0, start - fb * DIRENTS_PER_BLOCK), slots):
                if len(out) == limit:
                    return out, fb * DIRENTS_PER_BLOCK + slot
                if buf is not None and dirent_ino(buf.data, slot):
                    out.append((dirent_name(buf.data, slot), dirent_ino(buf.data, slot)))
        return out, -1

    def is_empty(self, dp: Inode) -> bool:
        """True if ``dp`` holds nothing but "." and ".."."""
        for fb, _zone, buf, slots in self._blocks(dp):
            if buf is None:
                continue
            for slot in range(2 if fb == 0 else 0, slots):
                if dirent_ino(buf.data, slot):
                    return False
        return True

    def add(self, dp: Inode, name: bytes, ino: int) -> None:
        """Enter ``name`` -> ``ino`` in the first free slot, growing ``dp`` by a block if full."""
        for _fb, _zone, buf, slots in self._blocks(dp):
            if buf is None:
                continue
            for slot in range(slots):
                if not dirent_ino(buf.data, slot):
                    pack_dirent(buf.data, slot, ino, name)
                    self.cache.mark_dirty(buf)
                    return
        fb, slot = divmod(dp.size, BLOCK)
        slot //= DIRENT_SIZE
        if slot == 0:
            zone, _new = self.zones.bmap_alloc(dp, fb, near=self.zones.bmap(dp, fb - 1))
        else:
            zone = self.zones.bmap(dp, fb)
            if not zone:
                raise self.corrupt(f"directory {dp.ino} ends in a hole")
        buf = self.cache.get(zone, Kind.DIR)
        pack_dirent(buf.data, slot, ino, name)
        self.cache.mark_dirty(buf)
        dp.size += DIRENT_SIZE
        dp.touch(m=True, c=True)
        self.inodes.store(dp)

    def set(self, buf: Buf, slot: int, ino: int, name: bytes | None = None) -> None:
        """Point the entry at (``buf``, ``slot``) at ``ino`` (0 frees it), keeping or renaming it."""
        if ino == 0:
            buf.data[slot * DIRENT_SIZE:(slot + 1) * DIRENT_SIZE] = bytes(DIRENT_SIZE)
        else:
            pack_dirent(buf.data, slot, ino, dirent_name(buf.data, slot) if name is None else name)
        self.cache.mark_dirty(buf)
