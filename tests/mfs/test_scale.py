"""Large files, many files, a full disk and crashes, each judged by fsck.minix -f."""
from __future__ import annotations

import hashlib
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from minikern.const import Err
from services.mfs.device import FileDevice
from services.mfs.fs import FileSystem
from services.mfs.layout import FsError
from tests.mfs.conftest import assert_clean, fsck

ROOT = 1
CHUNK = 32 * 1024


def write_all(fs: FileSystem, ino: int, data: bytes) -> None:
    for pos in range(0, len(data), CHUNK):
        assert fs.write(ino, pos, data[pos:pos + CHUNK])[0] == len(data[pos:pos + CHUNK])


def read_all(fs: FileSystem, ino: int) -> bytes:
    out = bytearray()
    while chunk := fs.read(ino, len(out), CHUNK):
        out += chunk
    return bytes(out)


@pytest.mark.timeout(120)
def test_double_indirect_file(image: Callable[..., Path]) -> None:
    path = image(8 * 1024 * 1024)
    fs = FileSystem(FileDevice(path), cache_blocks=300)  # small: eviction writes back
    data = random.Random(1).randbytes(700 * 1024)  # past 263 KiB: double indirect zones
    ino = fs.create(ROOT, "big", 0o644, 0, 0)["ino"]
    free0 = fs.statvfs()["bfree"]
    write_all(fs, ino, data)
    assert fs.statvfs()["bfree"] == free0 - 700 - 1 - 1 - 2  # data, single, double, 2 below it
    fs.unmount()
    assert_clean(path)
    fs = FileSystem(FileDevice(path))
    assert hashlib.sha256(read_all(fs, ino)).digest() == hashlib.sha256(data).digest()
    fs.ftrunc(ino, 300 * 1024 + 5)
    fs.unmount()
    assert_clean(path)
    fs = FileSystem(FileDevice(path))
    assert read_all(fs, ino) == data[:300 * 1024 + 5]
    fs.ftrunc(ino, 0)
    assert fs.stat(ino)["blocks"] == 0
    fs.unmount()
    assert_clean(path)


@pytest.mark.timeout(120)
def test_thousand_small_files(image: Callable[..., Path]) -> None:
    path = image(8 * 1024 * 1024)
    fs = FileSystem(FileDevice(path))
    d = fs.mkdir(ROOT, "many", 0o755, 0, 0)["ino"]
    made = [f"file-{i:04d}" for i in range(1000)]
    for i, name in enumerate(made):
        ino = fs.create(d, name, 0o644, 0, 0)["ino"]
        fs.write(ino, 0, name.encode() * (i % 3))
    listed, pos = [], 0
    while pos != -1:
        entries, pos = fs.getdents(d, pos, 100)
        listed += [n for n, _ in entries]
    assert sorted(listed) == sorted(made + [".", ".."])
    fs.unmount()
    got = fsck(path, "-l")
    assert got.returncode == 0, got.stdout
    assert sorted(got.stdout.splitlines()[1:]) == sorted(["/many:"] + [f"/many/{n}" for n in made])
    fs = FileSystem(FileDevice(path))
    for name in made:
        fs.unlink(d, name)
    fs.rmdir(ROOT, "many")
    fs.unmount()
    assert_clean(path)
    assert fsck(path, "-l").stdout.splitlines()[1:] == []


@pytest.mark.timeout(120)
def test_full_disk_is_enospc_and_stays_clean(image: Callable[..., Path]) -> None:
    path = image(1024 * 1024)
    fs = FileSystem(FileDevice(path))
    ino = fs.create(ROOT, "fill", 0o644, 0, 0)["ino"]
    pos = 0
    with pytest.raises(FsError) as e:
        while True:
            n, _ = fs.write(ino, pos, b"f" * CHUNK)
            pos += n
    assert e.value.code == Err.ENOSPC and fs.statvfs()["bfree"] == 0
    assert fs.stat(ino)["size"] == pos
    with pytest.raises(FsError) as e:
        fs.mkdir(ROOT, "d", 0o755, 0, 0)
    assert e.value.code == Err.ENOSPC
    fs.sync()
    assert_clean(path)
    fs.ftrunc(ino, 0)  # the zones come back (after the write-back the retry makes)
    fs.write(ino, 0, b"again")
    while True:  # and inodes run out too
        try:
            fs.create(ROOT, f"i{fs.statvfs()['ffree']}", 0o644, 0, 0)
        except FsError as e2:
            assert e2.code == Err.ENOSPC
            break
    fs.unmount()
    assert_clean(path)


@pytest.mark.timeout(180)
def test_crash_after_sync_leaves_a_clean_image(image: Callable[..., Path], tmp_path: Path) -> None:
    """Random work; at random points sync, then crash (the cache is dropped unwritten)."""
    path = image(4 * 1024 * 1024)
    rng = random.Random(7)
    for _round in range(6):
        fs = FileSystem(FileDevice(path), cache_blocks=rng.choice([256, 4096]))
        live: list[tuple[int, str]] = [(ROOT, "")]
        for step in range(rng.randrange(20, 80)):
            d, _ = rng.choice(live)
            name = f"n{step}-{rng.randrange(1000)}"
            try:
                op = rng.random()
                if op < 0.3:
                    ino = fs.create(d, name, 0o644, 0, 0)["ino"]
                    fs.write(ino, rng.randrange(0, 300_000), os.urandom(rng.randrange(1, 40_000)))
                elif op < 0.45:
                    live.append((fs.mkdir(d, name, 0o755, 0, 0)["ino"], name))
                else:
                    entries, _ = fs.getdents(d, 2, 256)
                    if entries:
                        victim, vino = rng.choice(entries)
                        if fs.stat(vino)["mode"] & 0o040000:
                            fs.rmdir(d, victim)
                            live = [x for x in live if x[0] != vino]
                        elif op < 0.7:
                            fs.unlink(d, victim)
                        else:
                            fs.ftrunc(vino, rng.randrange(0, 50_000))
            except FsError as e:
                assert e.code in (Err.ENOSPC, Err.ENOTEMPTY, Err.ENOENT)
            if rng.random() < 0.1:
                fs.sync()
        fs.sync()
        for _ in range(rng.randrange(5)):  # work after the last sync is lost in the crash
            fs.create(ROOT, f"lost{rng.randrange(10**6)}", 0o644, 0, 0)
        fs.cache.drop_all()  # the crash: nothing more is written
        fs.dev.close()
        shutil.copy(path, tmp_path / "after-crash.img")
        assert_clean(tmp_path / "after-crash.img")
