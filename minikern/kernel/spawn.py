"""Process creation: a pool of clean template processes, each the kernel's own child.

A template is a fresh Python interpreter that has imported the libraries
(ZeroMQ, msgpack, minikern) and then waits on its startup socket.  It has
never run component code, so handing it a component to run gives a fresh
copy of that component, not a copy of anything that crashed, and saves the
interpreter start-up on the restart path.  Being the kernel's child, its
death is seen at once through its pidfd and its exit status read with
waitid.  The startup socket carries one record (who it is, its one-time
credential) and the fd of its private memory segment.
"""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass

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
        return Template(pid, os.pidfd_open(pid), parent)

    def fill(self) -> None:
        while len(self.pool) < self.pool_size:
            self.pool.append(self._start_template())

    def spawn(self, record: startup.StartupRecord, memfd: int) -> tuple[int, int] | None:
        """Start a component from a template; returns (pid, pidfd), or None on failure."""
        for _ in range(2):
            t = self.pool.pop(0) if self.pool else self._start_template()
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
        try:
            os.kill(t.pid, 9)
            os.waitid(os.P_PIDFD, t.pidfd, os.WEXITED)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(t.pidfd)

    def close(self) -> None:
        for t in self.pool:
            self.discard(t)
        self.pool.clear()
