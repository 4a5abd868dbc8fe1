"""userland/fusefs.py alone: each FUSE operation becomes the right file call, with the right
flags, and every failure reaches the host as its errno (over an in-memory ``Files``)."""
from __future__ import annotations

import errno
import os
import stat
from typing import Any

import mfusepy
import pytest

from minikern.const import Err
from minikern.ipc import IpcError, KernelGone
from userland import fs
from userland.fs import FsError
from userland.fusefs import SystemFs, system_flags
from tests.userland.fake_files import FakeFiles

pytestmark = pytest.mark.timeout(30)
OWNER = (1234, 5678)


def mounted(root: str = "/") -> tuple[SystemFs, FakeFiles, list[str]]:
    files = FakeFiles()
    lost: list[str] = []
    ops = SystemFs(files, root, owner=OWNER, on_lost=lambda: lost.append("lost"))  # type: ignore[arg-type]
    return ops, files, lost


def errno_of(call: Any, *args: Any) -> int:
    with pytest.raises(OSError) as e:
        call(*args)
    assert isinstance(e.value.errno, int)
    return e.value.errno


def test_host_open_flags_become_the_systems() -> None:
    assert system_flags(os.O_RDONLY) == fs.O_RDONLY
    assert system_flags(os.O_WRONLY | os.O_CREAT | os.O_EXCL) == fs.O_WRONLY | fs.O_CREAT | fs.O_EXCL
    assert system_flags(os.O_RDWR | os.O_TRUNC) == fs.O_RDWR | fs.O_TRUNC
    assert system_flags(os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW) == \
        fs.O_DIRECTORY | fs.O_NOFOLLOW
    # O_APPEND is dropped: every FUSE write carries its own offset
    assert system_flags(os.O_WRONLY | os.O_APPEND) == fs.O_WRONLY


def test_create_write_read_at_offsets_and_release() -> None:
    ops, files, _ = mounted()
    fh = ops.create("/a", stat.S_IFREG | 0o640, os.O_WRONLY | os.O_CREAT)
    assert ops.write("/a", b"world", 6, fh) == 5
    assert ops.write("/a", b"hello ", 0, fh) == 6
    ops.release("/a", fh)
    assert not files.fds  # the system's descriptor is closed
    fh = ops.open("/a", os.O_RDONLY)
    assert ops.read("/a", 5, 6, fh) == b"world"
    assert ops.read("/a", 100, 0, fh) == b"hello world"
    attrs = ops.getattr("/a", fh)
    assert attrs["st_size"] == 11 and stat.S_IMODE(attrs["st_mode"]) == 0o640
    assert (attrs["st_uid"], attrs["st_gid"]) == OWNER  # the mounting user's view
    ops.release("/a", fh)


def test_create_passes_the_permission_bits_and_o_creat() -> None:
    ops, files, _ = mounted()
    fh = ops.create("/x", stat.S_IFREG | 0o600, os.O_RDWR)
    assert files.fds[fh][1] & fs.O_CREAT
    assert stat.S_IMODE(files.root.entries["x"].mode) == 0o600


def test_refusals_pass_as_host_errnos() -> None:
    ops, _, _ = mounted()
    assert errno_of(ops.getattr, "/nope") == errno.ENOENT
    ops.mkdir("/d", 0o755)
    ops.release("/d/f", ops.create("/d/f", 0o644, os.O_WRONLY))
    assert errno_of(ops.rmdir, "/d") == errno.ENOTEMPTY
    assert errno_of(ops.mkdir, "/d", 0o755) == errno.EEXIST
    assert errno_of(ops.mkdir, "/" + "n" * 61, 0o755) == errno.ENAMETOOLONG
    assert errno_of(ops.unlink, "/d") == errno.EPERM
    assert errno_of(ops.read, "/d/f", 1, 0, 99) == errno.EBADF


