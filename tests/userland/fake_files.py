"""An in-memory stand-in for userland/fs.py's ``Files``, for testing the FUSE layer alone.

Only the unit tests and the FUSE plumbing test use it (the end-to-end tests
mount the real system).  It keeps a tree of inodes, refuses as VFS does
(the system's ``Err`` codes in ``FsError``) and records the sizes of the
reads and writes it was asked for, so a test sees what FUSE delivered.
"""
from __future__ import annotations

import stat
import time
from dataclasses import dataclass, field

from minikern.const import Err
from userland import fs
from userland.fs import FsError


@dataclass
class Node:
    ino: int
    mode: int
    data: bytearray = field(default_factory=bytearray)
    entries: dict[str, Node] = field(default_factory=dict)
    target: str = ""
    nlink: int = 1
    atime: float = 0.0
    mtime: float = 0.0


class FakeFiles:
    """The ``Files`` calls SystemFs makes, over a tree in memory."""

    def __init__(self) -> None:
        self.next_ino = 1
        self.root = self._node(stat.S_IFDIR | 0o755)
        self.fds: dict[int, tuple[Node, int]] = {}
        self.calls: list[str] = []
        self.reads: list[int] = []
        self.writes: list[int] = []
        self.syncs = 0
        self.fail_with: Exception | None = None  # raised by the next call, then cleared

    def _node(self, mode: int) -> Node:
        n = Node(self.next_ino, mode, atime=time.time(), mtime=time.time())
        self.next_ino += 1
        return n

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self.fail_with is not None:
            e, self.fail_with = self.fail_with, None
            raise e

    def _walk(self, path: str, what: str) -> tuple[Node, str, Node | None]:
        """(parent directory, last name, the node or None)."""
        parts = [p for p in path.split("/") if p]
        node = self.root
        for p in parts[:-1]:
            nxt = node.entries.get(p)
            if nxt is None:
                raise FsError(Err.ENOENT, what, path)
            if not stat.S_ISDIR(nxt.mode):
                raise FsError(Err.ENOTDIR, what, path)
            node = nxt
        if not parts:
            return self.root, "", self.root
        return node, parts[-1], node.entries.get(parts[-1])

    def _get(self, path: str, what: str) -> Node:
        node = self._walk(path, what)[2]
        if node is None:
            raise FsError(Err.ENOENT, what, path)
        return node

    def _fd(self, fd: int, what: str) -> tuple[Node, int]:
        if fd not in self.fds:
            raise FsError(Err.EBADF, what)
        return self.fds[fd]

    @staticmethod
    def _stat(n: Node) -> fs.Stat:
        size = len(n.target) if stat.S_ISLNK(n.mode) else len(n.data)
        return fs.Stat(n.ino, n.mode, n.nlink, 0, 0, size, n.atime, n.mtime, n.mtime,
                       (size + 511) // 512, 0)

    # -- what SystemFs calls ---------------------------------------------------------------

    def lstat(self, path: str) -> fs.Stat:
        self._enter("lstat")
        return self._stat(self._get(path, "stat"))

    def stat(self, path: str) -> fs.Stat:
        self._enter("stat")
        return self._stat(self._get(path, "stat"))

    def fstat(self, fd: int) -> fs.Stat:
        self._enter("fstat")
        return self._stat(self._fd(fd, "fstat")[0])

    def open(self, path: str, flags: int = fs.O_RDONLY, mode: int = 0o644) -> int:
        self._enter("open")
        parent, name, node = self._walk(path, "open")
        if node is not None and flags & fs.O_CREAT and flags & fs.O_EXCL:
            raise FsError(Err.EEXIST, "open", path)
        if node is None:
            if not flags & fs.O_CREAT:
                raise FsError(Err.ENOENT, "open", path)
            node = parent.entries[name] = self._node(stat.S_IFREG | mode)
        if flags & fs.O_DIRECTORY and not stat.S_ISDIR(node.mode):
            raise FsError(Err.ENOTDIR, "open", path)
        if flags & fs.O_TRUNC:
            node.data.clear()
        fd = max(self.fds, default=2) + 1
        self.fds[fd] = (node, flags)
        return fd

    def close(self, fd: int) -> None:
        self._enter("close")
        self._fd(fd, "close")
        del self.fds[fd]

    def pread(self, fd: int, count: int, pos: int) -> bytes:
        self._enter("pread")
        node, flags = self._fd(fd, "read")
        if flags & 3 == fs.O_WRONLY:
            raise FsError(Err.EBADF, "read")
        self.reads.append(count)
        return bytes(node.data[pos:pos + count])

    def pwrite(self, fd: int, data: bytes, pos: int) -> int:
        self._enter("pwrite")
        node, flags = self._fd(fd, "write")
        if flags & 3 == fs.O_RDONLY:
            raise FsError(Err.EBADF, "write")
        self.writes.append(len(data))
        if len(node.data) < pos:
            node.data.extend(bytes(pos - len(node.data)))
        node.data[pos:pos + len(data)] = data
        return len(data)

    def ftruncate(self, fd: int, size: int) -> None:
        self._enter("ftruncate")
        self._resize(self._fd(fd, "truncate")[0], size)

    def truncate(self, path: str, size: int) -> None:
        self._enter("truncate")
        self._resize(self._get(path, "truncate"), size)

    @staticmethod
    def _resize(node: Node, size: int) -> None:
        del node.data[size:]
        node.data.extend(bytes(size - len(node.data)))

    def fsync(self, fd: int) -> None:
        self._enter("fsync")
        self._fd(fd, "fsync")

    def sync(self) -> None:
        self._enter("sync")
        self.syncs += 1

    def readdir(self, path: str) -> list[tuple[str, int]]:
        self._enter("readdir")
        node = self._get(path, "open")
        if not stat.S_ISDIR(node.mode):
            raise FsError(Err.ENOTDIR, "open", path)
        return [(".", node.ino), ("..", node.ino)] + [(n, c.ino) for n, c in node.entries.items()]

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        self._enter("mkdir")
        parent, name, node = self._walk(path, "mkdir")
        if node is not None:
            raise FsError(Err.EEXIST, "mkdir", path)
        if len(name) > 60:
            raise FsError(Err.ENAMETOOLONG, "mkdir", path)
        parent.entries[name] = self._node(stat.S_IFDIR | mode)

    def rmdir(self, path: str) -> None:
        self._enter("rmdir")
        parent, name, node = self._walk(path, "rmdir")
        if node is None:
            raise FsError(Err.ENOENT, "rmdir", path)
        if node.entries:
            raise FsError(Err.ENOTEMPTY, "rmdir", path)
        del parent.entries[name]

    def unlink(self, path: str) -> None:
        self._enter("unlink")
        parent, name, node = self._walk(path, "unlink")
        if node is None:
            raise FsError(Err.ENOENT, "unlink", path)
        if stat.S_ISDIR(node.mode):
            raise FsError(Err.EPERM, "unlink", path)
        node.nlink -= 1
        del parent.entries[name]

    def rename(self, old: str, new: str) -> None:
        self._enter("rename")
        op, oname, node = self._walk(old, "rename")
        if node is None:
            raise FsError(Err.ENOENT, "rename", old)
        np, nname, _ = self._walk(new, "rename")
        del op.entries[oname]
        np.entries[nname] = node

    def link(self, old: str, new: str) -> None:
        self._enter("link")
        node = self._get(old, "link")
        np, nname, there = self._walk(new, "link")
        if there is not None:
            raise FsError(Err.EEXIST, "link", new)
        node.nlink += 1
        np.entries[nname] = node

    def symlink(self, target: str, path: str) -> None:
        self._enter("symlink")
        parent, name, node = self._walk(path, "symlink")
        if node is not None:
            raise FsError(Err.EEXIST, "symlink", path)
        link = parent.entries[name] = self._node(stat.S_IFLNK | 0o777)
        link.target = target

    def readlink(self, path: str) -> str:
        self._enter("readlink")
        node = self._get(path, "readlink")
        if not stat.S_ISLNK(node.mode):
            raise FsError(Err.EINVAL, "readlink", path)
        return node.target

    def chmod(self, path: str, mode: int) -> None:
        self._enter("chmod")
        node = self._get(path, "chmod")
        node.mode = stat.S_IFMT(node.mode) | mode

    def utimes(self, path: str, times: tuple[float, float] | None = None) -> None:
        self._enter("utimes")
        node = self._get(path, "utimes")
        node.atime, node.mtime = times if times is not None else (time.time(),) * 2

    def statvfs(self, path: str = "/") -> fs.StatVfs:
        self._enter("statvfs")
        return fs.StatVfs(4096, 1000, 900, 500, 400, 60)
