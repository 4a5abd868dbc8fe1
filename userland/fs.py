"""The file API for user programs (runs in the program's process): VFS's client.

    files = Files(conn)                      # VFS found through DS's label entry "vfs"
    fd = files.open("/notes.txt", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    files.write(fd, b"hello")                # any size: sent in FS_MAX_IO pieces
    files.close(fd)
    files.stat("/notes.txt").st_size         # 5

Every call is one SENDREC to VFS (a read or write of more than ``FS_MAX_IO``
bytes is several), so it blocks in the kernel until VFS answers, as a
system call does; VFS serves other processes meanwhile.  The requests are
``VfsReq`` (docs/PROTOCOL.md section 21).  One ``Files`` uses one
connection, which is not thread-safe: a thread of its own needs a
connection and a ``Files`` of its own.

Errors raise ``FsError``, an ``OSError`` whose ``errno`` is the host's
number of the same name (``errno.ENOENT``...) and whose ``code`` is the
system's ``Err`` (``Err.ENOENT``...), so a FUSE layer passes ``e.errno``
through and a test checks ``e.code``.  Codes the host does not have
(EDEADSRCDST: VFS died; EBADREQUEST; ...) map to the nearest host errno in
``HOST_ERRNO`` (EIO by default).

This interface is stable: bin/mount (FUSE) is built on it.  Paths are str;
descriptors are small ints, valid only through the ``Files`` (the endpoint)
that opened them; a process's descriptors are closed by VFS when it dies.
"""
from __future__ import annotations

import errno
import time
from dataclasses import asdict, dataclass
from typing import Any

from minikern import ds
from minikern.const import (FS_MAX_IO, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW,
                            O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, Err, VfsReq, err_name)
from minikern.ipc import Connection, IpcError
from minikern.proto import Message

__all__ = ["Files", "FsError", "Stat", "StatVfs", "HOST_ERRNO", "O_APPEND", "O_CREAT",
           "O_DIRECTORY", "O_EXCL", "O_NOFOLLOW", "O_RDONLY", "O_RDWR", "O_TRUNC", "O_WRONLY",
           "SEEK_SET", "SEEK_CUR", "SEEK_END"]

SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
VFS_LABEL = "vfs"  # the DS label entry RS publishes for VFS

# The system's codes that have no host errno of the same name.
HOST_ERRNO: dict[int, int] = {
    Err.EDEADSRCDST: errno.EIO,  # VFS (or the file server under it) died mid-call
    Err.EBADREQUEST: errno.ENOSYS,
    Err.ECALLDENIED: errno.EACCES,  # the kernel refused: no ipc right to VFS
    Err.ETRAPDENIED: errno.EACCES,
    Err.ELOCKED: errno.EDEADLK,
    Err.ENOTREADY: errno.EAGAIN,
    Err.ERESTART: errno.EINTR,
}


def host_errno(code: int) -> int:
    """The host's errno for the system's ``code`` (same name; else HOST_ERRNO; else EIO)."""
    if code in HOST_ERRNO:
        return HOST_ERRNO[code]
    return int(getattr(errno, err_name(code), errno.EIO))


class FsError(OSError):
    """A refused file call: ``code`` the system's Err, ``errno`` the host's of that name."""

    def __init__(self, code: int, what: str, path: str | None = None) -> None:
        super().__init__(host_errno(code), f"{what}: {err_name(code)}", path)
        self.code, self.what = code, what

    def __reduce__(self) -> tuple[Any, ...]:
        return (FsError, (self.code, self.what, self.filename))


@dataclass(frozen=True)
class Stat:
    """A file's attributes, named as ``os.stat_result``'s (times in Unix seconds)."""

    st_ino: int
    st_mode: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int
    st_atime: float
    st_mtime: float
    st_ctime: float
    st_blocks: int  # 512-byte units in use
    st_dev: int

    @classmethod
    def from_wire(cls, s: object) -> Stat:
        """The protocol's stat map (PROTOCOL.md section 20), checked field by field."""
        if type(s) is not dict:
            raise FsError(Err.EIO, "stat: malformed answer")

        def num(key: str, kind: type = int) -> Any:
            v = s.get(key, 0)
            if type(v) not in (int, float) or type(v) is bool:
                raise FsError(Err.EIO, f"stat: malformed {key}")
            return kind(v)
        return cls(num("ino"), num("mode"), num("nlinks"), num("uid"), num("gid"), num("size"),
                   num("atime", float), num("mtime", float), num("ctime", float),
                   num("blocks"), num("dev"))

    def asdict(self) -> dict[str, Any]:
        """The ``st_*`` fields as a dict (what FUSE's getattr returns)."""
        return asdict(self)


