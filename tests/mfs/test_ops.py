"""FileSystem requests (PROTOCOL.md 20): results, link counts and MINIX error names, by fsck.minix."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from minikern.const import Err
from services.mfs.device import FileDevice
from services.mfs.fs import FileSystem
from services.mfs.layout import FsError
from tests.mfs.conftest import assert_clean, fsck

Mounted = tuple[FileSystem, Path]
ROOT = 1


def code(fn: object, *args: object) -> Err:
    with pytest.raises(FsError) as e:
        fn(*args)  # type: ignore[operator]
    return e.value.code


def names(fs: FileSystem, ino: int) -> list[str]:
    entries, nxt = fs.getdents(ino, 0, 256)
    assert nxt == -1
    return [n for n, _ in entries]


def test_create_write_read_stat(mounted: Mounted) -> None:
    fs, path = mounted
    st = fs.create(ROOT, "hello.txt", 0o640, 1000, 100)
    assert stat.S_ISREG(st["mode"]) and st["mode"] & 0o7777 == 0o640
    assert (st["nlinks"], st["uid"], st["gid"], st["size"], st["blocks"]) == (1, 1000, 100, 0, 0)
    assert fs.write(st["ino"], 0, b"hello, world") == (12, 12)
    assert fs.read(st["ino"], 7, 100) == b"world"
    assert fs.read(st["ino"], 12, 10) == b""
    assert fs.stat(st["ino"])["blocks"] == 2  # one 1 KiB zone = two 512-byte units
    assert fs.lookup(ROOT, ["hello.txt"])[1]["ino"] == st["ino"]
    assert code(fs.create, ROOT, "hello.txt", 0o644, 0, 0) == Err.EEXIST
    fs.unmount()
    assert fsck(path, "-l").stdout.splitlines()[1:] == ["/hello.txt"]
    fs2 = FileSystem(FileDevice(path))
    assert fs2.read(fs2.lookup(ROOT, ["hello.txt"])[1]["ino"], 0, 100) == b"hello, world"
    fs2.unmount()


def test_holes_read_as_zeros_and_take_no_space(mounted: Mounted) -> None:
    fs, path = mounted
    ino = fs.create(ROOT, "sparse", 0o644, 0, 0)["ino"]
    fs.write(ino, 100_000, b"x")
    assert fs.read(ino, 0, 10) == bytes(10)
    assert fs.read(ino, 99_999, 5) == b"\0x"
    st = fs.stat(ino)
    assert st["size"] == 100_001 and st["blocks"] == 4  # the data zone and one indirect block
    fs.unmount()
    assert_clean(path)


def test_truncate_shrinks_frees_and_zeroes_the_tail(mounted: Mounted) -> None:
    fs, path = mounted
    ino = fs.create(ROOT, "t", 0o644, 0, 0)["ino"]
    free0 = fs.statvfs()["bfree"]
    fs.write(ino, 0, b"a" * 20_000)
    assert fs.statvfs()["bfree"] == free0 - 21  # 20 data zones and an indirect block
    fs.ftrunc(ino, 1500)
    fs.ftrunc(ino, 3000)
    assert fs.read(ino, 0, 3000) == b"a" * 1500 + bytes(1500)
    fs.sync()
    assert fs.statvfs()["bfree"] == free0 - 2
    assert code(fs.ftrunc, ROOT, 0) == Err.EISDIR
    assert code(fs.ftrunc, ino, 2**31) == Err.EFBIG
    fs.unmount()
    assert_clean(path)


def test_mkdir_rmdir_and_link_counts(mounted: Mounted) -> None:
    fs, path = mounted
    d = fs.mkdir(ROOT, "d", 0o755, 0, 0)
    assert stat.S_ISDIR(d["mode"]) and d["nlinks"] == 2 and d["size"] == 128
    assert fs.stat(ROOT)["nlinks"] == 3
    fs.mkdir(d["ino"], "e", 0o755, 0, 0)
    assert fs.stat(d["ino"])["nlinks"] == 3
    assert fs.lookup(d["ino"], ["e", "..", ".."])[1]["ino"] == ROOT
    assert code(fs.rmdir, ROOT, "d") == Err.ENOTEMPTY
    assert code(fs.rmdir, d["ino"], ".") == Err.EINVAL
    assert code(fs.rmdir, d["ino"], "..") == Err.EINVAL
    assert code(fs.unlink, ROOT, "d") == Err.EPERM
    f = fs.create(d["ino"], "f", 0o644, 0, 0)
    assert code(fs.rmdir, d["ino"], "f") == Err.ENOTDIR
    assert code(fs.mkdir, f["ino"], "x", 0o755, 0, 0) == Err.ENOTDIR
    assert code(fs.lookup, ROOT, ["d", "f", "x"]) == Err.ENOTDIR
    fs.sync()
    assert_clean(path)
    fs.rmdir(d["ino"], "e")
    fs.unlink(d["ino"], "f")
    fs.rmdir(ROOT, "d")
    assert fs.stat(ROOT)["nlinks"] == 2 and names(fs, ROOT) == [".", ".."]
    assert code(fs.lookup, ROOT, ["d"]) == Err.ENOENT
    fs.unmount()
    assert_clean(path)


def test_hard_links(mounted: Mounted) -> None:
    fs, path = mounted
    a = fs.create(ROOT, "a", 0o644, 0, 0)["ino"]
    d = fs.mkdir(ROOT, "d", 0o755, 0, 0)["ino"]
    fs.link(a, d, "b")
    fs.link(a, ROOT, "c")
    assert fs.stat(a)["nlinks"] == 3
    assert code(fs.link, a, ROOT, "c") == Err.EEXIST
    assert code(fs.link, d, ROOT, "dd") == Err.EPERM
    fs.sync()
    assert_clean(path)
    fs.unlink(ROOT, "a")
    fs.unlink(d, "b")
    assert fs.stat(a)["nlinks"] == 1
    fs.inodes.get(a).nlinks = 32767  # MINIX's LINK_MAX (set in memory only)
    assert code(fs.link, a, ROOT, "z") == Err.EMLINK
    fs.inodes.get(a).nlinks = 1


def test_symlinks(mounted: Mounted) -> None:
    fs, path = mounted
    s = fs.slink(ROOT, "s", "a/b/../c", 0, 0)
    assert stat.S_ISLNK(s["mode"]) and s["size"] == 8
    assert fs.rdlink(s["ino"]) == "a/b/../c"
    d = fs.mkdir(ROOT, "d", 0o755, 0, 0)["ino"]
    assert fs.lookup(ROOT, ["s", "x"]) == (1, fs.stat(s["ino"]))  # stops after a symlink
    assert fs.lookup(ROOT, ["d", "."], frozenset({d}))[0] == 1  # stops at a mount point
    assert code(fs.rdlink, ROOT) == Err.EINVAL
    assert code(fs.slink, ROOT, "long", "x" * 1024, 0, 0) == Err.ENAMETOOLONG
    fs.unmount()
    assert_clean(path)


def test_names(mounted: Mounted) -> None:
    fs, path = mounted
    fs.create(ROOT, "n" * 60, 0o644, 0, 0)
    assert code(fs.create, ROOT, "n" * 61, 0o644, 0, 0) == Err.ENAMETOOLONG
    assert code(fs.mkdir, ROOT, "é" * 31, 0o755, 0, 0) == Err.ENAMETOOLONG  # 62 bytes
    assert code(fs.create, ROOT, "a/b", 0o644, 0, 0) == Err.EINVAL
    assert code(fs.create, ROOT, "", 0o644, 0, 0) == Err.EINVAL
    assert code(fs.lookup, ROOT, ["n" * 59]) == Err.ENOENT  # a prefix is not a match
    assert fs.lookup(ROOT, ["n" * 60])[0] == 1
    fs.unmount()
    listed = fsck(path, "-l").stdout.splitlines()[1:]
    assert len(listed) == 1 and listed[0].startswith("/" + "n" * 59), listed  # fsck prints 59


def test_rename(mounted: Mounted) -> None:
    fs, path = mounted
    a = fs.mkdir(ROOT, "a", 0o755, 0, 0)["ino"]
    b = fs.mkdir(ROOT, "b", 0o755, 0, 0)["ino"]
    sub = fs.mkdir(a, "sub", 0o755, 0, 0)["ino"]
    f = fs.create(sub, "f", 0o644, 0, 0)["ino"]
    assert fs.stat(a)["nlinks"] == 3 and fs.stat(b)["nlinks"] == 2
    fs.rename(a, "sub", b, "moved")
    assert fs.stat(a)["nlinks"] == 2 and fs.stat(b)["nlinks"] == 3
    assert fs.lookup(sub, [".."])[1]["ino"] == b
    assert fs.lookup(ROOT, ["b", "moved", "f"])[1]["ino"] == f
    assert code(fs.rename, ROOT, "b", sub, "x") == Err.EINVAL  # below itself
    assert code(fs.rename, ROOT, "b", b, "x") == Err.EINVAL
    assert code(fs.rename, ROOT, "nope", ROOT, "x") == Err.ENOENT
    assert code(fs.rename, sub, "f", ROOT, "a") == Err.EISDIR
    assert code(fs.rename, ROOT, "a", sub, "f") == Err.ENOTDIR
    assert code(fs.rename, ROOT, "a", ROOT, "b") == Err.ENOTEMPTY
    fs.sync()
    assert_clean(path)
    g = fs.create(ROOT, "g", 0o644, 0, 0)["ino"]
    fs.rename(sub, "f", ROOT, "g")  # replaces a file: g's inode is freed
    assert fs.lookup(ROOT, ["g"])[1]["ino"] == f
    assert code(fs.stat, g) == Err.EIO  # freed: a cleared inode is no file
    fs.mkdir(ROOT, "empty", 0o755, 0, 0)
    fs.rename(b, "moved", ROOT, "empty")  # replaces an empty directory
    assert fs.stat(ROOT)["nlinks"] == 2 + len([n for n in names(fs, ROOT) if n not in (".", "..")
                                               and stat.S_ISDIR(fs.lookup(ROOT, [n])[1]["mode"])])
    fs.rename(ROOT, "g", ROOT, "g2")
    assert "g2" in names(fs, ROOT) and "g" not in names(fs, ROOT)
    fs.unmount()
    assert_clean(path)


def test_unlinked_open_file_lives_until_its_last_putnode(mounted: Mounted) -> None:
    fs, path = mounted
    ino = fs.create(ROOT, "open", 0o644, 0, 0)["ino"]
    fs.write(ino, 0, b"z" * 5000)
    fs.getnode(ino)
    free = fs.statvfs()["ffree"]
    fs.unlink(ROOT, "open")
    assert fs.read(ino, 0, 3) == b"zzz" and fs.statvfs()["ffree"] == free
    fs.putnode(ino, 1)
    assert fs.statvfs()["ffree"] == free + 1
    assert code(fs.putnode, ino, 1) == Err.EINVAL
    fs.unmount()
    assert_clean(path)


def test_readonly_mount(image: object) -> None:
    path = image()  # type: ignore[operator]
    fs = FileSystem(FileDevice(path, readonly=True), readonly=True)
    assert code(fs.create, ROOT, "x", 0o644, 0, 0) == Err.EROFS
    assert names(fs, ROOT) == [".", ".."]
    fs.unmount()
    assert_clean(path)
