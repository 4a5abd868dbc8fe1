"""The buffer cache's rules (services/mfs/cache.py): a bound, batched requests, ordered write-back."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from minikern.const import BDEV_MAX_IO
from services.mfs.cache import BufferCache, Kind
from services.mfs.device import FileDevice
from services.mfs.fs import FileSystem
from tests.mfs.conftest import assert_clean

ROOT = 1
CHUNK = 32 * 1024


class Recorder(FileDevice):
    """A FileDevice that records every request: (op, first block, blocks)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.log: list[tuple[str, int, int]] = []

    def read(self, pos: int, count: int) -> bytes:
        self.log.append(("r", pos // 1024, count // 1024))
        return super().read(pos, count)

    def write(self, pos: int, data: bytes) -> None:
        self.log.append(("w", pos // 1024, len(data) // 1024))
        super().write(pos, data)


def test_sequential_io_is_batched_and_bounded(image: Callable[..., Path]) -> None:
    path = image(16 * 1024 * 1024)
    dev = Recorder(path)
    fs = FileSystem(dev, cache_blocks=512)
    ino = fs.create(ROOT, "seq", 0o644, 0, 0)["ino"]
    data = os.urandom(4 * 1024 * 1024)
    dev.log.clear()
    for pos in range(0, len(data), CHUNK):
        fs.write(ino, pos, data[pos:pos + CHUNK])
        assert len(fs.cache.bufs) <= 512  # the bound holds between requests
    fs.sync()
    writes = [n for op, _, n in dev.log if op == "w"]
    assert max(writes) * 1024 <= BDEV_MAX_IO
    assert sum(writes) >= 4096 and len(writes) <= 4096 // 128 * 2 + 8  # runs, not blocks
    fs.unmount()
    dev = Recorder(path)
    fs = FileSystem(dev, cache_blocks=512)
    dev.log.clear()
    got = b"".join(fs.read(ino, pos, CHUNK) for pos in range(0, len(data), CHUNK))
    assert got == data
    reads = [n for op, _, n in dev.log if op == "r"]
    assert max(reads) * 1024 <= BDEV_MAX_IO and len(reads) <= 4096 // 128 * 3 + 8
    fs.unmount()
    assert_clean(path)


def test_eviction_of_metadata_writes_back_in_order(image: Callable[..., Path]) -> None:
    path = image(4 * 1024 * 1024)
    dev = Recorder(path)
    fs = FileSystem(dev, cache_blocks=256)
    d = fs.mkdir(ROOT, "d", 0o755, 0, 0)["ino"]
    dir_zone = fs.zones.bmap(fs.inodes.get(d), 0)
    dev.log.clear()
    for i in range(300):  # data pushes dirty inode and directory blocks out of the cache
        ino = fs.create(d, f"f{i}", 0o644, 0, 0)["ino"]
        fs.write(ino, 0, bytes(2048))
    sb = fs.sb
    kinds = []
    for op, block, n in dev.log:
        if op != "w":
            continue
        if block < sb.itable_start:
            kinds.append("map")
        elif block < sb.firstdatazone:
            kinds.append("inode")
        elif block <= dir_zone < block + n:
            kinds.append("dir")
        else:
            kinds.append("data")
    assert "dir" in kinds  # eviction wrote before any sync
    first_dir = kinds.index("dir")
    assert kinds.index("data") < kinds.index("map") < kinds.index("inode") < first_dir
    fs.cache.drop_all()  # a crash right after an eviction write-back
    fs.dev.close()
    assert len(fs.cache.bufs) == 0


def test_lru_keeps_recent_blocks(tmp_path: Path) -> None:
    path = tmp_path / "raw.img"
    path.write_bytes(bytes(1024 * 1024))
    dev = Recorder(path)
    dev.open()
    cache = BufferCache(dev, 256)
    for b in range(300):
        cache.get(b)
    cache.get(0)  # recently used again
    cache.trim()
    assert len(cache.bufs) == 256 and 0 in cache.bufs and 1 not in cache.bufs
    buf = cache.get(5, Kind.INODE)
    buf.data[0] = 7
    cache.mark_dirty(buf)
    order: list[str] = []
    cache.write_back = lambda: order.append("ordered")  # what FileSystem installs
    for b in range(300, 600):
        cache.get(b)
    cache.trim()
    assert order  # a dirty INODE buffer reached the LRU end: the ordered write-back ran
    dev.close()


def test_dirty_blocks_age_out(mounted: tuple[FileSystem, Path]) -> None:
    fs, _ = mounted
    assert not fs.due(now=1e12)
    fs.create(ROOT, "x", 0o644, 0, 0)
    since = fs.cache.dirty_since
    assert since is not None
    assert not fs.due(since + 0.5, age=2.0) and fs.due(since + 2.0, age=2.0)
    fs.sync()
    assert not fs.dirty() and not fs.due(since + 100)


@pytest.mark.parametrize("have_tool", [True, False])
def test_board_formats_only_a_new_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       have_tool: bool) -> None:
    from hw import board
    if not have_tool:
        monkeypatch.setattr(board.hosttools, "find", lambda name: None)
    monkeypatch.setattr(board, "DISK_SIZE", 2 * 1024 * 1024)
    disk = tmp_path / "disk.img"
    board.make_disk(disk)
    fs = FileSystem(FileDevice(disk))
    fs.create(ROOT, "kept", 0o644, 0, 0)
    fs.unmount()
    before = disk.read_bytes()
    board.make_disk(disk)  # exists: untouched
    assert disk.read_bytes() == before
    assert_clean(disk)
