"""The sockets library for user programs (runs in the program's process).

Every call is one SENDREC to INET (found through DS's label entry); a call
that cannot complete yet simply stays blocked in the kernel until INET
answers, as a blocking socket call does.  Errors raise ``SocketError`` with
the Err code.
"""
from __future__ import annotations

from typing import Any

from minikern import ds
from minikern.codec import Message
from minikern.const import Err, SockReq, err_name
from minikern.ipc import Connection

CHUNK = 32 * 1024


class SocketError(OSError):
    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"{what}: {err_name(code)}")
        self.code = code


class Socket:
    def __init__(self, conn: Connection, kind: str = "tcp", fd: int | None = None,
                 inet: int | None = None) -> None:
        self.conn = conn
        self.inet = inet if inet is not None else ds.retrieve_label(conn, "inet")
        self.fd = fd if fd is not None else self._call(SockReq.SOCKET, type=kind)["fd"]

    def _call(self, req: SockReq, **fields: Any) -> dict[str, Any]:
        if hasattr(self, "fd"):
            fields.setdefault("fd", self.fd)
        m = self.conn.sendrec(self.inet, Message(req, fields))
        if m.type != Err.OK:
            raise SocketError(m.type, req.name.lower())
        return m.fields

    def bind(self, port: int) -> None:
        self._call(SockReq.BIND, port=port)

    def listen(self, backlog: int = 8) -> None:
        self._call(SockReq.LISTEN, backlog=backlog)

    def accept(self) -> tuple[Socket, tuple[str, int]]:
        f = self._call(SockReq.ACCEPT)
        return Socket(self.conn, fd=f["fd"], inet=self.inet), (f["ip"], f["port"])

    def connect(self, ip: str, port: int) -> None:
        self._call(SockReq.CONNECT, ip=ip, port=port)

    def send(self, data: bytes) -> int:
        return int(self._call(SockReq.SEND, data=bytes(data[:CHUNK]))["count"])

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self.send(view[:CHUNK].tobytes()):]

    def recv(self, n: int = CHUNK) -> bytes:
        """Up to ``n`` bytes; b"" at end of stream."""
        data: bytes = self._call(SockReq.RECV, count=n)["data"]
        return data

    def close(self) -> None:
        self._call(SockReq.CLOSE)
