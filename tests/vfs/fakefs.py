"""An in-memory file server speaking FsReq (docs/PROTOCOL.md section 20), and a harness that
runs VFS's dispatch (services/vfs/server.py) in the test's process against it.

The fake keeps the protocol's rules that VFS relies on (LOOKUP stops after a
symlink or an inode of ``stop_at``; the root's ".." is itself; GETNODE and
PUTNODE count references; an unlinked inode lives while referenced) and
records every request, so tests can check what VFS sent.  Answers are held
until the harness delivers them, so a test can see what is in flight.
"""
from __future__ import annotations

import stat as S
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minikern.const import NAME_MAX, Err, FsReq
from minikern.proto import Message
from services.vfs.server import Vfs


@dataclass
class Inode:
    ino: int
    mode: int
    data: bytearray = field(default_factory=bytearray)
    entries: dict[str, int] = field(default_factory=dict)
    target: str = ""
    nlinks: int = 1
    refs: int = 0
    mtime: float = 0.0
    atime: float = 0.0


class FsFail(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class FakeFs:
    def __init__(self, endpoint: int) -> None:
        self.endpoint = endpoint
        self.inodes: dict[int, Inode] = {1: Inode(1, S.S_IFDIR | 0o755, nlinks=2)}
        self.inodes[1].entries = {".": 1, "..": 1}
        self.next_ino = 2
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.mounted = False

    def get(self, ino: object) -> Inode:
        if type(ino) is not int or ino not in self.inodes:
            raise FsFail(Err.EINVAL)
        return self.inodes[ino]

    def dir(self, ino: object) -> Inode:
        d = self.get(ino)
        if not S.S_ISDIR(d.mode):
            raise FsFail(Err.ENOTDIR)
        return d

    def stat(self, i: Inode) -> dict[str, Any]:
        size = len(i.data) if S.S_ISREG(i.mode) else len(i.target) if S.S_ISLNK(i.mode) \
            else 64 * len(i.entries)
        return {"ino": i.ino, "mode": i.mode, "nlinks": i.nlinks, "uid": 0, "gid": 0,
                "size": size, "atime": i.atime, "mtime": i.mtime, "ctime": 0, "blocks": 0,
                "dev": 0}

    def new(self, mode: int) -> Inode:
        i = self.inodes[self.next_ino] = Inode(self.next_ino, mode)
        self.next_ino += 1
        return i

    def maybe_free(self, i: Inode) -> None:
        if i.nlinks <= 0 and i.refs <= 0:
            del self.inodes[i.ino]

    def add(self, d: Inode, name: str, i: Inode) -> None:
        if len(name.encode()) > NAME_MAX:
            raise FsFail(Err.ENAMETOOLONG)
        if name in d.entries:
            raise FsFail(Err.EEXIST)
        d.entries[name] = i.ino

    def answer(self, m: Message) -> Message:
        self.log.append((FsReq(m.type).name, dict(m.fields)))
        try:
            return Message(Err.OK, self.handle(FsReq(m.type), m.fields))
        except FsFail as e:
            return Message(e.code)

    def handle(self, req: FsReq, f: dict[str, Any]) -> dict[str, Any]:  # noqa: C901 PLR0911 PLR0912
        if req == FsReq.READSUPER:
            if self.mounted:
                raise FsFail(Err.EBUSY)
            self.mounted = True
            return {"root": self.stat(self.inodes[1]), "statvfs": {}}
        if req == FsReq.UNMOUNT:
            self.mounted = False
            return {}
        if req == FsReq.LOOKUP:
            cur, done = self.dir(f["dir"]), 0
            for name in f["names"]:
                if not S.S_ISDIR(cur.mode):
                    raise FsFail(Err.ENOTDIR)
                if name not in cur.entries:
                    raise FsFail(Err.ENOENT)
                cur, done = self.inodes[cur.entries[name]], done + 1
                if S.S_ISLNK(cur.mode) or cur.ino in f["stop_at"]:
                    break
            return {"done": done, "stat": self.stat(cur)}
        if req == FsReq.GETNODE:
            i = self.get(f["ino"])
            i.refs += 1
            return {"stat": self.stat(i)}
        if req == FsReq.PUTNODE:
            i = self.get(f["ino"])
            i.refs -= f["count"]
            assert i.refs >= 0, "PUTNODE gave back more than GETNODE took"
            self.maybe_free(i)
            return {}
        if req in (FsReq.CREATE, FsReq.MKDIR, FsReq.SLINK):
            d = self.dir(f["dir"])
            mode = S.S_IFLNK | 0o777 if req == FsReq.SLINK else f["mode"]
            i = self.new(mode)
            self.add(d, f["name"], i)
            if req == FsReq.MKDIR:
                i.entries, i.nlinks = {".": i.ino, "..": d.ino}, 2
                d.nlinks += 1
            if req == FsReq.SLINK:
                i.target = f["target"]
            return {"stat": self.stat(i)}
        if req in (FsReq.UNLINK, FsReq.RMDIR):
            d = self.dir(f["dir"])
            name = f["name"]
            if name not in d.entries:
                raise FsFail(Err.ENOENT)
            i = self.inodes[d.entries[name]]
            if req == FsReq.UNLINK and S.S_ISDIR(i.mode):
                raise FsFail(Err.EPERM)
            if req == FsReq.RMDIR:
                if name in (".", ".."):
                    raise FsFail(Err.EINVAL)
                if not S.S_ISDIR(i.mode):
                    raise FsFail(Err.ENOTDIR)
                if len(i.entries) > 2:
                    raise FsFail(Err.ENOTEMPTY)
                i.nlinks, d.nlinks = 0, d.nlinks - 1
            else:
                i.nlinks -= 1
            del d.entries[name]
            self.maybe_free(i)
            return {}
        if req == FsReq.RENAME:
            od, nd = self.dir(f["odir"]), self.dir(f["ndir"])
            if f["oname"] not in od.entries:
                raise FsFail(Err.ENOENT)
            ino = od.entries.pop(f["oname"])
            old = nd.entries.get(f["nname"])
            nd.entries[f["nname"]] = ino
            if old is not None and old != ino:
                self.inodes[old].nlinks -= 1
                self.maybe_free(self.inodes[old])
            return {}
        if req == FsReq.LINK:
            i, d = self.get(f["ino"]), self.dir(f["dir"])
            if S.S_ISDIR(i.mode):
                raise FsFail(Err.EPERM)
            self.add(d, f["name"], i)
            i.nlinks += 1
            return {}
        if req == FsReq.RDLINK:
            return {"target": self.get(f["ino"]).target}
        if req == FsReq.READ:
            i = self.get(f["ino"])
            return {"data": bytes(i.data[f["pos"]:f["pos"] + f["count"]])}
        if req == FsReq.WRITE:
            i, pos, data = self.get(f["ino"]), f["pos"], f["data"]
            if len(i.data) < pos:
                i.data.extend(bytes(pos - len(i.data)))
            i.data[pos:pos + len(data)] = data
            return {"count": len(data), "size": len(i.data)}
        if req == FsReq.GETDENTS:
            names = sorted(self.dir(f["ino"]).entries.items())
            part = names[f["pos"]:f["pos"] + f["max"]]
            nxt = f["pos"] + len(part)
            return {"entries": [[n, i] for n, i in part], "next": nxt if nxt < len(names) else -1}
        if req == FsReq.STAT:
            return {"stat": self.stat(self.get(f["ino"]))}
        if req == FsReq.CHMOD:
            i = self.get(f["ino"])
            i.mode = S.S_IFMT(i.mode) | f["mode"]
            return {"stat": self.stat(i)}
        if req == FsReq.FTRUNC:
            i = self.get(f["ino"])
            del i.data[f["size"]:]
            i.data.extend(bytes(f["size"] - len(i.data)))
            return {"stat": self.stat(i)}
        if req == FsReq.UTIME:
            i = self.get(f["ino"])
            i.atime, i.mtime = f["atime"], f["mtime"]
            return {"stat": self.stat(i)}
        if req == FsReq.SYNC:
            return {}
        if req == FsReq.STATVFS:
            return {"bsize": 1024, "blocks": 100, "bfree": 50, "files": 64, "ffree": 60,
                    "namemax": NAME_MAX}
        raise FsFail(Err.EBADREQUEST)


class Harness:
    """VFS's dispatch with fake file servers; answers go out when ``deliver`` says."""

    def __init__(self, labels: tuple[str, ...] = ("mfs",), operator: set[int] | None = None,
                 auto: bool = True) -> None:
        self.servers = {label: FakeFs(1000 + n) for n, label in enumerate(labels)}
        self.by_endpoint = {fs.endpoint: fs for fs in self.servers.values()}
        self.in_flight: list[tuple[FakeFs, Message, Callable[[Message], None]]] = []
        self.max_in_flight: dict[int, int] = {}
        self.replies: list[tuple[Message, Message]] = []  # (request, reply)
        self.operator = operator if operator is not None else {1}
        self.auto = auto
        self.held: set[int] = set()  # endpoints of file servers whose answers wait
        self.dead: set[int] = set()  # user endpoints whose replies fail (EDEADSRCDST)
        self.vfs = Vfs(self.send, self.reply, self.find_label, lambda e: e in self.operator)
        self.mounted: list[tuple[int, str]] = []
        self.vfs.mount_root("mfs", "at_wini", 0, False,
                            lambda status, why: self.mounted.append((status, why)))
        self.run()

    def find_label(self, label: str) -> int | None:
        fs = self.servers.get(label)
        return None if fs is None else fs.endpoint

    def send(self, dst: int, m: Message, on_answer: Callable[[Message], None],
             timeout: float) -> int:
        fs = self.by_endpoint.get(dst)
        if fs is None:
            return Err.EDEADSRCDST
        self.in_flight.append((fs, m, on_answer))
        n = sum(1 for f, _, _ in self.in_flight if f is fs)
        self.max_in_flight[dst] = max(self.max_in_flight.get(dst, 0), n)
        return Err.OK

    def reply(self, request: Message, answer: Message) -> int:
        if request.source in self.dead:
            return Err.EDEADSRCDST
        self.replies.append((request, answer))
        return Err.OK

    def run(self) -> None:
        """Deliver answers (of file servers not held) until nothing is in flight."""
        while True:
            ready = [x for x in self.in_flight if x[0].endpoint not in self.held]
            if not ready:
                return
            fs, m, on_answer = ready[0]
            self.in_flight.remove(ready[0])
            a = fs.answer(m)
            on_answer(Message(a.type, a.fields, source=fs.endpoint))

    def start(self, source: int, req: int, **fields: Any) -> Message:
        """Send a request; the reply lands in ``replies`` (or see ``result``)."""
        m = Message(req, fields, source=source)
        out = self.vfs.dispatch(m)
        if out is not None:
            self.replies.append((m, out))
        return m

    def result(self, m: Message) -> Message | None:
        return next((reply for request, reply in self.replies if request is m), None)

    def call(self, source: int, req: int, **fields: Any) -> Message:
        m = self.start(source, req, **fields)
        if self.auto:
            self.run()
        out = self.result(m)
        assert out is not None, f"no reply to {req:#x} {fields}"
        return out

    def ok(self, source: int, req: int, **fields: Any) -> dict[str, Any]:
        out = self.call(source, req, **fields)
        assert out.type == Err.OK, f"{req:#x} {fields}: {Err(out.type).name}"
        return out.fields

    def err(self, source: int, req: int, **fields: Any) -> int:
        return self.call(source, req, **fields).type