def test_names_links_and_attributes() -> None:
    ops, files, _ = mounted()
    ops.release("/f", ops.create("/f", 0o644, os.O_WRONLY))
    ops.link("/g", "/f")  # mfusepy's order: the new name first
    assert ops.getattr("/g")["st_nlink"] == 2
    ops.symlink("/s", "f")  # a symlink /s whose content is "f"
    assert ops.readlink("/s") == "f"
    assert stat.S_ISLNK(ops.getattr("/s")["st_mode"])  # lstat: the link itself
    ops.rename("/g", "/h")
    names = [n for n, _, _ in ops.readdir("/", 0)]
    assert sorted(names) == [".", "..", "f", "h", "s"]
    ops.chmod("/f", stat.S_IFREG | 0o4751)
    assert stat.S_IMODE(files.root.entries["f"].mode) == 0o4751
    ops.utimens("/f", (100.5, 200.25))
    a = ops.getattr("/f")
    assert (a["st_atime"], a["st_mtime"]) == (100_500_000_000, 200_250_000_000)  # nanoseconds
    ops.utimens("/f", (None, 300.0))  # UTIME_OMIT for atime: kept
    a = ops.getattr("/f")
    assert (a["st_atime"], a["st_mtime"]) == (100_500_000_000, 300_000_000_000)
    ops.truncate("/f", 10)
    assert ops.getattr("/f")["st_size"] == 10
    fh = ops.open("/f", os.O_RDWR)
    ops.truncate("/f", 3, fh)
    assert files.calls[-1] == "ftruncate"  # by descriptor when FUSE gives one
    ops.fsync("/f", 0, fh)
    ops.release("/f", fh)
    ops.unlink("/h")
    assert ops.statfs("/")["f_namemax"] == 60


def test_chown_only_to_the_mounting_user() -> None:
    ops, _, _ = mounted()
    ops.mkdir("/d", 0o755)
    assert ops.chown("/d", *OWNER) == 0
    assert ops.chown("/d", -1, -1) == 0
    assert errno_of(ops.chown, "/d", 0, -1) == errno.EPERM
    assert errno_of(ops.chown, "/nope", -1, -1) == errno.ENOENT


def test_a_subtree_as_root() -> None:
    ops, files, _ = mounted("/home/")
    files.mkdir("/home")
    ops.mkdir("/sub", 0o755)
    assert "sub" in files.root.entries["home"].entries
    assert ops.getattr("/")["st_ino"] == files.root.entries["home"].ino


def test_ipc_failures_are_eio_and_a_gone_kernel_ends_the_mount_once() -> None:
    ops, files, lost = mounted()
    files.fail_with = IpcError(Err.ECALLDENIED, "sendrec")
    assert errno_of(ops.getattr, "/") == errno.EIO
    assert lost == []
    for _ in range(2):
        files.fail_with = KernelGone()
        assert errno_of(ops.getattr, "/") == errno.EIO
    assert lost == ["lost"]  # told once
    ops.destroy("/")
    assert files.syncs == 0  # no SYNC to a system that is gone


def test_vfs_errors_without_a_host_name_map_to_the_nearest() -> None:
    ops, files, _ = mounted()
    files.fail_with = FsError(Err.EDEADSRCDST, "stat", "/")
    assert errno_of(ops.getattr, "/") == errno.EIO


def test_destroy_syncs_and_swallows_a_failure() -> None:
    ops, files, _ = mounted()
    ops.destroy("/")
    assert files.syncs == 1
    files.fail_with = FsError(Err.EIO, "sync")
    ops.destroy("/")  # no exception escapes into libfuse


def test_init_asks_for_large_requests() -> None:
    ops, _, _ = mounted()
    ready: list[bool] = []
    ops.on_ready = lambda: ready.append(True)
    conn, config = mfusepy.fuse_conn_info(), mfusepy.fuse_config()
    ops.init_with_config(conn, config)
    assert conn.max_write == conn.max_read == conn.max_readahead == 128 * 1024
    assert config.use_ino == 1 and ready == [True]
