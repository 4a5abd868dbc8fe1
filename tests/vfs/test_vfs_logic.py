"""VFS's logic in the test's process against fake file servers (tests/vfs/fakefs.py):
descriptors, open flags, path lookup (symlinks, "..", mounts), references given back to the
file servers, one request at a time per file server, and bad requests (PROTOCOL.md 20, 21)."""
from __future__ import annotations

import stat as S
from collections.abc import Callable

import pytest

from minikern.proto import Message
from minikern.const import (FS_MAX_IO, NAME_MAX, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL,
                            O_NOFOLLOW, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, OPEN_MAX,
                            SYMLOOP_MAX, Err, VfsReq)
from services.vfs.server import Vfs
from services.vfs.tables import FIRST_FD
from tests.vfs.fakefs import Harness

P, Q = 11, 12  # two user processes
OP = 1  # an operator process

pytestmark = pytest.mark.timeout(30)


def write_file(h: Harness, path: str, data: bytes, who: int = P) -> None:
    fd = h.ok(who, VfsReq.OPEN, path=path, flags=O_WRONLY | O_CREAT | O_TRUNC, mode=0o644)["fd"]
    assert h.ok(who, VfsReq.WRITE, fd=fd, data=data)["count"] == len(data)
    h.ok(who, VfsReq.CLOSE, fd=fd)


def read_file(h: Harness, path: str, who: int = P) -> bytes:
    fd = h.ok(who, VfsReq.OPEN, path=path, flags=O_RDONLY, mode=0)["fd"]
    data = h.ok(who, VfsReq.READ, fd=fd, count=FS_MAX_IO)["data"]
    h.ok(who, VfsReq.CLOSE, fd=fd)
    return bytes(data)


def refs(h: Harness, label: str = "mfs") -> int:
    return sum(i.refs for i in h.servers[label].inodes.values())


def test_root_is_mounted_and_files_round_trip() -> None:
    h = Harness()
    assert h.mounted == [(Err.OK, "")]
    write_file(h, "/a.txt", b"hello")
    assert read_file(h, "/a.txt") == b"hello"
    st = h.ok(P, VfsReq.STAT, path="/a.txt", follow=True)["stat"]
    assert st["size"] == 5 and S.S_ISREG(st["mode"]) and st["mode"] & 0o777 == 0o644
    assert refs(h) == 0, "every GETNODE was given back with PUTNODE"


def test_descriptors_offsets_pread_pwrite_and_lseek() -> None:
    h = Harness()
    fd = h.ok(P, VfsReq.OPEN, path="/f", flags=O_RDWR | O_CREAT, mode=0o600)["fd"]
    assert fd == FIRST_FD
    h.ok(P, VfsReq.WRITE, fd=fd, data=b"0123456789")
    assert h.ok(P, VfsReq.LSEEK, fd=fd, offset=0, whence=1)["pos"] == 10
    assert h.ok(P, VfsReq.READ, fd=fd, count=4, pos=2)["data"] == b"2345"
    assert h.ok(P, VfsReq.LSEEK, fd=fd, offset=-3, whence=2)["pos"] == 7
    assert h.ok(P, VfsReq.READ, fd=fd, count=100)["data"] == b"789"
    assert h.ok(P, VfsReq.READ, fd=fd, count=100)["data"] == b""
    h.ok(P, VfsReq.WRITE, fd=fd, data=b"AB", pos=0)
    assert h.ok(P, VfsReq.LSEEK, fd=fd, offset=0, whence=1)["pos"] == 10, "pwrite kept it"
    assert h.err(P, VfsReq.LSEEK, fd=fd, offset=-1, whence=0) == Err.EINVAL
    assert h.ok(P, VfsReq.FSTAT, fd=fd)["stat"]["size"] == 10
    assert h.err(Q, VfsReq.READ, fd=fd, count=1) == Err.EBADF, "another process's fd"
    h.ok(P, VfsReq.CLOSE, fd=fd)
    assert h.err(P, VfsReq.CLOSE, fd=fd) == Err.EBADF
    assert read_file(h, "/f") == b"AB23456789"


