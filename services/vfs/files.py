"""VFS's descriptor requests: OPEN, CLOSE, READ, WRITE, LSEEK, FSTAT, GETDENTS, FSYNC and
TRUNCATE of an fd (runs in VFS; docs/PROTOCOL.md section 21).

Each ``do_<request>(proc, fields)`` answers at once (a Message) or with a
chain (services/vfs/task.py).  A descriptor that does not exist is EBADF;
a READ on one opened O_WRONLY, or a WRITE or TRUNCATE on one opened
O_RDONLY, is EBADF too (POSIX).  Data moves at most FS_MAX_IO bytes a
request; the library (userland/fs.py) loops.

OPEN: O_CREAT makes a regular file if the name is absent (O_EXCL: EEXIST
if present); O_TRUNC empties a regular file opened for writing; O_DIRECTORY
requires a directory (ENOTDIR); O_NOFOLLOW refuses a final symlink
(ELOOP); a directory opens only read-only (EISDIR).  O_APPEND: every WRITE
goes at the end of the file as the file server knows it at that moment
(the STAT and the WRITE go out back to back, see fsconn.py).
"""
from __future__ import annotations

import stat as S
from typing import Any

from minikern.const import (FS_MAX_IO, O_ACCMODE, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL,
                            O_NOFOLLOW, O_RDONLY, O_TRUNC, Err, FsReq)
from minikern.proto import Message
from services.vfs.fields import MAX_OFFSET, maybe_int, want_bytes, want_int, want_str
from services.vfs.lookup import Node, checked_stat
from services.vfs.state import State
from services.vfs.tables import Filp, Proc
from services.vfs.task import Call, Fail, Op, Reply

OPEN_FLAGS = O_ACCMODE | O_APPEND | O_CREAT | O_TRUNC | O_EXCL | O_DIRECTORY | O_NOFOLLOW
MAX_DENTS = 256  # entries in one GETDENTS (the file server's bound)
EMPTY_DENTS_TRIES = 64  # GETDENTS answers without entries but not at the end, before giving up


