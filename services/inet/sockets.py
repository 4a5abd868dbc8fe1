"""INET's sockets interface for the system's processes (runs in INET).

Requests (SockReq, fields as in userland/socket.py):

    SOCKET {type: "tcp"|"udp"}          -> {fd}
    BIND {fd, port}                     LISTEN {fd, backlog?}      (TCP)
    ACCEPT {fd} -> {fd, ip, port}       (TCP)
    CONNECT {fd, ip, port}              TCP: the handshake; UDP: the default peer
    SEND {fd, data} -> {count}          RECV {fd, count?} -> {data} (b"": end of stream)
    SENDTO {fd, ip, port, data}         RECVFROM {fd, count?} -> {data, ip, port}  (UDP)
    CLOSE {fd}                          SETOPT {fd, nodelay: bool}  (TCP: TCP_NODELAY)
    IFSTAT -> {interface, ip, mac, link, driver, inet, driver_stats, ...}  (INET's own,
                                        services/inet/main.py: bin/ifconfig)

Each socket is named by its fd and belongs to the endpoint that made it;
another endpoint naming it gets EBADF.  A request that cannot complete now
(ACCEPT with no connection, RECV with no data, SEND with a full buffer,
CONNECT before the handshake) is suspended: the handler answers EDONTREPLY,
the caller stays blocked in its SENDREC, and ``retry`` answers it later with
SENDNB when it can complete.

Nothing in a request is trusted: every field is checked (type, range, size)
and a bad one refused with an error code; the stack refuses misuse with an
errno (mapped to Err); any other exception fails that request alone
(services/inet/guard.py).  Every refusal is counted.

A process that dies does not close its sockets, and the kernel tells only its
manager.  INET finds out when answering it fails (EDEADSRCDST), and by a
sweep every OWNER_SWEEP seconds (and whenever the table is full) that closes
the sockets of endpoints GETINFO no longer lists.
"""
from __future__ import annotations

import errno
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minikern.proto import Message
from minikern.const import Err, SockReq
from minikern.identity import Identity
from minikern.ipc import Connection, KernelGone
from services.inet.guard import Guard
from services.inet.stack.udp import UDP_MAX_PAYLOAD

MAX_SOCKETS = 256
MAX_PER_OWNER = 64  # so that one process cannot take the whole table
MAX_IO = 32 * 1024  # bytes moved by one SEND or RECV (a message is at most 64 KiB)
MAX_BACKLOG = 128  # LISTEN's backlog is clamped to 1..MAX_BACKLOG, as POSIX allows
OWNER_SWEEP = 1.0  # seconds between looks for sockets whose owner died


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
Handler = Callable[[Sock, int, dict[str, Any]], Result]


def _ip(text: object) -> str | None:
    try:
        return str(ipaddress.IPv4Address(text)) if type(text) is str else None
    except ValueError:
        return None


def _port(v: object) -> int | None:
    return v if type(v) is int and 0 <= v < 65536 else None


def _count(f: dict[str, Any]) -> int | None:
    """RECV's and RECVFROM's optional byte count, capped at MAX_IO; None if malformed."""
    n = f.get("count", MAX_IO)
    return min(n, MAX_IO) if type(n) is int and n > 0 else None


def _err(code: int) -> int:
    """The stack speaks POSIX errno (positive); the system speaks Err (negative)."""
    name = errno.errorcode.get(code, "EIO")
    return int(Err[name]) if name in Err.__members__ else int(Err.EIO)