def test_open_flags() -> None:
    h = Harness()
    write_file(h, "/f", b"abc")
    assert h.err(P, VfsReq.OPEN, path="/f", flags=O_WRONLY | O_CREAT | O_EXCL,
                 mode=0o644) == Err.EEXIST
    assert h.err(P, VfsReq.OPEN, path="/nope", flags=O_RDONLY, mode=0) == Err.ENOENT
    assert h.err(P, VfsReq.OPEN, path="/f", flags=O_RDONLY | O_DIRECTORY, mode=0) == Err.ENOTDIR
    h.ok(P, VfsReq.MKDIR, path="/d", mode=0o755)
    assert h.err(P, VfsReq.OPEN, path="/d", flags=O_WRONLY, mode=0) == Err.EISDIR
    ro = h.ok(P, VfsReq.OPEN, path="/f", flags=O_RDONLY, mode=0)["fd"]
    assert h.err(P, VfsReq.WRITE, fd=ro, data=b"x") == Err.EBADF
    assert h.err(P, VfsReq.TRUNCATE, fd=ro, size=0) == Err.EBADF
    wo = h.ok(P, VfsReq.OPEN, path="/f", flags=O_WRONLY | O_APPEND, mode=0)["fd"]
    assert h.err(P, VfsReq.READ, fd=wo, count=1) == Err.EBADF
    h.ok(P, VfsReq.WRITE, fd=wo, data=b"de")
    write_file(h, "/g", b"")  # another writer in between: O_APPEND still ends up at the end
    h.ok(P, VfsReq.WRITE, fd=wo, data=b"f")
    assert read_file(h, "/f") == b"abcdef"
    h.ok(P, VfsReq.OPEN, path="/f", flags=O_WRONLY | O_TRUNC, mode=0)
    assert read_file(h, "/f") == b""
    assert h.err(P, VfsReq.OPEN, path="/f", flags=3, mode=0) == Err.EINVAL


def test_paths_relative_dotdot_and_chdir() -> None:
    h = Harness()
    h.ok(P, VfsReq.MKDIR, path="/a", mode=0o755)
    h.ok(P, VfsReq.MKDIR, path="/a/b", mode=0o755)
    write_file(h, "/a/b/f", b"x")
    h.ok(P, VfsReq.CHDIR, path="/a/b")
    assert read_file(h, "f") == b"x"
    assert read_file(h, "../b/./f") == b"x"
    assert read_file(h, "/../../a//b/f") == b"x", "the root's .. is the root"
    assert h.err(P, VfsReq.CHDIR, path="f") == Err.ENOTDIR
    assert h.err(P, VfsReq.STAT, path="f/", follow=True) == Err.ENOTDIR
    assert h.err(P, VfsReq.STAT, path="f/x", follow=True) == Err.ENOTDIR
    assert read_file(h, "/a/b/f", who=Q) == b"x", "Q's cwd is still the root"
    assert h.err(P, VfsReq.STAT, path="", follow=True) == Err.ENOENT
    long = "n" * (NAME_MAX + 1)
    assert h.err(P, VfsReq.MKDIR, path="/" + long, mode=0o755) == Err.ENAMETOOLONG
    assert h.err(P, VfsReq.STAT, path="/x" * 600, follow=True) == Err.ENAMETOOLONG


def test_symlinks() -> None:
    h = Harness()
    h.ok(P, VfsReq.MKDIR, path="/d", mode=0o755)
    write_file(h, "/d/f", b"data")
    h.ok(P, VfsReq.SYMLINK, target="d/f", path="/rel")
    h.ok(P, VfsReq.SYMLINK, target="/d", path="/d/abs")
    h.ok(P, VfsReq.SYMLINK, target="../d/f", path="/d/up")
    assert read_file(h, "/rel") == b"data"
    assert read_file(h, "/d/abs/abs/abs/f") == b"data"
    assert read_file(h, "/d/up") == b"data"
    assert h.ok(P, VfsReq.READLINK, path="/rel")["target"] == "d/f"
    assert h.err(P, VfsReq.READLINK, path="/d/f") == Err.EINVAL
    assert S.S_ISLNK(h.ok(P, VfsReq.STAT, path="/rel", follow=False)["stat"]["mode"])
    assert S.S_ISREG(h.ok(P, VfsReq.STAT, path="/rel", follow=True)["stat"]["mode"])
    assert h.err(P, VfsReq.OPEN, path="/rel", flags=O_NOFOLLOW, mode=0) == Err.ELOOP
    h.ok(P, VfsReq.SYMLINK, target="/loop", path="/loop")
    assert h.err(P, VfsReq.STAT, path="/loop", follow=True) == Err.ELOOP
    chain = "/d" + "/abs" * SYMLOOP_MAX + "/f"
    assert read_file(h, chain) == b"data", "SYMLOOP_MAX links are followed"
    assert h.err(P, VfsReq.STAT, path=chain.replace("/f", "/abs/f"), follow=True) == Err.ELOOP
    h.ok(P, VfsReq.SYMLINK, target="nowhere", path="/dangling")
    assert h.err(P, VfsReq.STAT, path="/dangling", follow=True) == Err.ENOENT


