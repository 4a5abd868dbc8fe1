"""VFS end to end: user processes' file calls (userland/fs.py) through VFS, MFS and at_wini on a
fresh mkfs.minix -3 image; each call's semantics and error names (PROTOCOL.md section 21),
many processes served while one waits on a slow file server, a dead process's files closed,
bad requests refused, and fsck.minix -f clean after the halt."""
from __future__ import annotations

import errno
import os
import stat as S
import subprocess
import sys

import pytest

from minikern import cli
from minikern.const import (FS_MAX_IO, NAME_MAX, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL,
                            O_NOFOLLOW, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, Err, FsReq, VfsReq)
from minikern.deadline import wait_for
from minikern.ipc import IpcError
from minikern.proto import Message
from tests.storage.conftest import MakeStorage, Storage
from tests.storage.slowfs import HELD, RELEASE
from userland.fs import SEEK_CUR, SEEK_END, Files, FsError


def fails(code: Err, fn: object, *args: object) -> FsError:
    """Call ``fn(*args)``; it must raise FsError with ``code`` and the host errno of its name."""
    with pytest.raises(FsError) as info:
        fn(*args)  # type: ignore[operator]
    assert info.value.code == code, f"{info.value} is not {code.name}"
    assert info.value.errno == getattr(errno, code.name)
    return info.value


@pytest.mark.timeout(180)
def test_the_file_api_against_the_real_stack(storage: Storage) -> None:
    f = storage.files()
    big = os.urandom(5 * FS_MAX_IO + 123)
    f.write_file("/big", big)
    assert f.read_file("/big") == big, "reads and writes of many FS_MAX_IO pieces"
    assert f.stat("/big").st_size == len(big)

    fd = f.open("/big", O_RDWR)
    assert f.pread(fd, 10, 100) == big[100:110]
    assert f.lseek(fd, 0, SEEK_CUR) == 0, "pread keeps the offset"
    assert f.pwrite(fd, b"XYZ", 1) == 3
    assert f.read(fd, 4) == big[:1] + b"XYZ"
    assert f.lseek(fd, -2, SEEK_END) == len(big) - 2
    assert f.read(fd, 100) == big[-2:] and f.read(fd, 100) == b""
    f.ftruncate(fd, 50)
    assert f.fstat(fd).st_size == 50
    f.fsync(fd)
    f.close(fd)
    fails(Err.EBADF, f.read, fd, 1)

    fails(Err.EEXIST, f.open, "/big", O_WRONLY | O_CREAT | O_EXCL)
    fails(Err.ENOENT, f.open, "/missing", O_RDONLY)
    fails(Err.ENOTDIR, f.open, "/big", O_RDONLY | O_DIRECTORY)
    fails(Err.ENOTDIR, f.stat, "/big/x")
    ro = f.open("/big")
    fails(Err.EBADF, f.write, ro, b"x")
    f.close(ro)
    fd = f.open("/big", O_WRONLY | O_APPEND)
    f.write(fd, b"++")
    f.close(fd)
    assert f.stat("/big").st_size == 52
    f.close(f.open("/big", O_WRONLY | O_TRUNC))
    assert f.stat("/big").st_size == 0

    f.mkdir("/d")
    fails(Err.EEXIST, f.mkdir, "/d")
    fails(Err.EISDIR, f.open, "/d", O_WRONLY)
    fails(Err.EPERM, f.unlink, "/d")  # MINIX's answer for unlinking a directory
    f.write_file("/d/one", b"1")
    fails(Err.ENOTEMPTY, f.rmdir, "/d")
    f.chdir("/d")
    assert f.read_file("one") == b"1" and f.read_file("../d/./one") == b"1"
    f.rename("one", "two")
    assert sorted(f.listdir(".")) == ["two"]
    f.link("two", "/three")
    assert f.stat("/three").st_nlink == 2
    f.symlink("d/two", "/ln")
    assert f.readlink("/ln") == "d/two"
    assert S.S_ISLNK(f.lstat("/ln").st_mode) and S.S_ISREG(f.stat("/ln").st_mode)
    assert f.read_file("/ln") == b"1"
    fails(Err.ELOOP, f.open, "/ln", O_RDONLY | O_NOFOLLOW)
    fails(Err.EINVAL, f.readlink, "/three")
    f.symlink("/loop", "/loop")
    fails(Err.ELOOP, f.stat, "/loop")
    fails(Err.ENAMETOOLONG, f.open, "/" + "n" * (NAME_MAX + 1), O_WRONLY | O_CREAT)
    f.chmod("/three", 0o600)
    f.utimes("/three", (1000.0, 2000.0))
    st = f.stat("/three")
    assert (st.st_mode & 0o7777, int(st.st_mtime)) == (0o600, 2000)
    f.truncate("/three", 3000)
    assert f.stat("/d/two").st_size == 3000, "a hard link is the same inode"
    f.unlink("two")
    f.unlink("/three")
    f.chdir("/")
    f.rmdir("/d")
    assert sorted(f.listdir("/")) == ["big", "ln", "loop"]
    vfs = f.statvfs("/")
    assert vfs.f_namemax == NAME_MAX and 0 < vfs.f_bfree <= vfs.f_blocks

    many = [f"f{n:04d}" for n in range(300)]
    f.mkdir("/many")
    for name in many:
        f.close(f.open(f"/many/{name}", O_WRONLY | O_CREAT))
    assert sorted(f.listdir("/many")) == many, "GETDENTS until empty"

    fails(Err.EPERM, f.mount, "/many", "at_wini", 1, "mfs")
    fails(Err.EPERM, f.umount, "/")
    f.sync()
    storage.halt()
    storage.assert_clean()


