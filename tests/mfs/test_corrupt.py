"""Bad images: refused at mount with the reason, or EIO for the one corrupt object; MFS goes on."""
from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from minikern.const import Err
from services.mfs.device import FileDevice
from services.mfs.fs import FileSystem
from services.mfs.layout import BLOCK, FsError, Superblock
from services.mfs.mkfs import geometry, mkfs
from tests.mfs.conftest import fsck

ROOT = 1


def poke(path: Path, offset: int, fmt: str, *values: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, *values))


def refusal(path: Path) -> str:
    with pytest.raises(FsError) as e:
        FileSystem(FileDevice(path), log=lambda text: None)
    assert e.value.code == Err.EINVAL
    return str(e.value)


@pytest.mark.parametrize("offset, fmt, value, reason", [
    (1024 + 24, "<H", 0x138F, "bad magic"),
    (1024 + 28, "<H", 4096, "block size 4096"),
    (1024 + 12, "<H", 1, "log zone size 1"),
    (1024 + 10, "<H", 91, "firstdatazone 91"),
    (1024 + 20, "<I", 4097, "do not fit the device"),
    (1024 + 20, "<I", 999_999, "cannot hold 999909 zones"),
    (1024 + 0, "<I", 0, "empty geometry"),
])
def test_bad_superblocks_are_refused(image: Callable[..., Path], offset: int, fmt: str,
                                     value: int, reason: str) -> None:
    path = image(4 * 1024 * 1024)
    poke(path, offset, fmt, value)
    assert reason in refusal(path)


def test_not_a_file_system_at_all(tmp_path: Path) -> None:
    path = tmp_path / "zeros.img"
    path.write_bytes(bytes(64 * 1024))
    assert "bad magic" in refusal(path)
    tiny = tmp_path / "tiny.img"
    tiny.write_bytes(bytes(1024))
    assert "no superblock" in refusal(tiny)


def corrupt_setup(image: Callable[..., Path]) -> tuple[Path, Superblock, dict[str, int]]:
    path = image(4 * 1024 * 1024)
    fs = FileSystem(FileDevice(path))
    inos = {"file": fs.create(ROOT, "file", 0o644, 0, 0)["ino"],
            "dir": fs.mkdir(ROOT, "dir", 0o755, 0, 0)["ino"],
            "ok": fs.create(ROOT, "ok", 0o644, 0, 0)["ino"]}
    fs.write(inos["file"], 0, b"x" * 3000)
    fs.write(inos["ok"], 0, b"fine")
    sb = fs.sb
    fs.unmount()
    return path, sb, inos


def inode_at(sb: Superblock, ino: int) -> int:
    return sb.itable_start * BLOCK + (ino - 1) * 64


def test_corrupt_objects_give_eio_and_the_rest_works(image: Callable[..., Path]) -> None:
    path, sb, inos = corrupt_setup(image)
    poke(path, inode_at(sb, inos["file"]) + 24, "<I", sb.zones + 5)  # zone out of range
    poke(path, inode_at(sb, inos["dir"]) + 8, "<I", 100)  # directory size not a multiple of 64
    lines: list[str] = []
    fs = FileSystem(FileDevice(path), log=lines.append)
    with pytest.raises(FsError) as e:
        fs.read(inos["file"], 0, 10)
    assert e.value.code == Err.EIO and "zone" in str(e.value)
    with pytest.raises(FsError) as e:
        fs.getdents(inos["dir"], 0, 10)
    assert e.value.code == Err.EIO and "size 100" in str(e.value)
    with pytest.raises(FsError):
        fs.read(inos["file"], 0, 10)
    assert len(lines) == 2  # each corruption logged once
    assert fs.read(inos["ok"], 0, 10) == b"fine"
    fs.unmount()


def test_bad_mode_and_dot_entries(image: Callable[..., Path]) -> None:
    path, sb, inos = corrupt_setup(image)
    poke(path, inode_at(sb, inos["file"]), "<H", 0o170644)  # no such file type
    fs = FileSystem(FileDevice(path), log=lambda text: None)
    dir_zone = fs.zones.bmap(fs.inodes.get(inos["dir"]), 0)
    fs.unmount()
    poke(path, dir_zone * BLOCK + 4, "<2s", b"x\0")  # "." renamed
    fs = FileSystem(FileDevice(path), log=lambda text: None)
    for fn, args in ((fs.stat, (inos["file"],)), (fs.lookup, (inos["dir"], ["a"])),
                     (fs.create, (inos["dir"], "a", 0o644, 0, 0)), (fs.stat, (10**6,))):
        with pytest.raises(FsError) as e:
            fn(*args)  # type: ignore[operator]
        assert e.value.code == Err.EIO
    assert fs.lookup(ROOT, ["ok"])[0] == 1
    fs.unmount()


def test_python_mkfs_matches_mkfs_minix(image: Callable[..., Path], tmp_path: Path) -> None:
    for size in (10 * 1024, 4 * 1024 * 1024, 33 * 1024 * 1024):
        real = image(size, name=f"real{size}.img")
        ours = tmp_path / f"ours{size}.img"
        with ours.open("wb") as f:
            f.truncate(size)
        sb = mkfs(ours)
        assert sb == geometry(size // BLOCK)
        a, b = real.read_bytes(), ours.read_bytes()
        table = sb.itable_start * BLOCK
        assert a[:table] == b[:table]  # boot block, superblock, both maps
        assert a[table:table + 12] == b[table:table + 12]  # root inode up to its times
        assert a[table + 24:] == b[table + 24:]  # zones, the rest of the table, the root block
        assert fsck(ours).returncode == 0