def test_directories_listing_and_namespace_calls() -> None:
    h = Harness()
    h.ok(P, VfsReq.MKDIR, path="/d", mode=0o755)
    for n in range(300):
        write_file(h, f"/d/f{n}", b"")
    fd = h.ok(P, VfsReq.OPEN, path="/d", flags=O_RDONLY | O_DIRECTORY, mode=0)["fd"]
    names: list[str] = []
    while entries := h.ok(P, VfsReq.GETDENTS, fd=fd, max=256)["entries"]:
        names += [e[0] for e in entries]
    assert sorted(names) == sorted([".", ".."] + [f"f{n}" for n in range(300)])
    h.ok(P, VfsReq.LSEEK, fd=fd, offset=0, whence=0)
    assert h.ok(P, VfsReq.GETDENTS, fd=fd, max=2)["entries"], "rewound"
    h.ok(P, VfsReq.CLOSE, fd=fd)
    assert h.err(P, VfsReq.RMDIR, path="/d") == Err.ENOTEMPTY
    assert h.err(P, VfsReq.UNLINK, path="/d") == Err.EPERM
    h.ok(P, VfsReq.RENAME, old="/d/f1", new="/d/g1")
    h.ok(P, VfsReq.LINK, old="/d/g1", new="/h1")
    assert h.ok(P, VfsReq.STAT, path="/h1", follow=True)["stat"]["nlinks"] == 2
    h.ok(P, VfsReq.UNLINK, path="/d/g1")
    h.ok(P, VfsReq.CHMOD, path="/h1", mode=0o600)
    h.ok(P, VfsReq.UTIMES, path="/h1", atime=1.5, mtime=2)
    st = h.ok(P, VfsReq.STAT, path="/h1", follow=True)["stat"]
    assert (st["mode"] & 0o7777, st["mtime"], st["nlinks"]) == (0o600, 2, 1)
    h.ok(P, VfsReq.TRUNCATE, path="/h1", size=5)
    assert h.ok(P, VfsReq.STAT, path="/h1", follow=True)["stat"]["size"] == 5
    assert h.err(P, VfsReq.MKDIR, path="/", mode=0o755) == Err.EEXIST
    assert h.err(P, VfsReq.RMDIR, path="/") == Err.EBUSY
    assert h.ok(P, VfsReq.STATVFS, path="/")["namemax"] == NAME_MAX
    h.ok(P, VfsReq.SYNC)


def test_an_unlinked_open_file_lives_until_closed() -> None:
    h = Harness()
    write_file(h, "/f", b"keep")
    fd = h.ok(P, VfsReq.OPEN, path="/f", flags=O_RDONLY, mode=0)["fd"]
    h.ok(Q, VfsReq.UNLINK, path="/f")
    assert h.ok(P, VfsReq.READ, fd=fd, count=10)["data"] == b"keep"
    n = len(h.servers["mfs"].inodes)
    h.ok(P, VfsReq.CLOSE, fd=fd)
    assert len(h.servers["mfs"].inodes) == n - 1, "PUTNODE freed it"