def slow_storage(make_storage: MakeStorage) -> Storage:
    conf = ("service slowfs {{ program tests.storage.slowfs; "
            "system GETINFO; ipc SYSTEM USER vfs rs ds; period 5s; }};\n")
    return make_storage(extra_conf=conf, rs_args="at_wini mfs vfs slowfs")


def held(storage: Storage, release: bool = False) -> int:
    """slowfs's count of held requests (and let them go), on one connection per storage:
    one per call (a wait_for polls it) passed the kernel's bound of connections per process."""
    if not hasattr(storage, "slowfs_ctl"):
        storage.slowfs_ctl = (storage.connect("ctl", "operator"),  # type: ignore[attr-defined]
                              storage.s.endpoint_of("slowfs"))
    conn, slowfs = storage.slowfs_ctl  # type: ignore[attr-defined]
    r = conn.sendrec(slowfs, Message(RELEASE if release else HELD))
    assert r.type == Err.OK
    return int(r["held"])


@pytest.mark.timeout(180)
def test_many_processes_are_served_while_one_waits_on_a_slow_file_server(
        make_storage: MakeStorage) -> None:
    storage = slow_storage(make_storage)
    op = storage.files("op", "operator")
    op.mkdir("/slow")
    op.mount("/slow", "none", 0, "slowfs")

    def stat_slow(n: int) -> int:
        try:
            storage.files(f"slow{n}").stat("/slow/x")
        except FsError as e:
            return e.code
        return 0
    first = storage.s.background(stat_slow, 1)
    wait_for(lambda: held(storage) == 1, 20, "slowfs holds the first lookup")
    second = storage.s.background(stat_slow, 2)

    def busy(n: int) -> bool:
        f = storage.files(f"busy{n}")
        data = os.urandom(3 * FS_MAX_IO) + bytes([n])
        f.write_file(f"/busy{n}", data)
        return f.read_file(f"/busy{n}") == data
    others = [storage.s.background(busy, n) for n in range(6)]
    for n, fut in enumerate(others):
        assert fut.result(timeout=60), f"process {n} was served, its data intact"
    assert not first.done() and not second.done(), "they still wait for slowfs"
    assert held(storage) == 1, "one request at a time: the second waits in VFS's queue"
    assert held(storage, release=True) == 1
    assert first.result(timeout=20) == Err.ENOENT
    wait_for(lambda: held(storage) == 1, 20, "the second lookup reaches slowfs")
    held(storage, release=True)
    assert second.result(timeout=20) == Err.ENOENT
    op.umount("/slow")
    op.sync()
    storage.halt()
    storage.assert_clean()