class Sockets:
    def __init__(self, conn: Connection, stack: Any, guard: Guard,
                 clock: Callable[[], float] = time.monotonic,
                 identity: Identity | None = None) -> None:
        self.conn, self.stack, self.guard, self.clock = conn, stack, guard, clock
        self.identity = identity or Identity(conn)
        self.socks: dict[int, Sock] = {}
        self.next_fd = 3
        self.next_sweep = 0.0
        self.table: dict[int, Handler] = {
            SockReq.BIND: self.do_bind, SockReq.LISTEN: self.do_listen,
            SockReq.ACCEPT: self.do_accept, SockReq.CONNECT: self.do_connect,
            SockReq.SEND: self.do_send, SockReq.RECV: self.do_recv,
            SockReq.CLOSE: self.do_close, SockReq.SENDTO: self.do_sendto,
            SockReq.RECVFROM: self.do_recvfrom, SockReq.SETOPT: self.do_setopt}

    def request(self, m: Message) -> Message | None:
        """Dispatch one sockets request; None means the caller waits (EDONTREPLY)."""
        try:
            result = self._request(m)
        except KernelGone:
            raise
        except Exception as e:  # noqa: BLE001 (last resort: this request fails, not INET)
            self.guard.failed(m.type, e)
            result = Err.EINVAL, {}
        if result is None:
            return None
        if result[0] != Err.OK:
            self.guard.refused(m.type, result[0], m.source)
        return Message(result[0], result[1])

    def _request(self, m: Message) -> Result:
        # A copy without "_" keys: those are INET's own marks on a suspended request.
        f = {k: v for k, v in m.fields.items() if not k.startswith("_")}
        if m.type == SockReq.SOCKET:
            return self.do_socket(m.source, f)
        if m.type not in self.table:
            return Err.EBADREQUEST, {}
        fd = f.get("fd")
        s = self.socks.get(fd) if type(fd) is int else None
        if s is None or s.owner != m.source:
            return Err.EBADF, {}
        if s.pending is not None:
            return Err.EBUSY, {}
        result = self._run(m.type, s, m.source, f)
        if result is None:
            s.pending = Pending(m.source, m.type, f)
        return result

    def _run(self, req: int, s: Sock, caller: int, f: dict[str, Any]) -> Result:
        try:
            return self.table[req](s, caller, f)
        except OSError as e:  # the stack refuses misuse with an errno
            return _err(e.errno or errno.EIO), {}
        except KernelGone:
            raise
        except Exception as e:  # noqa: BLE001 (last resort: this request fails, not INET)
            self.guard.failed(req, e)
            return Err.EINVAL, {}

    def retry(self) -> None:
        """Answer every suspended caller whose request can complete now."""
        for s in list(self.socks.values()):
            p = s.pending
            if p is None or s.fd not in self.socks:
                continue
            result = self._run(p.req, s, p.caller, p.fields)
            if result is None:
                continue
            s.pending = None
            if result[0] != Err.OK:
                self.guard.refused(p.req, result[0], p.caller)
            if self.conn.sendnb(p.caller, Message(result[0], result[1])) == Err.EDEADSRCDST:
                self.owner_died(p.caller)

    def next_due(self) -> float | None:
        """When ``tick`` next has work: the next sweep, while there are sockets to sweep."""
        return self.next_sweep if self.socks else None

    def tick(self) -> None:
        """On INET's clock: now and then, close the sockets of owners that died."""
        now = self.clock()
        if now >= self.next_sweep:
            self.next_sweep = now + OWNER_SWEEP
            self.sweep()

    def sweep(self) -> None:
        if not self.socks:
            return
        alive = self.identity.live()
        if alive is None:
            self.guard.once("sweep GETINFO failed", "cannot look for dead owners: GETINFO failed")
            return
        for owner in {s.owner for s in self.socks.values()} - alive.keys():
            self.owner_died(owner)

    def owner_died(self, endpoint: int) -> None:
        mine = [s for s in self.socks.values() if s.owner == endpoint]
        for s in mine:
            self._close(s)
        if mine:
            print(f"inet: closed {len(mine)} socket(s) of endpoint {endpoint}, which died",
                  flush=True)

    def _close(self, s: Sock) -> None:
        del self.socks[s.fd]
        try:
            s.obj.close()
        except KernelGone:
            raise
        except Exception as e:  # noqa: BLE001 (the socket is gone from the table either way)
            self.guard.failed(SockReq.CLOSE, e)

    def _room(self, owner: int) -> bool:
        def room() -> bool:
            owned = sum(1 for s in self.socks.values() if s.owner == owner)
            return len(self.socks) < MAX_SOCKETS and owned < MAX_PER_OWNER
        if not room():
            self.sweep()  # dead owners' sockets may be what fills the table
        return room()

    def _new(self, owner: int, kind: str, obj: Any) -> Sock:
        fd, self.next_fd = self.next_fd, self.next_fd + 1
        s = self.socks[fd] = Sock(fd, owner, kind, obj)
        return s

    # -- handlers: (status, fields) to answer now, or None to suspend ---------------

    def do_socket(self, caller: int, f: dict[str, Any]) -> Result:
        kind = f.get("type")
        if type(kind) is not str or kind not in ("tcp", "udp"):
            return Err.EINVAL, {}
        if not self._room(caller):
            return Err.ENOSPC, {}
        obj = self.stack.tcp_socket() if kind == "tcp" else self.stack.udp_socket()
        return Err.OK, {"fd": self._new(caller, kind, obj).fd}

    def do_bind(self, s: Sock, caller: int, f: dict[str, Any]) -> Result:
        port = _port(f.get("port"))
        if port is None:
            return Err.EINVAL, {}
        s.obj.bind(port)
        return Err.OK, {}

    def do_listen(self, s: Sock, caller: int, f: dict[str, Any]) -> Result:
        backlog = f.get("backlog", 8)
        if s.kind != "tcp" or type(backlog) is not int:
            return Err.EINVAL, {}
        s.obj.listen(max(1, min(backlog, MAX_BACKLOG)))
        return Err.OK, {}

    def do_accept(self, s: Sock, caller: int, f: dict[str, Any]) -> Result:
        if s.kind != "tcp":
            return Err.EINVAL, {}
        if not self._room(caller):
            return Err.ENOSPC, {}
        child = s.obj.accept()
        if child is None:
            return None
        new = self._new(caller, "tcp", child)
        ip, port = child.remote_address
        return Err.OK, {"fd": new.fd, "ip": ip, "port": port}

    def do_connect(self, s: Sock, caller: int, f: dict[str, Any]) -> Result:
        if not f.get("_started"):
            ip, port = _ip(f.get("ip")), _port(f.get("port"))
            if ip is None or port is None:
                return Err.EINVAL, {}
            s.obj.connect((ip, port))
            if s.kind == "udp":
                return Err.OK, {}  # only the default peer: nothing to wait for
            f["_started"] = True
        if s.obj.error:
            return _err(s.obj.error), {}
        return (Err.OK, {}) if s.obj.connected else None

    def do_send(self, s: Sock, caller: int, f: dict[str, Any]) -> Result:
        data = f.get("data")
        if type(data) is not bytes:
            return Err.EINVAL, {}
        if len(data) > (MAX_IO if s.kind == "tcp" else UDP_MAX_PAYLOAD):
            return Err.E2BIG, {}
        n = s.obj.send(data)  # UDP: ENOTCONN without a peer
        return (Err.OK, {"count": n}) if n or not data or s.kind == "udp" else None

    def do_recv(self, s: Sock, caller: int, f: dict[str, Any]) -> Result:
        n = _count(f)
        if n is None:
            return Err.EINVAL, {}
        data = s.obj.recv(n)  # UDP: ENOTCONN without a peer
        return None if data is None else (Err.OK, {"data": data})

    def do_close(self, s: Sock, caller: int, f: dict[str, Any]) -> Result:
        self._close(s)
        return Err.OK, {}

    def do_sendto(self, s: Sock, caller: int, f: dict[str, Any]) -> Result:
        ip, port, data = _ip(f.get("ip")), _port(f.get("port")), f.get("data")
        if s.kind != "udp" or ip is None or port is None or type(data) is not bytes:
            return Err.EINVAL, {}
        if len(data) > UDP_MAX_PAYLOAD:
            return Err.E2BIG, {}
        return Err.OK, {"count": s.obj.sendto(data, (ip, port))}

    def do_recvfrom(self, s: Sock, caller: int, f: dict[str, Any]) -> Result:
        n = _count(f)
        if s.kind != "udp" or n is None:
            return Err.EINVAL, {}
        got = s.obj.recvfrom()
        if got is None:
            return None
        data, (ip, port) = got
        return Err.OK, {"data": data[:n], "ip": ip, "port": port}

    def do_setopt(self, s: Sock, caller: int, f: dict[str, Any]) -> Result:
        nodelay = f.get("nodelay")
        if s.kind != "tcp" or type(nodelay) is not bool or set(f) - {"fd", "nodelay"}:
            return Err.EINVAL, {}
        s.obj.nodelay = nodelay
        return Err.OK, {}