def test_mounts_cross_and_refuse() -> None:
    h = Harness(("mfs", "mfs2"))
    h.ok(P, VfsReq.MKDIR, path="/mnt", mode=0o755)
    assert h.err(P, VfsReq.MOUNT, path="/mnt", driver="d", minor=1, fs="mfs2",
                 readonly=False) == Err.EPERM
    h.ok(OP, VfsReq.MOUNT, path="/mnt", driver="d", minor=1, fs="mfs2", readonly=False)
    assert h.err(OP, VfsReq.MOUNT, path="/mnt", driver="d", minor=1, fs="mfs2",
                 readonly=False) == Err.EBUSY
    write_file(h, "/mnt/inner", b"on mfs2")
    assert 1 in {i for i in h.servers["mfs2"].inodes} and len(h.servers["mfs2"].inodes) == 2
    assert read_file(h, "/mnt/../mnt/inner") == b"on mfs2"
    h.ok(P, VfsReq.CHDIR, path="/mnt")
    write_file(h, "../outer", b"on mfs")
    assert len(h.servers["mfs"].inodes[1].entries) == 4  # . .. mnt outer
    assert h.err(P, VfsReq.RENAME, old="/mnt/inner", new="/x") == Err.EXDEV
    assert h.err(P, VfsReq.LINK, old="/mnt/inner", new="/x") == Err.EXDEV
    assert h.err(P, VfsReq.RMDIR, path="/mnt") == Err.EBUSY
    assert h.err(P, VfsReq.RENAME, old="/mnt", new="/m2") == Err.EBUSY
    assert h.err(OP, VfsReq.UMOUNT, path="/mnt") == Err.EBUSY, "P's cwd is on it"
    h.ok(P, VfsReq.CHDIR, path="/")
    fd = h.ok(Q, VfsReq.OPEN, path="/mnt/inner", flags=O_RDONLY, mode=0)["fd"]
    assert h.err(OP, VfsReq.UMOUNT, path="/mnt") == Err.EBUSY, "Q has a file open on it"
    h.ok(Q, VfsReq.CLOSE, fd=fd)
    assert h.err(OP, VfsReq.UMOUNT, path="/") == Err.EBUSY
    assert h.err(OP, VfsReq.UMOUNT, path="/outer") == Err.EINVAL
    h.ok(OP, VfsReq.UMOUNT, path="/mnt")
    assert not h.servers["mfs2"].mounted
    assert h.err(P, VfsReq.STAT, path="/mnt/inner", follow=True) == Err.ENOENT
    assert refs(h) == 0 and refs(h, "mfs2") == 0


def test_a_slow_file_server_holds_only_its_own_callers() -> None:
    h = Harness(("mfs", "mfs2"))
    h.ok(P, VfsReq.MKDIR, path="/mnt", mode=0o755)
    h.ok(OP, VfsReq.MOUNT, path="/mnt", driver="d", minor=1, fs="mfs2", readonly=False)
    write_file(h, "/mnt/slow", b"s")
    h.held.add(h.servers["mfs2"].endpoint)
    slow = [h.start(100 + n, VfsReq.STAT, path="/mnt/slow", follow=True) for n in range(5)]
    h.run()
    assert all(h.result(m) is None for m in slow), "they wait for mfs2"
    for n in range(20):  # meanwhile others are served by the root's file server
        write_file(h, f"/fast{n}", b"f", who=200 + n)
    assert max(h.max_in_flight.values()) == 1, "one request at a time per file server"
    assert sum(1 for fs, _, _ in h.in_flight if fs is h.servers["mfs2"]) == 1
    h.held.clear()
    h.run()
    assert all(h.result(m).type == Err.OK for m in slow)  # type: ignore[union-attr]


def test_dead_processes_lose_their_files() -> None:
    h = Harness()
    write_file(h, "/f", b"x")
    for _ in range(3):
        h.ok(P, VfsReq.OPEN, path="/f", flags=O_RDONLY, mode=0)
    h.ok(P, VfsReq.CHDIR, path="/")
    h.ok(Q, VfsReq.OPEN, path="/f", flags=O_RDONLY, mode=0)
    assert refs(h) == 1
    h.vfs.sweep({Q})
    assert P not in h.vfs.st.procs and refs(h) == 1, "Q's file is open still"
    h.dead.add(Q)  # Q dies while its request is in flight: the failed answer closes its files
    h.held.add(h.servers["mfs"].endpoint)
    m = h.start(Q, VfsReq.STAT, path="/f", follow=True)
    h.held.clear()
    h.run()
    assert h.result(m) is None and Q not in h.vfs.st.procs and refs(h) == 0


def test_descriptor_limit() -> None:
    h = Harness()
    write_file(h, "/f", b"x")
    fds = [h.ok(P, VfsReq.OPEN, path="/f", flags=O_RDONLY, mode=0)["fd"]
           for _ in range(OPEN_MAX - FIRST_FD)]
    assert max(fds) == OPEN_MAX - 1
    assert h.err(P, VfsReq.OPEN, path="/f", flags=O_RDONLY, mode=0) == Err.EMFILE
    h.ok(P, VfsReq.CLOSE, fd=fds[10])
    assert h.ok(P, VfsReq.OPEN, path="/f", flags=O_RDONLY, mode=0)["fd"] == fds[10]


