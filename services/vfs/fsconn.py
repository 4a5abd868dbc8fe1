"""One file server as VFS sees it: its endpoint and its queue of requests (runs in VFS).

VFS sends a file server one request at a time (MINIX: one REQ_* in flight
per FS), as an asynchronous request (``rid``, docs/PROTOCOL.md section 15)
through the loop's ``request``, so VFS goes on serving every other process
while a file server or its driver is slow or recovering.  The rest wait in
``queue``, first come first served, with one exception that keeps a chain's
steps together: when an answer's callback submits the same chain's next
request (it does so before returning), that request goes out next.  So a
lookup and the GETNODE after it, or the STAT that finds the end of a file
and the WRITE that appends there, see the file system as nobody else
changed it in between; no chain holds a file server while it waits for
another one, so chains cannot deadlock.

An answer from the file server is handed on as it is.  A request the loop
could not deliver, or that timed out (``params.FS_REQUEST_TIMEOUT``), is
answered EIO here, and the first of a kind logged: to the user it is the
device failing.
"""
from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minikern import params
from minikern.const import Err, FsReq, err_name
from minikern.proto import Message
from services.vfs.guard import Guard

# loop.request's shape: (destination, message, on_answer, timeout) -> the send's status
Sender = Callable[[int, Message, Callable[[Message], None], float], int]
OnAnswer = Callable[[Message], None]

_ids = itertools.count(1)


@dataclass(eq=False)
class _Pending:
    owner: object | None  # the chain (Task) it belongs to; None for a detached PUTNODE
    req: FsReq
    fields: dict[str, Any]
    on_answer: OnAnswer


class FileServer:
    def __init__(self, label: str, endpoint: int, send: Sender, guard: Guard,
                 timeout: float = params.FS_REQUEST_TIMEOUT) -> None:
        self.id = next(_ids)  # vnodes are keyed by (id, inode): a remount is a new id
        self.label, self.endpoint = label, endpoint
        self.send, self.guard, self.timeout = send, guard, timeout
        self.queue: deque[_Pending] = deque()
        self.busy: _Pending | None = None
        self._answering = False  # inside an answer's callback: its next request goes first
        self.sent = 0

    def __repr__(self) -> str:
        return f"FileServer({self.label!r}, endpoint {self.endpoint})"

    def submit(self, owner: object | None, req: FsReq, fields: dict[str, Any],
               on_answer: OnAnswer) -> None:
        self.queue.append(_Pending(owner, req, fields, on_answer))
        if not self._answering:
            self._pump(None)

    def putnode(self, ino: int, count: int) -> None:
        """Give back ``count`` references (detached: nobody waits for the answer)."""
        def answered(m: Message) -> None:
            if m.type != Err.OK:
                self.guard.once(f"putnode {err_name(m.type)}",
                                f"PUTNODE {ino} on {self.label} answered {err_name(m.type)}")
        self.submit(None, FsReq.PUTNODE, {"ino": ino, "count": count}, answered)

    def _pump(self, prefer: object | None) -> None:
        """Send the next request if none is in flight (the chain ``prefer``'s first)."""
        while self.busy is None and self.queue:
            pick = self.queue[0]
            if prefer is not None:
                pick = next((p for p in self.queue if p.owner is prefer), pick)
            self.queue.remove(pick)
            self.busy = pick
            self.sent += 1
            status = self.send(self.endpoint, Message(pick.req, pick.fields),
                               lambda m, p=pick: self._answered(p, m), self.timeout)  # type: ignore[misc]
            if status in (Err.OK, Err.ENOTREADY):
                return
            self.busy = None  # never sent: answered here, and on to the next
            self._deliver(pick, self._lost(pick, status))
            prefer = pick.owner

    def _answered(self, p: _Pending, m: Message) -> None:
        if self.busy is not p:
            return  # not ours any more (cannot happen: one in flight); dropped
        self.busy = None
        if m.source != self.endpoint:  # the loop's own failure: undelivered, or timed out
            m = self._lost(p, m.type)
        self._deliver(p, m)
        self._pump(p.owner)

    def _deliver(self, p: _Pending, m: Message) -> None:
        self._answering = True
        try:
            p.on_answer(m)
        finally:
            self._answering = False

    def _lost(self, p: _Pending, status: int) -> Message:
        self.guard.once(f"fs {self.label} {err_name(status)}",
                        f"{p.req.name} to file server {self.label} (endpoint {self.endpoint}) "
                        f"failed: {err_name(status)}; answered EIO")
        return Message(Err.EIO, {"error": f"file server {self.label}: {err_name(status)}"},
                       source=self.endpoint)
