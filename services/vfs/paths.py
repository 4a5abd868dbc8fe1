"""VFS's path requests: STAT, MKDIR, RMDIR, UNLINK, RENAME, LINK, SYMLINK, READLINK,
TRUNCATE of a path, CHMOD, UTIMES, CHDIR, STATVFS and SYNC (runs in VFS; PROTOCOL.md 21).

Each resolves its path (services/vfs/lookup.py), then asks the file server
that holds the result.  Rules VFS adds to the file servers' own:

* a directory something is mounted on, or the root of a mount, cannot be
  removed or renamed, nor replaced by a rename (EBUSY);
* RENAME and LINK within one file server only (EXDEV);
* a request naming no last component ("/", a path ending in "..") is EEXIST
  for what would create it, EBUSY for what would remove or rename it;
* READLINK of anything but a symlink is EINVAL.
"""
from __future__ import annotations

import stat as S
from typing import Any

from minikern.const import PATH_MAX, Err, FsReq
from minikern.proto import Message
from services.vfs.fields import want_bool, want_int, want_num, want_str
from services.vfs.files import FileOps
from services.vfs.lookup import Node, split
from services.vfs.state import State
from services.vfs.tables import Proc
from services.vfs.task import Call, Fail, Op, Reply

STATVFS_FIELDS = ("bsize", "blocks", "bfree", "files", "ffree", "namemax")


