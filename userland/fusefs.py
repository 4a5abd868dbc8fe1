"""The system's file tree as a FUSE file system: each FUSE operation is a file call.

Runs in the mount process (userland/mount.py), a user process of the system.
``SystemFs`` is the operations table mfusepy calls (one thread: the ``Files``
under it has one connection, so one request at a time, as any process of the
system makes its calls).  Every operation maps onto userland/fs.py:

    getattr -> lstat / fstat     open, create -> open (the system's O_* flags)
    read, write -> pread, pwrite at the kernel's offsets     release -> close
    readdir -> readdir           truncate -> truncate / ftruncate
    mkdir rmdir unlink rename link symlink readlink chmod utimens fsync statfs

Errors: a refusal (``FsError``) is passed to the host as its errno, which
fs.py has already made the host's number of the same name.  Any other IPC
failure is EIO; the kernel gone (``KernelGone``) is EIO too, and ``on_lost``
is called once so the mount goes away instead of failing each call.

Ownership: the system's files appear as the mounting user's (the view of the
person who mounted them, as sshfs's idmap=user); chown to that owner
succeeds (tar and cp -p ask it), to anyone else is EPERM.
"""
from __future__ import annotations

import errno
import os
import stat as st
import time
from collections.abc import Callable
from typing import Any, TypeVar

import mfusepy

from minikern.params import FUSE_MAX_IO
from minikern.ipc import IpcError, KernelGone
from userland import fs
from userland.fs import Files, FsError

Op = TypeVar("Op", bound=Callable[..., Any])

# Linux's open(2) flag bits -> the system's (NetBSD values, PROTOCOL.md section 21).
HOST_FLAGS = ((os.O_CREAT, fs.O_CREAT), (os.O_EXCL, fs.O_EXCL), (os.O_TRUNC, fs.O_TRUNC),
              (os.O_DIRECTORY, fs.O_DIRECTORY), (os.O_NOFOLLOW, fs.O_NOFOLLOW))
ACCESS = {os.O_RDONLY: fs.O_RDONLY, os.O_WRONLY: fs.O_WRONLY, os.O_RDWR: fs.O_RDWR}
PERMISSIONS = 0o7777
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2  # tv_nsec values of utimensat(2)


def system_flags(host: int) -> int:
    """The system's open flags for the host's ``host`` flags.

    O_APPEND is dropped on purpose: the kernel gives every FUSE write its offset (the end
    of the file, for an appending descriptor), and a pwrite says where it goes."""
    flags = ACCESS.get(host & os.O_ACCMODE, fs.O_RDWR)
    for bit, ours in HOST_FLAGS:
        if host & bit:
            flags |= ours
    return flags


def translated(op: Op) -> Op:
    """Run ``op`` with the system's failures turned into the host errnos FUSE answers."""
    def call(self: SystemFs, *args: Any) -> Any:
        try:
            return op(self, *args)
        except FsError:
            raise  # an OSError whose errno is the host's
        except KernelGone:
            self.lost()
            raise mfusepy.FuseOSError(errno.EIO) from None
        except IpcError:
            raise mfusepy.FuseOSError(errno.EIO) from None
    call.__name__ = op.__name__
    call.__doc__ = op.__doc__
    return call  # type: ignore[return-value]


