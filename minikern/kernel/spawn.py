"""Process creation: a pool of clean template processes, each the kernel's own child.

A template is a fresh Python interpreter that has imported the libraries
(ZeroMQ, msgpack, minikern) and then waits on its startup socket.  It has
never run component code, so handing it a component to run gives a fresh
copy of that component, not a copy of anything that crashed, and saves the
interpreter start-up on the restart path.  Being the kernel's child, its
death is seen at once through its pidfd and its exit status read with
waitid.  The startup socket carries one record (who it is, its one-time
credential) and the fd of its private memory segment.

Queues (booted as root; minikern/sched.py): a template starts in
params.TEMPLATE_QUEUE, below every service, so the interpreter's start and its
imports, made while the instance that used the last template initialises, do
not run in the kernel's queue above it; the kernel moves it to the record's
queue before it sends the record, so the component runs there from its first
line (and a template started for a record, the pool being empty, at once).
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from dataclasses import dataclass

from minikern import params, sched
from minikern.proto import startup


@dataclass
class Template:
    pid: int
    pidfd: int
    sock: socket.socket


class Spawner:
    def __init__(self, console_fd: int, pool_size: int) -> None:
        self.console_fd = console_fd
        self.pool_size = pool_size
        self.pool: list[Template] = []

    def _start_template(self) -> Template:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        child.set_inheritable(True)
        argv = [sys.executable, "-m", "minikern.template", str(child.fileno()), str(os.getpid())]
        try:
            # the kernel's environment and directory, so minikern imports as it did for it
            pid = os.posix_spawn(sys.executable, argv, os.environ, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, self.console_fd, 1),
                (os.POSIX_SPAWN_DUP2, self.console_fd, 2)])
        finally:
            child.close()
        sched.apply(pid, params.TEMPLATE_QUEUE)  # from its first step below every service
        return Template(pid, os.pidfd_open(pid), parent)

    def fill(self) -> None:
        while len(self.pool) < self.pool_size:
            self.pool.append(self._start_template())

    def spawn(self, record: startup.StartupRecord, memfd: int) -> tuple[int, int] | None:
        """Start a component from a template; returns (pid, pidfd), or None on failure."""
        for _ in range(2):
            t = self.pool.pop(0) if self.pool else self._start_template()
            if "priority" in record:
                sched.apply(t.pid, record["priority"])
            try:
                socket.send_fds(t.sock, [startup.encode(record)], [memfd])
            except OSError:
                self.discard(t)
                continue
            finally:
                t.sock.close()
            self.fill()
            return t.pid, t.pidfd
        return None

    def discard(self, t: Template) -> None:
        t.sock.close()
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(t.pid, 9)
            os.waitid(os.P_PIDFD, t.pidfd, os.WEXITED)
        os.close(t.pidfd)

    def close(self) -> None:
        for t in self.pool:
            self.discard(t)
        self.pool.clear()
