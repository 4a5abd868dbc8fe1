"""INET's sockets interface for the system's processes (runs in INET).

Each request names a socket by its fd, which belongs to the endpoint that
made it.  A request that cannot complete now (ACCEPT with no connection,
RECV with no data, SEND with a full buffer, CONNECT before the handshake) is
suspended: the handler answers EDONTREPLY, the caller stays blocked in its
SENDREC, and ``retry`` answers it later with SENDNB when the stack reports
progress.  A caller that died while waiting is found out by that SENDNB
(EDEADSRCDST) and its sockets are closed.
"""
from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minikern.codec import Message
from minikern.const import Err, SockReq
from minikern.ipc import Connection

MAX_SOCKETS = 256
MAX_IO = 32 * 1024  # bytes moved by one SEND or RECV (a message is at most 64 KiB)


@dataclass
class Pending:
    caller: int
    req: int
    fields: dict[str, Any]


@dataclass
class Sock:
    fd: int
    owner: int
    kind: str
    obj: Any
    pending: Pending | None = None


Result = tuple[int, dict[str, Any]] | None  # None: suspended


def _ip(text: object) -> str | None:
    try:
        return str(ipaddress.IPv4Address(text)) if isinstance(text, str) else None
    except ValueError:
        return None


def _err(code: int) -> int:
    """The stack speaks POSIX errno (positive); the system speaks Err (negative)."""
    name = errno.errorcode.get(code, "EIO")
    return int(Err[name]) if name in Err.__members__ else int(Err.EIO)


def _port(v: object) -> int | None:
    return v if type(v) is int and 0 <= v < 65536 else None


