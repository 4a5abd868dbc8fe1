"""Everything VFS knows, in one place, and the operations on it that never wait (runs in VFS).

The tables are described in services/vfs/tables.py.  ``State`` owns them;
the request handlers (files.py, paths.py, mounting.py) read and change
them only through the methods here and the tables' own, so the reference
counts stay right: every Vnode a Filp, a working directory or a Mount holds
was counted by ``Vnodes.hold`` and is given back by ``Vnodes.release``.
"""
from __future__ import annotations

from typing import Any

from minikern import params
from minikern.const import Err
from services.vfs.guard import Guard
from services.vfs.lookup import Resolver
from services.vfs.tables import Filp, Mounts, Proc, Vnode, Vnodes
from services.vfs.task import Fail


class State:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.procs: dict[int, Proc] = {}
        self.vnodes = Vnodes()
        self.mounts = Mounts()
        self.resolver = Resolver(self.mounts, self.vnodes)

    def proc(self, endpoint: int) -> Proc:
        p = self.procs.get(endpoint)
        if p is None:
            p = self.procs[endpoint] = Proc(endpoint)
        return p

    def open_files(self) -> int:
        return sum(len(p.fds) for p in self.procs.values())

    def room_for_fd(self, proc: Proc) -> None:
        """EMFILE if the process has no descriptor left, ENFILE if the system has no file."""
        if proc.free_fd() is None:
            raise Fail(Err.EMFILE)
        if self.open_files() >= params.VFS_NR_FILPS:
            raise Fail(Err.ENFILE)

    def filp(self, proc: Proc, f: dict[str, Any]) -> Filp:
        fd = f.get("fd")
        filp = proc.fds.get(fd) if type(fd) is int else None
        if filp is None:
            raise Fail(Err.EBADF)
        return filp

    def install(self, proc: Proc, vnode: Vnode, flags: int) -> int:
        """A new descriptor for a held vnode (the hold passes to the Filp)."""
        fd = proc.free_fd()
        if proc.dead or fd is None or self.open_files() >= params.VFS_NR_FILPS:
            self.vnodes.release(vnode)
            raise Fail(Err.EDEADSRCDST if proc.dead else
                       Err.EMFILE if fd is None else Err.ENFILE)
        proc.fds[fd] = Filp(vnode, flags)
        return fd

    def close(self, proc: Proc, fd: int) -> None:
        filp = proc.fds.pop(fd)
        self.vnodes.release(filp.vnode)

    def set_cwd(self, proc: Proc, vnode: Vnode) -> None:
        """The hold on ``vnode`` passes to the process."""
        if proc.dead:
            self.vnodes.release(vnode)
            raise Fail(Err.EDEADSRCDST)
        old, proc.cwd = proc.cwd, vnode
        if old is not None:
            self.vnodes.release(old)

    def owner_died(self, endpoint: int) -> int:
        """Close a dead process's descriptors and let go of its directory; how many fds."""
        proc = self.procs.pop(endpoint, None)
        if proc is None:
            return 0
        proc.dead = True
        closed = len(proc.fds)
        for fd in list(proc.fds):
            self.close(proc, fd)
        if proc.cwd is not None:
            self.vnodes.release(proc.cwd)
            proc.cwd = None
        return closed

    def forget_idle(self, endpoint: int) -> None:
        """Drop a process entry that holds nothing (so the table holds only useful ones)."""
        p = self.procs.get(endpoint)
        if p is not None and not p.fds and p.cwd is None and p.busy == 0:
            del self.procs[endpoint]
