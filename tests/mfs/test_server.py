"""The MFS server's dispatch (services/mfs/main.py) on an image file: only vfs, every field checked."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from minikern.const import FS_MAX_IO, Err, FsReq
from minikern.proto import Message
from services.mfs.device import FileDevice
from services.mfs.main import Mfs
from tests.mfs.conftest import assert_clean

VFS, OTHER = 40, 41


@pytest.fixture
def server(image: Callable[..., Path]) -> tuple[Mfs, Path]:
    path = image(4 * 1024 * 1024)
    mfs = Mfs(devices=lambda driver, minor, ro: FileDevice(path, readonly=ro),
              is_vfs=lambda ep: ep == VFS)
    return mfs, path


def ask(mfs: Mfs, req: FsReq, source: int = VFS, **fields: object) -> Message:
    reply = mfs.table()[req](Message(req, dict(fields), source=source))
    assert reply is not None
    return reply


def test_requests_round_trip(server: tuple[Mfs, Path]) -> None:
    mfs, path = server
    assert ask(mfs, FsReq.STAT, ino=1).type == Err.EINVAL  # nothing mounted
    r = ask(mfs, FsReq.READSUPER, driver="at_wini", minor=0, readonly=False)
    assert r.type == Err.OK and r["root"]["ino"] == 1 and r["statvfs"]["namemax"] == 60
    assert ask(mfs, FsReq.READSUPER, driver="at_wini", minor=0, readonly=False).type == Err.EBUSY
    st = ask(mfs, FsReq.CREATE, dir=1, name="f", mode=0o644, uid=0, gid=0)["stat"]
    assert ask(mfs, FsReq.WRITE, ino=st["ino"], pos=0, data=b"abc").fields == {"count": 3, "size": 3}
    assert ask(mfs, FsReq.READ, ino=st["ino"], pos=1, count=10)["data"] == b"bc"
    r = ask(mfs, FsReq.LOOKUP, dir=1, names=["f"], stop_at=[])
    assert r["done"] == 1 and r["stat"]["ino"] == st["ino"]
    assert ask(mfs, FsReq.GETDENTS, ino=1, pos=0, max=10).fields == {
        "entries": [[".", 1], ["..", 1], ["f", st["ino"]]], "next": -1}
    r = ask(mfs, FsReq.LOOKUP, dir=1, names=["nope"], stop_at=[])
    assert r.type == Err.ENOENT and r["error"]
    assert ask(mfs, FsReq.SYNC).type == Err.OK
    assert ask(mfs, FsReq.UNMOUNT).type == Err.OK
    assert_clean(path)


def test_only_vfs_and_only_well_formed_fields(server: tuple[Mfs, Path]) -> None:
    mfs, _ = server
    assert ask(mfs, FsReq.READSUPER, source=OTHER, driver="x", minor=0).type == Err.EPERM
    ask(mfs, FsReq.READSUPER, driver="at_wini", minor=0, readonly=False)
    bad: list[tuple[FsReq, dict[str, object]]] = [
        (FsReq.STAT, {"ino": "1"}), (FsReq.STAT, {"ino": 0}), (FsReq.STAT, {"ino": 10**9}),
        (FsReq.STAT, {"ino": True}), (FsReq.READ, {"ino": 1, "pos": -1, "count": 1}),
        (FsReq.READ, {"ino": 1, "pos": 0, "count": FS_MAX_IO + 1}),
        (FsReq.WRITE, {"ino": 1, "pos": 0, "data": "text"}),
        (FsReq.WRITE, {"ino": 1, "pos": 0, "data": bytes(FS_MAX_IO + 1)}),
        (FsReq.LOOKUP, {"dir": 1, "names": []}), (FsReq.LOOKUP, {"dir": 1, "names": [1]}),
        (FsReq.CREATE, {"dir": 1, "name": "x", "mode": -1, "uid": 0, "gid": 0}),
        (FsReq.GETDENTS, {"ino": 1, "pos": 0, "max": 0}), (FsReq.PUTNODE, {"ino": 1, "count": 0}),
        (FsReq.UTIME, {"ino": 1, "atime": "now", "mtime": 0}),
        (FsReq.READSUPER, {"driver": 5, "minor": 0}),
    ]
    for req, fields in bad:
        assert ask(mfs, req, **fields).type == Err.EINVAL, (req, fields)
    assert sum(n for k, n in mfs.counts.items() if "EINVAL" in k) == len(bad)
    assert ask(mfs, FsReq.STAT, ino=1).type == Err.OK  # still serving


def test_unforeseen_exception_fails_one_request(server: tuple[Mfs, Path]) -> None:
    mfs, _ = server
    ask(mfs, FsReq.READSUPER, driver="at_wini", minor=0, readonly=False)
    assert mfs.fs is not None
    mfs.fs.inodes = None  # type: ignore[assignment]  # a planted bug
    assert ask(mfs, FsReq.STAT, ino=1).type == Err.EIO
    assert any(k.startswith("failed STAT") for k in mfs.counts)


def test_a_bad_image_is_refused_and_the_server_stays(server: tuple[Mfs, Path]) -> None:
    mfs, path = server
    with path.open("r+b") as f:
        f.seek(1024 + 24)
        f.write(b"\0\0")
    r = ask(mfs, FsReq.READSUPER, driver="at_wini", minor=0, readonly=False)
    assert r.type == Err.EINVAL and "bad magic" in r["error"] and mfs.fs is None