class PathOps:
    def __init__(self, st: State, files: FileOps) -> None:
        self.st, self.files = st, files
        self.r = st.resolver

    def _busy(self, node: Node | None) -> bool:
        """True if ``node`` is a mount point or a mount's root."""
        m = self.st.mounts
        return node is not None and (m.on(node.fs, node.ino) is not None
                                     or m.rooted_at(node.fs, node.ino) is not None)

    def do_stat(self, proc: Proc, f: dict[str, Any]) -> Reply:
        path, follow = want_str(f, "path"), want_bool(f, "follow", True)
        return self._stat(proc, path, follow)

    def _stat(self, proc: Proc, path: str, follow: bool) -> Op:
        node = yield from self.r.resolve(path, proc.cwd, follow)
        return Message(Err.OK, {"stat": (yield from self.r.with_stat(node))})

    def do_mkdir(self, proc: Proc, f: dict[str, Any]) -> Reply:
        path, mode = want_str(f, "path"), want_int(f, "mode", 0, 0o7777, default=0o755)
        return self._mkdir(proc, path, mode)

    def _mkdir(self, proc: Proc, path: str, mode: int) -> Op:
        d, name = yield from self.r.parent(path, proc.cwd)
        if not name:
            raise Fail(Err.EEXIST)
        yield Call(d.fs, FsReq.MKDIR, {"dir": d.ino, "name": name, "mode": S.S_IFDIR | mode,
                                       "uid": 0, "gid": 0})
        return Message(Err.OK)

    def do_rmdir(self, proc: Proc, f: dict[str, Any]) -> Reply:
        return self._remove(proc, want_str(f, "path"), FsReq.RMDIR)

    def do_unlink(self, proc: Proc, f: dict[str, Any]) -> Reply:
        return self._remove(proc, want_str(f, "path"), FsReq.UNLINK)

    def _remove(self, proc: Proc, path: str, req: FsReq) -> Op:
        d, name = yield from self.r.parent(path, proc.cwd)
        if not name:
            raise Fail(Err.EBUSY)
        node = yield from self.r.entry(d, name)
        if node is None:
            raise Fail(Err.ENOENT)
        if self._busy(node):
            raise Fail(Err.EBUSY)
        yield Call(d.fs, req, {"dir": d.ino, "name": name})
        return Message(Err.OK)

    def do_rename(self, proc: Proc, f: dict[str, Any]) -> Reply:
        return self._rename(proc, want_str(f, "old"), want_str(f, "new"))

    def _rename(self, proc: Proc, old: str, new: str) -> Op:
        od, oname = yield from self.r.parent(old, proc.cwd)
        nd, nname = yield from self.r.parent(new, proc.cwd)
        if not oname or not nname:
            raise Fail(Err.EBUSY)
        if od.fs is not nd.fs:
            raise Fail(Err.EXDEV)
        source = yield from self.r.entry(od, oname)
        if source is None:
            raise Fail(Err.ENOENT)
        target = yield from self.r.entry(nd, nname)
        if self._busy(source) or self._busy(target):
            raise Fail(Err.EBUSY)
        yield Call(od.fs, FsReq.RENAME, {"odir": od.ino, "oname": oname,
                                         "ndir": nd.ino, "nname": nname})
        return Message(Err.OK)

    def do_link(self, proc: Proc, f: dict[str, Any]) -> Reply:
        return self._link(proc, want_str(f, "old"), want_str(f, "new"))

    def _link(self, proc: Proc, old: str, new: str) -> Op:
        source = yield from self.r.resolve(old, proc.cwd, follow=False)
        d, name = yield from self.r.parent(new, proc.cwd)
        if not name:
            raise Fail(Err.EEXIST)
        if source.fs is not d.fs:
            raise Fail(Err.EXDEV)
        yield Call(d.fs, FsReq.LINK, {"ino": source.ino, "dir": d.ino, "name": name})
        return Message(Err.OK)

    def do_symlink(self, proc: Proc, f: dict[str, Any]) -> Reply:
        target, path = want_str(f, "target", PATH_MAX), want_str(f, "path")
        split(target)  # ENOENT if empty, ENAMETOOLONG if a component is too long
        return self._symlink(proc, target, path)

    def _symlink(self, proc: Proc, target: str, path: str) -> Op:
        d, name = yield from self.r.parent(path, proc.cwd)
        if not name:
            raise Fail(Err.EEXIST)
        yield Call(d.fs, FsReq.SLINK, {"dir": d.ino, "name": name, "target": target,
                                       "uid": 0, "gid": 0})
        return Message(Err.OK)

    def do_readlink(self, proc: Proc, f: dict[str, Any]) -> Reply:
        return self._readlink(proc, want_str(f, "path"))

    def _readlink(self, proc: Proc, path: str) -> Op:
        node = yield from self.r.resolve(path, proc.cwd, follow=False)
        if not node.is_link:
            raise Fail(Err.EINVAL, "not a symlink")
        return Message(Err.OK, {"target": (yield from self.r.readlink(node))})

    def do_truncate(self, proc: Proc, f: dict[str, Any]) -> Reply:
        if f.get("path") is None:
            return self.files.do_ftruncate(proc, f)
        path, size = want_str(f, "path"), want_int(f, "size")
        return self._truncate(proc, path, size)

    def _truncate(self, proc: Proc, path: str, size: int) -> Op:
        node = yield from self.r.resolve(path, proc.cwd)
        if node.is_dir:
            raise Fail(Err.EISDIR)
        yield Call(node.fs, FsReq.FTRUNC, {"ino": node.ino, "size": size})
        return Message(Err.OK)

    def do_chmod(self, proc: Proc, f: dict[str, Any]) -> Reply:
        path, mode = want_str(f, "path"), want_int(f, "mode", 0, 0o7777)
        return self._chmod(proc, path, mode)

    def _chmod(self, proc: Proc, path: str, mode: int) -> Op:
        node = yield from self.r.resolve(path, proc.cwd)
        yield Call(node.fs, FsReq.CHMOD, {"ino": node.ino, "mode": mode})
        return Message(Err.OK)

    def do_utimes(self, proc: Proc, f: dict[str, Any]) -> Reply:
        path, atime, mtime = want_str(f, "path"), want_num(f, "atime"), want_num(f, "mtime")
        return self._utimes(proc, path, atime, mtime)

    def _utimes(self, proc: Proc, path: str, atime: float, mtime: float) -> Op:
        node = yield from self.r.resolve(path, proc.cwd)
        yield Call(node.fs, FsReq.UTIME, {"ino": node.ino, "atime": atime, "mtime": mtime})
        return Message(Err.OK)

    def do_chdir(self, proc: Proc, f: dict[str, Any]) -> Reply:
        return self._chdir(proc, want_str(f, "path"))

    def _chdir(self, proc: Proc, path: str) -> Op:
        node = yield from self.r.resolve(path, proc.cwd)
        if not node.is_dir:
            raise Fail(Err.ENOTDIR)
        self.st.set_cwd(proc, (yield from self.r.acquire(node)))
        return Message(Err.OK)

    def do_statvfs(self, proc: Proc, f: dict[str, Any]) -> Reply:
        return self._statvfs(proc, want_str(f, "path", PATH_MAX) if "path" in f else "/")

    def _statvfs(self, proc: Proc, path: str) -> Op:
        node = yield from self.r.resolve(path, proc.cwd)
        answer = yield Call(node.fs, FsReq.STATVFS, {})
        out = {k: answer.get(k) for k in STATVFS_FIELDS}
        if not all(type(v) is int and v >= 0 for v in out.values()):
            raise Fail(Err.EIO, "malformed STATVFS answer")
        return Message(Err.OK, out)

    def do_sync(self, proc: Proc, f: dict[str, Any]) -> Reply:
        return self._sync()

    def _sync(self) -> Op:
        """Every mounted file server writes back, one after the other; the first error wins."""
        first: Fail | None = None
        for fs in self.st.mounts.servers():
            try:
                yield Call(fs, FsReq.SYNC, {})
            except Fail as e:
                first = first or e
        if first is not None:
            raise first
        return Message(Err.OK)