@pytest.mark.parametrize("req,fields", [
    (VfsReq.OPEN, {"path": 5, "flags": 0, "mode": 0}),
    (VfsReq.OPEN, {"path": "/f", "flags": "x", "mode": 0}),
    (VfsReq.OPEN, {"path": "/f", "flags": 1 << 30, "mode": 0}),
    (VfsReq.READ, {"fd": FIRST_FD, "count": -1}),
    (VfsReq.WRITE, {"fd": FIRST_FD, "data": "text"}),
    (VfsReq.LSEEK, {"fd": FIRST_FD, "offset": 0, "whence": 7}),
    (VfsReq.STAT, {"path": "/f", "follow": "yes"}),
    (VfsReq.UTIMES, {"path": "/f", "atime": "now", "mtime": 0}),
    (VfsReq.MKDIR, {"path": "/a\0b", "mode": 0o755}),
    (VfsReq.GETDENTS, {"fd": FIRST_FD, "max": 0}),
])
def test_malformed_requests_are_einval(req: VfsReq, fields: dict[str, object]) -> None:
    h = Harness()
    write_file(h, "/f", b"x")
    h.ok(P, VfsReq.OPEN, path="/f", flags=O_RDWR, mode=0)
    assert h.err(P, req, **fields) == Err.EINVAL
    assert read_file(h, "/f") == b"x", "VFS goes on"


def test_unknown_requests_bugs_and_bad_answers_fail_one_request() -> None:
    h = Harness()
    assert h.err(P, 0xCFF) == Err.EBADREQUEST

    def broken(proc: object, f: object) -> None:
        raise ZeroDivisionError("a bug")
    h.vfs.table[VfsReq.CHMOD] = broken  # type: ignore[assignment]
    assert h.err(P, VfsReq.CHMOD, path="/", mode=0) == Err.EINVAL
    fs = h.servers["mfs"]
    real = fs.handle
    fs.handle = lambda req, f: {"done": 99, "stat": "garbage"}  # type: ignore[method-assign]
    assert h.err(P, VfsReq.STAT, path="/x", follow=True) == Err.EIO
    fs.handle = real  # type: ignore[method-assign]
    write_file(h, "/ok", b"fine")
    assert read_file(h, "/ok") == b"fine"
    assert any("failed" in k for k in h.vfs.guard.counts)


def test_requests_before_the_root_wait_for_it() -> None:
    h = Harness(("other",))  # no "mfs": the root mount fails
    assert h.mounted and h.mounted[0][0] == Err.ENXIO
    m = h.start(P, VfsReq.STAT, path="/", follow=True)
    assert h.result(m) is None
    h.servers["mfs"] = fs = type(h.servers["other"])(2000)
    h.by_endpoint[fs.endpoint] = fs
    h.vfs.mount_root("mfs", "at_wini", 0, False, lambda s, w: h.mounted.append((s, w)))
    h.run()
    assert h.mounted[-1][0] == Err.OK
    assert h.result(m) is not None and h.result(m).type == Err.OK  # type: ignore[union-attr]


def test_a_restarted_vfs_remounts_a_root_its_file_server_still_has() -> None:
    h = Harness()
    write_file(h, "/f", b"before")
    h.vfs = Vfs(h.send, h.reply, h.find_label, lambda e: e in h.operator)  # a fresh VFS
    h.vfs.mount_root("mfs", "at_wini", 0, False, lambda s, w: h.mounted.append((s, w)))
    h.run()
    assert h.mounted[-1] == (Err.OK, "")
    assert [name for name, _ in h.servers["mfs"].log[-3:]] == ["READSUPER", "UNMOUNT",
                                                                "READSUPER"]
    assert read_file(h, "/f") == b"before"


def test_appends_of_two_processes_never_overwrite_each_other() -> None:
    h = Harness()
    write_file(h, "/log", b"")
    fds = {who: h.ok(who, VfsReq.OPEN, path="/log", flags=O_WRONLY | O_APPEND, mode=0)["fd"]
           for who in (P, Q)}
    h.held.add(h.servers["mfs"].endpoint)  # both appends wait together, then interleave
    waiting = [h.start(who, VfsReq.WRITE, fd=fds[who], data=bytes([who]) * 10) for who in (P, Q)]
    h.held.clear()
    h.run()
    assert all(h.result(m) is not None for m in waiting)
    assert sorted(read_file(h, "/log")) == sorted(bytes([P]) * 10 + bytes([Q]) * 10)


def test_a_process_that_dies_mid_open_leaves_no_reference() -> None:
    h = Harness()
    write_file(h, "/f", b"x")
    h.held.add(h.servers["mfs"].endpoint)
    m = h.start(P, VfsReq.OPEN, path="/f", flags=O_RDONLY, mode=0)
    h.vfs.sweep(set())  # P is gone before its OPEN is done
    h.dead.add(P)
    h.held.clear()
    h.run()
    assert h.result(m) is None and P not in h.vfs.st.procs
    assert refs(h) == 0, "the GETNODE of a dead process's OPEN was given back"