@dataclass(frozen=True)
class StatVfs:
    """A file system's figures, named as ``os.statvfs_result``'s."""

    f_bsize: int
    f_blocks: int
    f_bfree: int
    f_files: int
    f_ffree: int
    f_namemax: int

    def asdict(self) -> dict[str, Any]:
        return asdict(self)


class Files:
    """The file calls of one process (one connection).  ``vfs``: VFS's endpoint, if known."""

    def __init__(self, conn: Connection, vfs: int | None = None) -> None:
        self.conn = conn
        self.vfs = vfs if vfs is not None else self._find_vfs()

    def _find_vfs(self) -> int:
        try:
            return ds.retrieve_label(self.conn, VFS_LABEL)
        except IpcError as e:
            raise FsError(e.code, "no VFS in DS") from None

    def _call(self, req: VfsReq, where: str | None = None, **fields: Any) -> dict[str, Any]:
        """One request; ``where`` is the path an error names (as OSError's filename)."""
        try:
            m = self.conn.sendrec(self.vfs, Message(req, fields))
        except IpcError as e:
            if e.code != Err.EDEADSRCDST:
                raise FsError(e.code, req.name.lower(), where) from None
            # VFS was restarted: it lost every descriptor, but path calls may go on
            self.vfs = self._find_vfs()
            raise FsError(e.code, req.name.lower(), where) from None
        if m.type != Err.OK:
            raise FsError(m.type, req.name.lower(), where)
        return m.fields

    # -- descriptors -------------------------------------------------------------------

    def open(self, path: str, flags: int = O_RDONLY, mode: int = 0o644) -> int:
        """A new descriptor for ``path`` (``O_*`` flags, ``mode`` for O_CREAT)."""
        return int(self._call(VfsReq.OPEN, path, path=path, flags=flags, mode=mode)["fd"])

    def close(self, fd: int) -> None:
        self._call(VfsReq.CLOSE, fd=fd)

    def read(self, fd: int, count: int) -> bytes:
        """Up to ``count`` bytes from the offset (fewer only at the end of the file)."""
        return self._read(fd, count, None)

    def pread(self, fd: int, count: int, pos: int) -> bytes:
        """As ``read`` at ``pos``; the descriptor's offset is not moved."""
        return self._read(fd, count, pos)

    def _read(self, fd: int, count: int, pos: int | None) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < count:
            fields: dict[str, Any] = {"fd": fd, "count": min(FS_MAX_IO, count - got)}
            if pos is not None:
                fields["pos"] = pos + got
            data = self._call(VfsReq.READ, **fields)["data"]
            if type(data) is not bytes:
                raise FsError(Err.EIO, "read: malformed answer")
            parts.append(data)
            got += len(data)
            if len(data) < fields["count"]:
                break
        return b"".join(parts)

    def write(self, fd: int, data: bytes) -> int:
        """Write all of ``data`` at the offset (the end, with O_APPEND); returns its length."""
        return self._write(fd, data, None)

    def pwrite(self, fd: int, data: bytes, pos: int) -> int:
        """As ``write`` at ``pos``; the descriptor's offset is not moved."""
        return self._write(fd, data, pos)

    def _write(self, fd: int, data: bytes, pos: int | None) -> int:
        view = memoryview(data)
        done = 0
        while True:
            fields: dict[str, Any] = {"fd": fd, "data": bytes(view[done:done + FS_MAX_IO])}
            if pos is not None:
                fields["pos"] = pos + done
            n = self._call(VfsReq.WRITE, **fields)["count"]
            if type(n) is not int or n <= 0 and len(fields["data"]):
                raise FsError(Err.EIO, "write: no progress")
            done += n
            if done >= len(view):
                return done

    def lseek(self, fd: int, offset: int, whence: int = SEEK_SET) -> int:
        return int(self._call(VfsReq.LSEEK, fd=fd, offset=offset, whence=whence)["pos"])

    def fstat(self, fd: int) -> Stat:
        return Stat.from_wire(self._call(VfsReq.FSTAT, fd=fd)["stat"])

    def ftruncate(self, fd: int, size: int) -> None:
        self._call(VfsReq.TRUNCATE, fd=fd, size=size)

    def fsync(self, fd: int) -> None:
        self._call(VfsReq.FSYNC, fd=fd)

    def getdents(self, fd: int, max: int = 256) -> list[tuple[str, int]]:
        """The next entries of a directory descriptor as (name, inode); [] at the end."""
        entries = self._call(VfsReq.GETDENTS, fd=fd, max=max)["entries"]
        return [(str(e[0]), int(e[1])) for e in entries]

    # -- paths -------------------------------------------------------------------------

    def stat(self, path: str) -> Stat:
        """Following symlinks."""
        return Stat.from_wire(self._call(VfsReq.STAT, path, path=path, follow=True)["stat"])

    def lstat(self, path: str) -> Stat:
        """A symlink's own attributes."""
        return Stat.from_wire(self._call(VfsReq.STAT, path, path=path, follow=False)["stat"])

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except FsError as e:
            if e.code in (Err.ENOENT, Err.ENOTDIR):
                return False
            raise
        return True

    def readdir(self, path: str) -> list[tuple[str, int]]:
        """Every entry of a directory as (name, inode), "." and ".." included."""
        fd = self.open(path, O_RDONLY | O_DIRECTORY)
        try:
            out: list[tuple[str, int]] = []
            while batch := self.getdents(fd):
                out.extend(batch)
            return out
        finally:
            self.close(fd)

    def listdir(self, path: str = ".") -> list[str]:
        """The names in a directory, without "." and ".." (as ``os.listdir``)."""
        return [name for name, _ in self.readdir(path) if name not in (".", "..")]

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        self._call(VfsReq.MKDIR, path, path=path, mode=mode)

    def rmdir(self, path: str) -> None:
        self._call(VfsReq.RMDIR, path, path=path)

    def unlink(self, path: str) -> None:
        self._call(VfsReq.UNLINK, path, path=path)

    def rename(self, old: str, new: str) -> None:
        self._call(VfsReq.RENAME, old, old=old, new=new)

    def link(self, old: str, new: str) -> None:
        self._call(VfsReq.LINK, new, old=old, new=new)

    def symlink(self, target: str, path: str) -> None:
        """Make ``path`` a symlink to ``target`` (argument order as ``os.symlink``)."""
        self._call(VfsReq.SYMLINK, path, target=target, path=path)

    def readlink(self, path: str) -> str:
        return str(self._call(VfsReq.READLINK, path, path=path)["target"])

    def truncate(self, path: str, size: int) -> None:
        self._call(VfsReq.TRUNCATE, path, path=path, size=size)

    def sync(self) -> None:
        """Every file system writes back everything (returns when it is on the disks)."""
        self._call(VfsReq.SYNC)

    def chmod(self, path: str, mode: int) -> None:
        self._call(VfsReq.CHMOD, path, path=path, mode=mode)

    def utimes(self, path: str, times: tuple[float, float] | None = None) -> None:
        """Set (atime, mtime); None: now (as ``os.utime``)."""
        atime, mtime = times if times is not None else (time.time(),) * 2
        self._call(VfsReq.UTIMES, path, path=path, atime=atime, mtime=mtime)

    def chdir(self, path: str) -> None:
        """The working directory of this process (relative paths start there)."""
        self._call(VfsReq.CHDIR, path, path=path)

    def statvfs(self, path: str = "/") -> StatVfs:
        f = self._call(VfsReq.STATVFS, path, path=path)
        try:
            return StatVfs(int(f["bsize"]), int(f["blocks"]), int(f["bfree"]), int(f["files"]),
                           int(f["ffree"]), int(f["namemax"]))
        except (KeyError, TypeError, ValueError):
            raise FsError(Err.EIO, "statvfs: malformed answer", path) from None

    # -- whole files (conveniences) -------------------------------------------------------

    def read_file(self, path: str) -> bytes:
        fd = self.open(path)
        try:
            parts = []
            while chunk := self.read(fd, FS_MAX_IO * 8):
                parts.append(chunk)
            return b"".join(parts)
        finally:
            self.close(fd)

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        fd = self.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
        try:
            self.write(fd, data)
        finally:
            self.close(fd)

    # -- the operator's ---------------------------------------------------------------------

    def mount(self, path: str, driver: str, minor: int, fs: str,
              readonly: bool = False) -> None:
        """Mount ``driver``'s ``minor`` with the file server ``fs`` on the directory ``path``
        (operator processes only: EPERM otherwise)."""
        self._call(VfsReq.MOUNT, path, path=path, driver=driver, minor=minor, fs=fs,
                   readonly=readonly)

    def umount(self, path: str) -> None:
        """EBUSY while files are open on it."""
        self._call(VfsReq.UMOUNT, path, path=path)