def free_inodes(f: Files) -> int:
    return f.statvfs("/").f_ffree


VICTIM = """
import sys
from minikern import cli
from minikern.const import O_RDWR, O_CREAT
from userland.fs import Files
f = Files(cli.operator_connection(sys.argv[1], "victim", privileges="user"))
fds = [f.open("/victim", O_RDWR | O_CREAT) for _ in range(3)]
f.write(fds[0], b"v" * 5000)
f.unlink("/victim")
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.timeout(180)
def test_a_dead_process_files_are_closed(storage: Storage) -> None:
    f = storage.files()
    before = free_inodes(f)
    other = storage.files("other")
    fd = other.open("/held", O_RDWR | O_CREAT)
    other.unlink("/held")
    assert free_inodes(f) == before - 1, "an unlinked file lives while it is open"
    other.conn.close()  # the process leaves: the sweep closes its file, MFS frees the inode
    storage.s.conns.remove(other.conn)
    wait_for(lambda: free_inodes(f) == before, 20, "its inode freed")
    del fd

    victim = subprocess.Popen([sys.executable, "-c", VICTIM, str(storage.s.run_dir)],
                              cwd=cli.REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert victim.stdout is not None and victim.stdout.readline().strip() == "ready"
        assert free_inodes(f) == before - 1
        victim.kill()
    finally:
        victim.kill()
        victim.wait(timeout=10)
    wait_for(lambda: free_inodes(f) == before, 20, "the killed process's inode freed")
    f.sync()
    storage.halt()
    storage.assert_clean()


@pytest.mark.timeout(120)
def test_bad_requests_never_take_vfs_down(storage: Storage) -> None:
    f = storage.files()
    conn = f.conn
    fd = f.open("/file", O_RDWR | O_CREAT)
    cases: list[tuple[int, dict[str, object], Err]] = [
        (VfsReq.OPEN, {"path": 7, "flags": 0, "mode": 0}, Err.EINVAL),
        (VfsReq.READ, {"fd": "x", "count": 1}, Err.EBADF),
        (VfsReq.READ, {"fd": fd, "count": "many"}, Err.EINVAL),
        (VfsReq.WRITE, {"fd": fd, "data": 5}, Err.EINVAL),
        (VfsReq.WRITE, {"fd": fd, "data": bytes(FS_MAX_IO + 1)}, Err.E2BIG),
        (0xCFF, {}, Err.EBADREQUEST),
        (VfsReq.LSEEK, {"fd": fd, "offset": 1.5, "whence": 0}, Err.EINVAL),
        (VfsReq.STAT, {"path": "/" + "a/" * 2000, "follow": True}, Err.ENAMETOOLONG),
        (VfsReq.UTIMES, {"path": "/", "atime": None, "mtime": 0}, Err.EINVAL),
        (VfsReq.CLOSE, {"fd": fd + 1}, Err.EBADF)]
    for req, fields, code in cases:
        r = conn.sendrec(f.vfs, Message(req, fields))
        assert r.type == code, (req, fields, r)
    with pytest.raises(IpcError) as denied:  # a user process may not speak to MFS at all
        conn.sendrec(storage.s.endpoint_of("mfs"), Message(FsReq.STAT, {"ino": 1}))
    assert denied.value.code == Err.ECALLDENIED
    f.write_file("/still", b"here")
    assert f.read_file("/still") == b"here"
    assert "vfs" in [p["label"] for p in storage.s.info()["procs"]]
    f.sync()
    storage.halt()
    storage.assert_clean()


def driver_pid(storage: Storage) -> int | None:
    return next((p["pid"] for p in storage.s.info()["procs"] if p["label"] == "at_wini"), None)


@pytest.mark.timeout(240)
def test_no_error_reaches_a_process_while_at_wini_is_killed(storage: Storage) -> None:
    data = os.urandom(4 * 1024 * 1024)

    def copy_in() -> bytes:
        f = storage.files("copier")
        fd = f.open("/copy", O_WRONLY | O_CREAT | O_TRUNC)
        for at in range(0, len(data), 4 * FS_MAX_IO):
            f.write(fd, data[at:at + 4 * FS_MAX_IO])
        f.fsync(fd)
        f.close(fd)
        return f.read_file("/copy")
    copier = storage.s.background(copy_in)
    kills = 0
    while not copier.done() and kills < 3:
        pid = driver_pid(storage)
        if pid is not None:
            os.kill(pid, 9)
            kills += 1
            wait_for(lambda old=pid: driver_pid(storage) not in (None, old), 30,  # type: ignore[misc]
                     "at_wini restarted")
    assert copier.result(timeout=200) == data, "the same bytes, no error"
    assert kills >= 1
    storage.files().sync()
    storage.halt()
    storage.assert_clean()


def pid_of(storage: Storage, label: str) -> int | None:
    return next((p["pid"] for p in storage.s.info()["procs"] if p["label"] == label), None)


@pytest.mark.timeout(180)
def test_a_restarted_vfs_mounts_the_root_again(storage: Storage) -> None:
    f = storage.files()
    f.write_file("/kept", b"synced before the crash")
    fd = f.open("/kept")
    f.sync()
    old = pid_of(storage, "vfs")
    assert old is not None
    os.kill(old, 9)
    wait_for(lambda: pid_of(storage, "vfs") not in (None, old), 30, "vfs restarted")

    def back() -> bool:
        try:
            return f.read_file("/kept") == b"synced before the crash"
        except FsError as e:
            assert e.code in (Err.EDEADSRCDST, Err.ESRCH), e  # the old VFS, or none in DS yet
            return False
    wait_for(back, 30, "the new VFS serves the old files")
    fails(Err.EBADF, f.read, fd, 1)  # descriptors died with the old VFS
    f.write_file("/after", b"new")
    f.sync()
    storage.halt()
    storage.assert_clean()


@pytest.mark.timeout(180)
def test_vfs_mounts_a_restarted_mfs_again(storage: Storage) -> None:
    f = storage.files()
    f.mkdir("/d")
    f.write_file("/d/kept", b"written back before the crash")
    fd = f.open("/d/kept")
    f.chdir("/d")
    f.sync()
    old = pid_of(storage, "mfs")
    assert old is not None
    os.kill(old, 9)
    wait_for(lambda: pid_of(storage, "mfs") not in (None, old), 30, "mfs restarted")

    def back() -> bool:
        try:
            return f.read_file("kept") == b"written back before the crash"
        except FsError as e:
            assert e.code == Err.EIO, e  # what reached the dead instance
            return False
    wait_for(back, 30, "the restarted MFS serves the files, the working directory kept")
    assert f.pread(fd, 7, 0) == b"written", "a descriptor open across the restart"
    f.write_file("/after", b"new")
    f.close(fd)
    f.sync()
    storage.halt()
    storage.assert_clean()


@pytest.mark.timeout(180)
def test_halt_syncs_the_file_systems_before_it_stops_the_drivers(storage: Storage) -> None:
    """As MINIX's shutdown: bin/halt has VFS SYNC (every dirty block on the disk, the disk
    flushed) before SIGTERM, so data written without fsync are not left in MFS's cache to
    race the disk driver's exit."""
    from minikern.boot import sync_files
    files = storage.files()
    first, second = os.urandom(1000), os.urandom(1000)  # each in one block: found in the image
    fd = files.open("/first", O_CREAT | O_WRONLY)
    files.write(fd, first)
    assert sync_files(storage.s.run_dir) is True
    assert first in storage.disk.read_bytes()  # synced: on the disk with nothing else asked
    fd2 = files.open("/second", O_CREAT | O_WRONLY)
    files.write(fd2, second)
    storage.halt()  # bin/halt's own code (System.halt)
    assert second in storage.disk.read_bytes()
    assert "file systems not synced" not in storage.console()
    storage.assert_clean()
