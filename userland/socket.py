"""The sockets library for user programs (runs in the program's process).

Every call is one SENDREC to INET (found through DS's label entry); a call
that cannot complete yet simply stays blocked in the kernel until INET
answers, as a blocking socket call does.  Errors raise ``SocketError`` with
the Err code.  The requests are listed in services/inet/sockets.py.

TCP: ``bind``, ``listen``, ``accept``, ``connect``, ``send``/``sendall``,
``recv``, ``close``, ``setopt(nodelay=...)``.  UDP (``Socket(conn, "udp")``): ``bind``, ``sendto``,
``recvfrom``, and after ``connect`` (which only sets the default peer, as
POSIX) ``send`` and ``recv``; without a peer those fail with ENOTCONN.
"""
from __future__ import annotations

from types import TracebackType
from typing import Any

from minikern import ds
from minikern.proto import Message
from minikern.const import Err, SockReq, err_name
from minikern.ipc import Connection, IpcError, KernelGone

CHUNK = 32 * 1024  # bytes per TCP SEND or RECV (INET's MAX_IO)
Address = tuple[str, int]


class SocketError(OSError):
    """A socket call failed: ``code`` is INET's Err, or the IPC error that ended the call
    (``why`` then says what it means for the socket)."""

    def __init__(self, code: int, what: str, why: str = "") -> None:
        super().__init__(f"{what}: {why} ({err_name(code)})" if why else
                         f"{what}: {err_name(code)}")
        self.code = code


INET_GONE = ("INET, the TCP/IP server, died or was restarted during the call; its "
             "connections are gone")


class Socket:
    def __init__(self, conn: Connection, kind: str = "tcp", fd: int | None = None,
                 inet: int | None = None) -> None:
        self.conn, self.kind = conn, kind
        self.inet = inet if inet is not None else ds.retrieve_label(conn, "inet")
        self.fd = fd if fd is not None else self._call(SockReq.SOCKET, type=kind)["fd"]

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, req: SockReq, **fields: Any) -> dict[str, Any]:
        if hasattr(self, "fd"):
            fields.setdefault("fd", self.fd)
        try:
            m = self.conn.sendrec(self.inet, Message(req, fields))
        except KernelGone:
            raise
        except IpcError as e:
            if e.code in (Err.EDEADSRCDST, Err.ESRCH):
                raise SocketError(e.code, req.name.lower(), INET_GONE) from None
            raise
        if m.type != Err.OK:
            raise SocketError(m.type, req.name.lower())
        return m.fields

    def bind(self, port: int) -> None:
        self._call(SockReq.BIND, port=port)

    def listen(self, backlog: int = 8) -> None:
        self._call(SockReq.LISTEN, backlog=backlog)

    def accept(self) -> tuple[Socket, Address]:
        f = self._call(SockReq.ACCEPT)
        return Socket(self.conn, fd=f["fd"], inet=self.inet), (f["ip"], f["port"])

    def connect(self, ip: str, port: int) -> None:
        """TCP: the handshake; UDP: set the default peer of ``send`` and ``recv``."""
        self._call(SockReq.CONNECT, ip=ip, port=port)

    def send(self, data: bytes) -> int:
        """TCP: up to CHUNK bytes of ``data``; UDP: one datagram to the peer (all or nothing)."""
        piece = bytes(data) if self.kind == "udp" else bytes(data[:CHUNK])
        return int(self._call(SockReq.SEND, data=piece)["count"])

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self.send(view[:CHUNK].tobytes()):]

    def recv(self, n: int = CHUNK) -> bytes:
        """TCP: up to ``n`` bytes, b"" at end of stream; UDP: the next datagram from the peer."""
        data: bytes = self._call(SockReq.RECV, count=n)["data"]
        return data

    def sendto(self, data: bytes, ip: str, port: int) -> int:
        """UDP: one datagram to ``ip``:``port``."""
        return int(self._call(SockReq.SENDTO, data=bytes(data), ip=ip, port=port)["count"])

    def recvfrom(self, n: int = CHUNK) -> tuple[bytes, Address]:
        """UDP: the next datagram (cut to ``n`` bytes) and its sender."""
        f = self._call(SockReq.RECVFROM, count=n)
        return f["data"], (f["ip"], f["port"])

    def setopt(self, *, nodelay: bool) -> None:
        """TCP: ``nodelay=True`` sends small writes at once (TCP_NODELAY; no Nagle)."""
        self._call(SockReq.SETOPT, nodelay=nodelay)

    def close(self) -> None:
        self._call(SockReq.CLOSE)


def ifstat(conn: Connection) -> dict[str, Any]:
    """INET's view of its interface (SockReq.IFSTAT): address, link, driver, counters."""
    m = conn.sendrec(ds.retrieve_label(conn, "inet"), Message(SockReq.IFSTAT))
    if m.type != Err.OK:
        raise SocketError(m.type, "ifstat")
    return m.fields