class SystemFs(mfusepy.Operations):  # type: ignore[misc]
    """The operations of one mount: paths under ``root`` of the system's tree."""

    use_ns = True  # times cross as integer nanoseconds (mfusepy's float seconds are deprecated)

    def __init__(self, files: Files, root: str = "/", owner: tuple[int, int] | None = None,
                 on_lost: Callable[[], None] = lambda: None,
                 on_ready: Callable[[], None] = lambda: None) -> None:
        self.files = files
        self.root = "/" + root.strip("/")
        self.owner = owner if owner is not None else (os.getuid(), os.getgid())
        self.on_lost, self.on_ready = on_lost, on_ready
        self.gone = False

    def path(self, fuse_path: str) -> str:
        """The system's path for FUSE's (absolute from the mount point)."""
        return fuse_path if self.root == "/" else self.root + fuse_path.rstrip("/")

    def lost(self) -> None:
        """The system is gone: tell the mount, once."""
        if not self.gone:
            self.gone = True
            self.on_lost()

    def attrs(self, s: fs.Stat) -> dict[str, Any]:
        uid, gid = self.owner
        return {"st_ino": s.st_ino, "st_mode": s.st_mode, "st_nlink": s.st_nlink,
                "st_uid": uid, "st_gid": gid, "st_size": s.st_size, "st_blocks": s.st_blocks,
                "st_blksize": FUSE_MAX_IO,  # cp and friends then move FUSE_MAX_IO at a time
                "st_atime": _ns(s.st_atime), "st_mtime": _ns(s.st_mtime),
                "st_ctime": _ns(s.st_ctime)}

    # -- attributes and names ---------------------------------------------------------------

    @translated
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        return self.attrs(self.files.fstat(fh) if fh is not None
                          else self.files.lstat(self.path(path)))

    @translated
    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        return [(name, {"st_ino": ino}, 0) for name, ino in self.files.readdir(self.path(path))]

    @translated
    def readlink(self, path: str) -> str:
        return self.files.readlink(self.path(path))

    @translated
    def mkdir(self, path: str, mode: int) -> int:
        self.files.mkdir(self.path(path), mode & PERMISSIONS)
        return 0

    @translated
    def rmdir(self, path: str) -> int:
        self.files.rmdir(self.path(path))
        return 0

    @translated
    def unlink(self, path: str) -> int:
        self.files.unlink(self.path(path))
        return 0

    @translated
    def rename(self, old: str, new: str) -> int:
        self.files.rename(self.path(old), self.path(new))
        return 0

    @translated
    def link(self, target: str, source: str) -> int:
        """A new name ``target`` for the existing ``source`` (mfusepy's argument order)."""
        self.files.link(self.path(source), self.path(target))
        return 0

    @translated
    def symlink(self, target: str, source: str) -> int:
        """A symlink at ``target`` whose content is ``source`` (mfusepy's argument order)."""
        self.files.symlink(source, self.path(target))
        return 0

    @translated
    def chmod(self, path: str, mode: int) -> int:
        self.files.chmod(self.path(path), mode & PERMISSIONS)
        return 0

    @translated
    def chown(self, path: str, uid: int, gid: int) -> int:
        """Every file is the mounting user's: a chown to that owner (or -1) changes nothing."""
        if uid not in (-1, self.owner[0]) or gid not in (-1, self.owner[1]):
            raise mfusepy.FuseOSError(errno.EPERM)
        self.files.lstat(self.path(path))  # ENOENT for a file that is not there
        return 0

    @translated
    def utimens(self, path: str, times: tuple[float | None, float | None] | None = None) -> int:
        """``times`` in seconds (from ``MountFuse``); None for one: keep it; None: both now."""
        p = self.path(path)
        if times is None:
            self.files.utimes(p)
            return 0
        atime, mtime = times
        if atime is None or mtime is None:
            s = self.files.stat(p)
            atime = s.st_atime if atime is None else atime
            mtime = s.st_mtime if mtime is None else mtime
        self.files.utimes(p, (atime, mtime))
        return 0

    @translated
    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if fh is not None:
            self.files.ftruncate(fh, length)
        else:
            self.files.truncate(self.path(path), length)
        return 0

    @translated
    def statfs(self, path: str) -> dict[str, int]:
        v = self.files.statvfs(self.path(path))
        return {"f_bsize": v.f_bsize, "f_frsize": v.f_bsize, "f_blocks": v.f_blocks,
                "f_bfree": v.f_bfree, "f_bavail": v.f_bfree, "f_files": v.f_files,
                "f_ffree": v.f_ffree, "f_favail": v.f_ffree, "f_namemax": v.f_namemax}

    # -- open files: the handle is the system's descriptor -------------------------------------

    @translated
    def open(self, path: str, flags: int) -> int:
        return self.files.open(self.path(path), system_flags(flags))

    @translated
    def create(self, path: str, mode: int, flags: int) -> int:
        return self.files.open(self.path(path), system_flags(flags) | fs.O_CREAT,
                               st.S_IMODE(mode))

    @translated
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return self.files.pread(fh, size, offset)

    @translated
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return self.files.pwrite(fh, data, offset)

    @translated
    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self.files.fsync(fh)
        return 0

    @translated
    def release(self, path: str, fh: int) -> int:
        self.files.close(fh)
        return 0

    # -- the mount's life ----------------------------------------------------------------------

    def init_with_config(self, conn: Any, config: Any) -> None:
        """The kernel sent INIT: ask for requests of FUSE_MAX_IO bytes, then say we serve."""
        if conn is not None:
            conn.max_write = FUSE_MAX_IO
            conn.max_read = FUSE_MAX_IO  # as the mount option max_read: libfuse wants both
            conn.max_readahead = FUSE_MAX_IO
        if config is not None:
            config.use_ino = 1  # the system's inode numbers, as `ls -i` and tar's link check see
        self.on_ready()

    def destroy(self, path: str) -> None:
        """Unmounted: have every file system write back (the system may be gone already)."""
        if self.gone:
            return
        try:
            self.files.sync()
        except (FsError, IpcError):
            pass


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


class MountFuse(mfusepy.FUSE):  # type: ignore[misc]
    """mfusepy's FUSE (mounts and serves until unmounted), with utimens given UTIME_NOW and
    UTIME_OMIT as meant: mfusepy folds a timespec into one number, which loses them."""

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        times = None
        if buf:
            times = (_seconds(buf.contents.actime), _seconds(buf.contents.modtime))
        return int(self.operations.utimens(decoded, times) or 0)


def _seconds(ts: Any) -> float | None:
    """A utimensat(2) timespec in seconds: now for UTIME_NOW, None (keep) for UTIME_OMIT."""
    if ts.tv_nsec == UTIME_NOW:
        return time.time()
    if ts.tv_nsec == UTIME_OMIT:
        return None
    sec: int = ts.tv_sec
    nsec: int = ts.tv_nsec
    return sec + nsec / 1e9