class Sockets:
    def __init__(self, conn: Connection, stack: Any) -> None:
        self.conn, self.stack = conn, stack
        self.socks: dict[int, Sock] = {}
        self.next_fd = 3
        self.table: dict[int, Callable[[Sock | None, int, dict[str, Any]], Result]] = {
            SockReq.BIND: self.do_bind, SockReq.LISTEN: self.do_listen,
            SockReq.ACCEPT: self.do_accept, SockReq.CONNECT: self.do_connect,
            SockReq.SEND: self.do_send, SockReq.RECV: self.do_recv,
            SockReq.CLOSE: self.do_close, SockReq.SENDTO: self.do_sendto,
            SockReq.RECVFROM: self.do_recvfrom}

    def _new(self, owner: int, kind: str, obj: Any) -> Sock | None:
        if len(self.socks) >= MAX_SOCKETS:
            return None
        fd, self.next_fd = self.next_fd, self.next_fd + 1
        s = self.socks[fd] = Sock(fd, owner, kind, obj)
        return s

    def request(self, m: Message) -> Message | None:
        """Dispatch one sockets request; None means the caller waits (EDONTREPLY)."""
        if m.type == SockReq.SOCKET:
            kind = m.get("type")
            if kind not in ("tcp", "udp"):
                return Message(Err.EINVAL)
            obj = self.stack.tcp_socket() if kind == "tcp" else self.stack.udp_socket()
            s = self._new(m.source, kind, obj)
            return Message(Err.OK, {"fd": s.fd}) if s else Message(Err.ENOSPC)
        handler = self.table.get(m.type)
        if handler is None:
            return Message(Err.EBADREQUEST)
        fd = m.get("fd")
        s = self.socks.get(fd) if type(fd) is int else None
        if s is None or s.owner != m.source:
            return Message(Err.EBADF)
        if s.pending is not None:
            return Message(Err.EBUSY)
        result = self._run(handler, s, m.source, m.fields)
        if result is None:
            s.pending = Pending(m.source, m.type, m.fields)
            return None
        return Message(result[0], result[1])

    @staticmethod
    def _run(handler: Callable[[Sock | None, int, dict[str, Any]], Result], s: Sock,
             caller: int, f: dict[str, Any]) -> Result:
        try:
            return handler(s, caller, f)
        except OSError as e:  # the stack refuses misuse with an errno
            return _err(e.errno or errno.EIO), {}
        except (ValueError, TypeError) as e:
            print(f"inet: request failed: {e!r}", flush=True)
            return Err.EINVAL, {}

    def retry(self) -> None:
        """Answer every suspended caller whose request can complete now."""
        for s in list(self.socks.values()):
            p = s.pending
            if p is None:
                continue
            result = self._run(self.table[p.req], s, p.caller, p.fields)
            if result is None:
                continue
            s.pending = None
            if self.conn.sendnb(p.caller, Message(result[0], result[1])) == Err.EDEADSRCDST:
                self.owner_died(p.caller)

    def owner_died(self, endpoint: int) -> None:
        for s in [s for s in self.socks.values() if s.owner == endpoint]:
            s.obj.close()
            del self.socks[s.fd]

    # -- handlers: (status, fields) to answer now, or None to suspend ---------------

    def do_bind(self, s: Sock | None, caller: int, f: dict[str, Any]) -> Result:
        port = _port(f.get("port"))
        if s is None or port is None:
            return Err.EINVAL, {}
        s.obj.bind(port)
        return Err.OK, {}

    def do_listen(self, s: Sock | None, caller: int, f: dict[str, Any]) -> Result:
        if s is None or s.kind != "tcp":
            return Err.EINVAL, {}
        s.obj.listen(int(f.get("backlog", 8)))
        return Err.OK, {}

    def do_accept(self, s: Sock | None, caller: int, f: dict[str, Any]) -> Result:
        if s is None or s.kind != "tcp":
            return Err.EINVAL, {}
        child = s.obj.accept()
        if child is None:
            return None
        new = self._new(caller, "tcp", child)
        if new is None:
            child.close()
            return Err.ENOSPC, {}
        ip, port = child.remote_address
        return Err.OK, {"fd": new.fd, "ip": ip, "port": port}

    def do_connect(self, s: Sock | None, caller: int, f: dict[str, Any]) -> Result:
        if s is None or s.kind != "tcp":
            return Err.EINVAL, {}
        if not f.get("_started"):
            ip, port = _ip(f.get("ip")), _port(f.get("port"))
            if ip is None or port is None:
                return Err.EINVAL, {}
            s.obj.connect((ip, port))
            f["_started"] = True
        if s.obj.error:
            return _err(s.obj.error), {}
        return (Err.OK, {}) if s.obj.connected else None

    def do_send(self, s: Sock | None, caller: int, f: dict[str, Any]) -> Result:
        data = f.get("data")
        if s is None or type(data) is not bytes or len(data) > MAX_IO:
            return Err.EINVAL, {}
        n = s.obj.send(data)
        return (Err.OK, {"count": n}) if n or not data else None

    def do_recv(self, s: Sock | None, caller: int, f: dict[str, Any]) -> Result:
        n = f.get("count", MAX_IO)
        if s is None or type(n) is not int or n <= 0:
            return Err.EINVAL, {}
        data = s.obj.recv(min(n, MAX_IO))
        return None if data is None else (Err.OK, {"data": data})

    def do_close(self, s: Sock | None, caller: int, f: dict[str, Any]) -> Result:
        if s is None:
            return Err.EINVAL, {}
        s.obj.close()
        del self.socks[s.fd]
        return Err.OK, {}

    def do_sendto(self, s: Sock | None, caller: int, f: dict[str, Any]) -> Result:
        ip, port, data = _ip(f.get("ip")), _port(f.get("port")), f.get("data")
        if s is None or s.kind != "udp" or ip is None or port is None or type(data) is not bytes:
            return Err.EINVAL, {}
        s.obj.sendto(data, (ip, port))
        return Err.OK, {"count": len(data)}

    def do_recvfrom(self, s: Sock | None, caller: int, f: dict[str, Any]) -> Result:
        if s is None or s.kind != "udp":
            return Err.EINVAL, {}
        got = s.obj.recvfrom()
        if got is None:
            return None
        data, (ip, port) = got
        return Err.OK, {"data": data, "ip": ip, "port": port}