class FileOps:
    def __init__(self, st: State) -> None:
        self.st = st
        self.r = st.resolver

    def do_open(self, proc: Proc, f: dict[str, Any]) -> Reply:
        path = want_str(f, "path")
        flags = want_int(f, "flags", 0, OPEN_FLAGS)
        mode = want_int(f, "mode", 0, 0o7777, default=0o644)
        if flags & O_ACCMODE == O_ACCMODE:
            raise Fail(Err.EINVAL, "access mode 3")
        self.st.room_for_fd(proc)
        return self._open(proc, path, flags, mode)

    def _open(self, proc: Proc, path: str, flags: int, mode: int) -> Op:
        follow = not flags & O_NOFOLLOW
        created = False
        if flags & O_CREAT:
            d, name = yield from self.r.parent(path, proc.cwd)
            node = (yield from self.r.entry(d, name)) if name else d
            if node is not None and flags & O_EXCL:
                raise Fail(Err.EEXIST)
            if node is None:
                answer = yield Call(d.fs, FsReq.CREATE, {
                    "dir": d.ino, "name": name, "mode": S.S_IFREG | mode, "uid": 0, "gid": 0})
                stat = checked_stat(answer.get("stat"))
                node, created = Node(d.fs, stat["ino"], stat), True
            elif node.is_link or self.st.mounts.on(node.fs, node.ino) is not None:
                node = yield from self.r.resolve(path, proc.cwd, follow)  # follow, or cross
        else:
            node = yield from self.r.resolve(path, proc.cwd, follow)
        stat = yield from self.r.with_stat(node)
        if S.S_ISLNK(stat["mode"]):
            raise Fail(Err.ELOOP)
        if flags & O_DIRECTORY and not S.S_ISDIR(stat["mode"]):
            raise Fail(Err.ENOTDIR)
        if S.S_ISDIR(stat["mode"]) and (flags & O_ACCMODE != O_RDONLY or flags & O_TRUNC):
            raise Fail(Err.EISDIR)
        if flags & O_TRUNC and flags & O_ACCMODE != O_RDONLY and not created \
                and S.S_ISREG(stat["mode"]) and stat["size"] > 0:
            yield Call(node.fs, FsReq.FTRUNC, {"ino": node.ino, "size": 0})
        vnode = yield from self.r.acquire(node)
        fd = self.st.install(proc, vnode, flags)
        return Message(Err.OK, {"fd": fd})

    def do_close(self, proc: Proc, f: dict[str, Any]) -> Reply:
        self.st.filp(proc, f)
        self.st.close(proc, f["fd"])
        return Message(Err.OK)

    def do_read(self, proc: Proc, f: dict[str, Any]) -> Reply:
        filp = self.st.filp(proc, f)
        count = min(want_int(f, "count"), FS_MAX_IO)
        pos = maybe_int(f, "pos")
        if not filp.readable:
            raise Fail(Err.EBADF, "not open for reading")
        if filp.vnode.is_dir:
            raise Fail(Err.EISDIR)
        return self._read(filp, count, pos)

    def _read(self, filp: Filp, count: int, pos: int | None) -> Op:
        at = filp.offset if pos is None else pos
        if count == 0:
            return Message(Err.OK, {"data": b""})
        answer = yield Call(filp.vnode.fs, FsReq.READ,
                            {"ino": filp.vnode.ino, "pos": at, "count": count})
        data = answer.get("data")
        if type(data) is not bytes or len(data) > count:
            raise Fail(Err.EIO, "malformed READ answer")
        if pos is None:
            filp.offset = at + len(data)
        return Message(Err.OK, {"data": data})

    def do_write(self, proc: Proc, f: dict[str, Any]) -> Reply:
        filp = self.st.filp(proc, f)
        data = want_bytes(f, "data")
        pos = maybe_int(f, "pos")
        if len(data) > FS_MAX_IO:
            raise Fail(Err.E2BIG)
        if not filp.writable:
            raise Fail(Err.EBADF, "not open for writing")
        if filp.vnode.is_dir:
            raise Fail(Err.EISDIR)
        return self._write(filp, data, pos)

    def _write(self, filp: Filp, data: bytes, pos: int | None) -> Op:
        v = filp.vnode
        at = pos
        if at is None and filp.flags & O_APPEND:
            answer = yield Call(v.fs, FsReq.STAT, {"ino": v.ino})
            at = checked_stat(answer.get("stat"))["size"]
        elif at is None:
            at = filp.offset
        if not data:
            return Message(Err.OK, {"count": 0})
        answer = yield Call(v.fs, FsReq.WRITE, {"ino": v.ino, "pos": at, "data": data})
        count = answer.get("count")
        if type(count) is not int or not 0 <= count <= len(data):
            raise Fail(Err.EIO, "malformed WRITE answer")
        if pos is None:
            filp.offset = at + count
        return Message(Err.OK, {"count": count})

    def do_lseek(self, proc: Proc, f: dict[str, Any]) -> Reply:
        filp = self.st.filp(proc, f)
        offset = want_int(f, "offset", -MAX_OFFSET, MAX_OFFSET)
        whence = want_int(f, "whence", 0, 2)
        if filp.vnode.is_dir:  # a directory's offset is a slot: only a rewind is meaningful
            if (offset, whence) != (0, 0):
                raise Fail(Err.EINVAL, "a directory seeks only back to its start")
            filp.offset, filp.dir_end = 0, False
            return Message(Err.OK, {"pos": 0})
        if whence != 2:
            return self._seek(filp, (0 if whence == 0 else filp.offset) + offset)
        return self._seek_end(filp, offset)

    def _seek(self, filp: Filp, pos: int) -> Message:
        if not 0 <= pos <= MAX_OFFSET:
            raise Fail(Err.EINVAL, "a negative offset")
        filp.offset = pos
        return Message(Err.OK, {"pos": pos})

    def _seek_end(self, filp: Filp, offset: int) -> Op:
        answer = yield Call(filp.vnode.fs, FsReq.STAT, {"ino": filp.vnode.ino})
        return self._seek(filp, checked_stat(answer.get("stat"))["size"] + offset)

    def do_fstat(self, proc: Proc, f: dict[str, Any]) -> Reply:
        filp = self.st.filp(proc, f)
        return self._fstat(filp)

    def _fstat(self, filp: Filp) -> Op:
        answer = yield Call(filp.vnode.fs, FsReq.STAT, {"ino": filp.vnode.ino})
        stat = checked_stat(answer.get("stat"))
        filp.vnode.mode = stat["mode"]
        return Message(Err.OK, {"stat": stat})

    def do_getdents(self, proc: Proc, f: dict[str, Any]) -> Reply:
        filp = self.st.filp(proc, f)
        count = min(want_int(f, "max", 1, 1 << 20, default=MAX_DENTS), MAX_DENTS)
        if not filp.vnode.is_dir:
            raise Fail(Err.ENOTDIR)
        if filp.dir_end:
            return Message(Err.OK, {"entries": []})
        return self._getdents(filp, count)

    def _getdents(self, filp: Filp, count: int) -> Op:
        for _ in range(EMPTY_DENTS_TRIES):
            answer = yield Call(filp.vnode.fs, FsReq.GETDENTS,
                                {"ino": filp.vnode.ino, "pos": filp.offset, "max": count})
            entries, nxt = answer.get("entries"), answer.get("next")
            if type(entries) is not list or len(entries) > count or type(nxt) is not int \
                    or nxt < -1 or not all(_dirent(e) for e in entries):
                raise Fail(Err.EIO, "malformed GETDENTS answer")
            if nxt == -1:
                filp.dir_end = True
            else:
                filp.offset = nxt
            if entries or filp.dir_end:
                return Message(Err.OK, {"entries": entries})
        raise Fail(Err.EIO, "GETDENTS makes no progress")

    def do_fsync(self, proc: Proc, f: dict[str, Any]) -> Reply:
        filp = self.st.filp(proc, f)
        return self._sync_one(filp)

    def _sync_one(self, filp: Filp) -> Op:
        yield Call(filp.vnode.fs, FsReq.SYNC, {})
        return Message(Err.OK)

    def do_ftruncate(self, proc: Proc, f: dict[str, Any]) -> Reply:
        filp = self.st.filp(proc, f)
        size = want_int(f, "size")
        if filp.vnode.is_dir:
            raise Fail(Err.EISDIR)
        if not filp.writable:
            raise Fail(Err.EBADF, "not open for writing")
        return self._ftrunc(filp, size)

    def _ftrunc(self, filp: Filp, size: int) -> Op:
        yield Call(filp.vnode.fs, FsReq.FTRUNC, {"ino": filp.vnode.ino, "size": size})
        return Message(Err.OK)


def _dirent(e: object) -> bool:
    return (type(e) is list and len(e) == 2 and type(e[0]) is str and type(e[1]) is int
            and e[1] > 0)
