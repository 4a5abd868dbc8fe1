"""VFS's request dispatch, apart from its process's plumbing (runs in VFS).

``Vfs.dispatch`` takes one VfsReq message and returns its reply, or None
(EDONTREPLY) when the reply comes later through ``reply``: a request whose
chain is waiting for a file server (services/vfs/task.py), or any request
that arrives before the root file system is mounted (parked, then started
once it is).  Everything outside VFS's own state comes in as callables, so
the same code runs in the server (services/vfs/main.py) and, in tests, in
the test's process against a fake file server:

* ``send(dst, m, on_answer, timeout)``: the loop's ``request``;
* ``reply(request, answer)``: the loop's ``reply`` (its status:
  EDEADSRCDST means the caller died, and its descriptors are closed);
* ``find_label(label)``: an endpoint from DS; ``is_operator(endpoint)``.

Nothing in a request is trusted: a field of the wrong type or range is
EINVAL; every refusal is counted (services/vfs/guard.py); an exception no
check foresaw fails that request with EINVAL, logged once with its
traceback, and VFS goes on.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from minikern import params
from minikern.const import Err, VfsReq, err_name
from minikern.ipc import KernelGone
from minikern.proto import Message
from services.vfs.files import FileOps
from services.vfs.fsconn import FileServer, Sender
from services.vfs.guard import Guard
from services.vfs.mounting import FindLabel, IsOperator, MountOps
from services.vfs.paths import PathOps
from services.vfs.state import State
from services.vfs.tables import Mount, Proc
from services.vfs.task import Fail, Reply, Task

Answer = Callable[[Message, Message], int]
Handler = Callable[[Proc, dict[str, Any]], Reply]


class Vfs:
    def __init__(self, send: Sender, reply: Answer, find_label: FindLabel,
                 is_operator: IsOperator, timeout: float = params.FS_REQUEST_TIMEOUT) -> None:
        self.send, self.reply, self.timeout = send, reply, timeout
        self.guard = Guard()
        self.st = State(self.guard)
        self.files = FileOps(self.st)
        self.paths = PathOps(self.st, self.files)
        self.mounts = MountOps(self.st, find_label, self.make_server, is_operator)
        self.parked: list[Message] = []
        f, p, m = self.files, self.paths, self.mounts
        self.table: dict[int, Handler] = {
            VfsReq.OPEN: f.do_open, VfsReq.CLOSE: f.do_close, VfsReq.READ: f.do_read,
            VfsReq.WRITE: f.do_write, VfsReq.LSEEK: f.do_lseek, VfsReq.FSTAT: f.do_fstat,
            VfsReq.GETDENTS: f.do_getdents, VfsReq.FSYNC: f.do_fsync,
            VfsReq.STAT: p.do_stat, VfsReq.MKDIR: p.do_mkdir, VfsReq.RMDIR: p.do_rmdir,
            VfsReq.UNLINK: p.do_unlink, VfsReq.RENAME: p.do_rename, VfsReq.LINK: p.do_link,
            VfsReq.SYMLINK: p.do_symlink, VfsReq.READLINK: p.do_readlink,
            VfsReq.TRUNCATE: p.do_truncate, VfsReq.SYNC: p.do_sync, VfsReq.CHMOD: p.do_chmod,
            VfsReq.UTIMES: p.do_utimes, VfsReq.CHDIR: p.do_chdir, VfsReq.STATVFS: p.do_statvfs,
            VfsReq.MOUNT: m.do_mount, VfsReq.UMOUNT: m.do_umount}

    def make_server(self, label: str, endpoint: int) -> FileServer:
        return FileServer(label, endpoint, self.send, self.guard, self.timeout)

    @property
    def ready(self) -> bool:
        return self.st.mounts.root is not None

    # -- requests ---------------------------------------------------------------------

    def dispatch(self, m: Message) -> Message | None:
        """Serve one request: its reply now, or None (answered later with ``reply``)."""
        handler = self.table.get(m.type)
        if handler is None:
            self.guard.refused(m.type, Err.EBADREQUEST, m.source)
            return Message(Err.EBADREQUEST)
        if not self.ready:
            if len(self.parked) >= params.VFS_MAX_PARKED:
                self.guard.refused(m.type, Err.EAGAIN, m.source, "no root yet, too many wait")
                return Message(Err.EAGAIN)
            self.parked.append(m)
            return None
        proc = self.st.proc(m.source)
        proc.busy += 1
        task: Task | None = None
        try:
            op = handler(proc, dict(m.fields))
            if isinstance(op, Message):
                return self._done(m, proc, op)
            task = Task(op, lambda reply: self._late(m, proc, reply),
                        lambda e: self.guard.failed(m.type, e))
            out = task.start()
            return None if out is None else self._done(m, proc, out)
        except Fail as e:
            return self._done(m, proc, Message(e.code), e.why)
        except KernelGone:
            raise
        except Exception as e:  # noqa: BLE001 (the last resort: this request fails, not VFS)
            self.guard.failed(m.type, e)
            return self._done(m, proc, Message(Err.EINVAL))

    def _done(self, m: Message, proc: Proc, reply: Message, why: str = "") -> Message:
        proc.busy -= 1
        if reply.type != Err.OK:
            self.guard.refused(m.type, reply.type, m.source, why)
        self.st.forget_idle(proc.endpoint)
        return reply

    def _late(self, m: Message, proc: Proc, reply: Message) -> None:
        reply = self._done(m, proc, reply)
        if self.reply(m, reply) == Err.EDEADSRCDST:
            self.owner_died(m.source)

    def unpark(self) -> None:
        """The root is mounted: serve the requests that waited for it, in order."""
        waiting, self.parked = self.parked, []
        for m in waiting:
            out = self.dispatch(m)
            if out is not None and self.reply(m, out) == Err.EDEADSRCDST:
                self.owner_died(m.source)

    # -- the root, and processes that die ----------------------------------------------

    def mount_root(self, fs_label: str, driver: str, minor: int, readonly: bool,
                   done: Callable[[int, str], None]) -> None:
        """Mount the root file system; ``done(status, why)`` when it worked or failed."""
        def finished(reply: Message) -> None:
            if reply.type == Err.OK:
                self.unpark()
            done(reply.type, str(reply.get("error", "")))
        try:
            op = self.mounts.mount_root(fs_label, driver, minor, readonly)
        except Fail as e:
            done(e.code, e.why)
            return
        if isinstance(op, Message):
            finished(op)
            return
        task = Task(op, finished, lambda e: self.guard.failed("mount root", e))
        out = task.start()
        if out is not None:
            finished(out)

    def boot_mount(self, path: str, label: str, driver: str, minor: int,
                   done: Callable[[int, str], None]) -> None:
        """One of VFS's ``--mount`` arguments, once the root is mounted; ``done(status, why)``."""
        try:
            op = self.mounts.boot_mount(path, label, driver, minor)
        except Fail as e:
            done(e.code, e.why)
            return
        if isinstance(op, Message):
            done(op.type, "")
            return
        task = Task(op, lambda reply: done(reply.type, str(reply.get("error", ""))),
                    lambda e: self.guard.failed("boot mount", e))
        out = task.start()
        if out is not None:
            done(out.type, "")

    def check_servers(self) -> None:
        """Mount again on every mounted file server that RS restarted (DS names a new endpoint
        for its label), or whose last recovery failed."""
        for mount in list(self.st.mounts.all):
            fs = mount.fs
            if fs.recovering is not None:
                continue
            endpoint = self.mounts.find_label(fs.label)
            if endpoint is not None and (endpoint != fs.endpoint or fs.stale):
                self._recover(mount, endpoint)

    def _recover(self, mount: Mount, endpoint: int) -> None:
        fs = mount.fs
        print(f"vfs: file server {fs.label} is back at endpoint {endpoint} (was "
              f"{fs.endpoint}): mounting {mount.driver} minor {mount.minor} again", flush=True)

        def finished(reply: Message) -> None:
            fs.stale = reply.type != Err.OK
            fs.recovered()
            print(f"vfs: file server {fs.label}: "
                  + (f"mounted again, {reply.get('lost', 0)} vnode(s) lost" if not fs.stale
                     else f"mounting again failed: {err_name(reply.type)}; trying again"),
                  flush=True)
        for v in self.st.vnodes.of(fs):
            v.fs_refs = 0  # the old instance's references died with it
        task = Task(self.mounts.recover(mount), finished,
                    lambda e: self.guard.failed(f"recovery of {fs.label}", e))
        fs.restarted(endpoint, task)
        out = task.start()
        if out is not None:
            finished(out)

    def owner_died(self, endpoint: int) -> int:
        closed = self.st.owner_died(endpoint)
        if closed:
            print(f"vfs: closed {closed} file(s) of endpoint {endpoint}, which died", flush=True)
        return closed

    def sweep(self, alive: set[int] | None) -> None:
        """Close the files of every process the kernel no longer lists (None: it did not say)."""
        if alive is None:
            self.guard.once("sweep GETINFO failed", "cannot look for dead processes: GETINFO failed")
            return
        for endpoint in [e for e in self.st.procs if e not in alive]:
            self.owner_died(endpoint)