def test_a_file_server_that_does_not_answer_is_eio() -> None:
    h = Harness()

    def lost(dst: int, m: Message, on_answer: Callable[[Message], None], timeout: float) -> int:
        on_answer(Message(Err.ETIMEDOUT))  # the loop's own failure: no source
        return Err.OK
    for fs in h.vfs.st.mounts.servers():
        fs.send = lost
    assert h.err(P, VfsReq.STAT, path="/", follow=True) == Err.EIO
    assert any("ETIMEDOUT" in k for k in h.vfs.guard.counts)


def test_a_restarted_file_server_is_mounted_again_with_vfs_references() -> None:
    h = Harness()
    write_file(h, "/f", b"kept")
    fd = h.ok(P, VfsReq.OPEN, path="/f", flags=O_RDONLY, mode=0)["fd"]
    h.ok(Q, VfsReq.MKDIR, path="/d", mode=0o755)
    h.ok(Q, VfsReq.CHDIR, path="/d")
    fs = h.servers["mfs"]
    assert refs(h) == 2
    h.held.add(fs.endpoint)
    lost = h.start(P, VfsReq.FSTAT, fd=fd)  # in flight when the file server dies
    del h.by_endpoint[fs.endpoint]  # RS restarts it: a new endpoint, nothing mounted or held
    h.in_flight.clear()
    fs.endpoint, fs.mounted = 3000, False
    for i in fs.inodes.values():
        i.refs = 0
    h.by_endpoint[fs.endpoint] = fs
    h.held.clear()
    h.vfs.check_servers()
    h.run()
    assert h.result(lost) is not None and h.result(lost).type == Err.EIO  # type: ignore[union-attr]
    assert fs.mounted and refs(h) == 2, "READSUPER, then a GETNODE per held vnode"
    assert h.ok(P, VfsReq.READ, fd=fd, count=10)["data"] == b"kept"
    write_file(h, "x", b"in d", who=Q)
    assert read_file(h, "/d/x") == b"in d"
    h.ok(P, VfsReq.CLOSE, fd=fd)
    h.ok(Q, VfsReq.CHDIR, path="/")
    assert refs(h) == 0
    h.vfs.check_servers()
    assert [n for n, _ in fs.log].count("READSUPER") == 2, "no second recovery"


def boot_mount(h: Harness, path: str = "/ram", label: str = "mfs_ram") -> tuple[int, str]:
    done: list[tuple[int, str]] = []
    h.vfs.boot_mount(path, label, "memory", 0, lambda s, w: done.append((s, w)))
    h.run()
    assert len(done) == 1
    return done[0]


def test_a_boot_mount_makes_its_directory_and_mounts_again_after_a_vfs_restart() -> None:
    """VFS's --mount (the RAM disk): the directory made if missing, the file server mounted
    on it; a restarted VFS finds the file server holding its device (EBUSY), unmounts it and
    mounts it again; a file server not in DS is ENXIO and makes no directory."""
    h = Harness(("mfs", "mfs_ram"))
    assert boot_mount(h, label="nowhere")[0] == Err.ENXIO
    assert h.err(P, VfsReq.STAT, path="/ram", follow=True) == Err.ENOENT, "no directory made"
    assert boot_mount(h) == (Err.OK, "")
    write_file(h, "/ram/x", b"on the RAM disk")
    assert len(h.servers["mfs_ram"].inodes) == 2, "the file is on mfs_ram"
    assert boot_mount(h)[0] == Err.EBUSY, "mounted already"

    h.vfs = Vfs(h.send, h.reply, h.find_label, lambda e: e in h.operator)  # a fresh VFS
    h.vfs.mount_root("mfs", "at_wini", 0, False, lambda s, w: h.mounted.append((s, w)))
    h.run()
    assert boot_mount(h) == (Err.OK, ""), "the directory exists now: no MKDIR error"
    assert [name for name, _ in h.servers["mfs_ram"].log[-3:]] == ["READSUPER", "UNMOUNT",
                                                                    "READSUPER"]
    assert read_file(h, "/ram/x") == b"on the RAM disk"


def test_a_boot_mount_on_a_file_is_refused() -> None:
    h = Harness(("mfs", "mfs_ram"))
    write_file(h, "/ram", b"a file")
    assert boot_mount(h)[0] == Err.ENOTDIR
