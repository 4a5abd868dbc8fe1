"""mkfs for MINIX v3, writing what util-linux ``mkfs.minix -3`` writes (devices.md 6.7).

For hosts without util-linux.  Same rules: the inode count is blocks/3 (up
to 512 MiB), blocks/8 (up to 2 GiB), else blocks/16, or ``inodes`` if
given, rounded up to a multiple of 16; the maps start with bit 0 set, bits
past the last inode or zone set; the root directory is inode 1 in the first
data zone with "." and "..", mode 040755, two links, size 128, owned by the
caller (gid only if uid is not 0).  Written: the first 512 bytes of block 0
(zeros), the superblock, both maps, the whole inode table and the root
block; nothing else is touched.

    python -m services.mfs.mkfs IMAGE [BLOCKS] [--inodes N]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from services.mfs.layout import (BITS_PER_BLOCK, BLOCK, DIRENT_SIZE, INODES_PER_BLOCK, MAGIC_V3,
                                 MAX_SIZE, ROOT_INO, DiskInode, Superblock, ceil_div,
                                 pack_dirent)

MIN_BLOCKS = 10  # mkfs.minix refuses smaller file systems


def default_inodes(blocks: int) -> int:
    if blocks <= 512 * 1024:
        return blocks // 3
    if blocks <= 2 * 1024 * 1024:
        return blocks // 8
    return blocks // 16


def geometry(blocks: int, inodes: int = 0) -> Superblock:
    ninodes = inodes or default_inodes(blocks)
    ninodes = ceil_div(ninodes, INODES_PER_BLOCK) * INODES_PER_BLOCK
    imap = ceil_div(ninodes + 1, BITS_PER_BLOCK)
    inode_blocks = ninodes // INODES_PER_BLOCK
    zmap = ceil_div(blocks - (1 + imap + inode_blocks), BITS_PER_BLOCK + 1)
    return Superblock(ninodes=ninodes, imap_blocks=imap, zmap_blocks=zmap,
                      firstdatazone=2 + imap + zmap + inode_blocks, log_zone_size=0,
                      max_size=MAX_SIZE, zones=blocks, magic=MAGIC_V3, blocksize=BLOCK)


def _map(nblocks: int, used_bits: int) -> bytearray:
    """A map of ``nblocks`` blocks whose bits 0 .. used_bits - 1 are clear except bit 0."""
    data = bytearray(b"\xff" * (nblocks * BLOCK))
    for bit in range(1, used_bits):
        data[bit >> 3] &= ~(1 << (bit & 7)) & 0xFF
    return data


def mkfs(path: str | Path, blocks: int = 0, inodes: int = 0, now: int | None = None) -> Superblock:
    """Make a file system on the image ``path`` (its size in blocks unless ``blocks``)."""
    fd = os.open(path, os.O_RDWR)
    try:
        blocks = blocks or os.fstat(fd).st_size // BLOCK
        if blocks < MIN_BLOCKS:
            raise ValueError(f"{path}: {blocks} blocks is too small (at least {MIN_BLOCKS})")
        sb = geometry(blocks, inodes)
        imap = _map(sb.imap_blocks, sb.ninodes + 1)
        zmap = _map(sb.zmap_blocks, sb.data_zones() + 1)
        imap[0] |= 1 << ROOT_INO
        zmap[0] |= 1 << 1  # the root directory's block, the first data zone
        table = bytearray(sb.inode_blocks * BLOCK)
        stamp = int(time.time()) if now is None else now
        uid = os.getuid()
        root = DiskInode(mode=0o040755, nlinks=2, uid=uid, gid=os.getgid() if uid else 0,
                         size=2 * DIRENT_SIZE, atime=stamp, mtime=stamp, ctime=stamp,
                         zones=[sb.firstdatazone] + [0] * 9)
        root.pack_into(table, 0)
        root_block = bytearray(BLOCK)
        pack_dirent(root_block, 0, ROOT_INO, b".")
        pack_dirent(root_block, 1, ROOT_INO, b"..")
        os.pwrite(fd, bytes(512), 0)
        os.pwrite(fd, sb.pack() + imap + zmap + table, BLOCK)
        os.pwrite(fd, bytes(root_block), sb.firstdatazone * BLOCK)
        os.fsync(fd)
        return sb
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mkfs", description=__doc__.split("\n\n")[0])
    ap.add_argument("image")
    ap.add_argument("blocks", nargs="?", type=int, default=0, help="size in 1 KiB blocks")
    ap.add_argument("-i", "--inodes", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        sb = mkfs(args.image, args.blocks, args.inodes)
    except (OSError, ValueError) as e:
        print(f"mkfs: {e}", file=sys.stderr)
        return 8
    print(f"{sb.ninodes} inodes\n{sb.zones} blocks\nFirstdatazone={sb.firstdatazone} "
          f"({sb.firstdatazone})\nZonesize={BLOCK}\nMaxsize={sb.max_size}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
