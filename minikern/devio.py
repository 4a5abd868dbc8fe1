"""The driver's end of the fast path to the board (runs in a driver process; the protocol is
minikern.proto.fastpath).

A driver asks the kernel once, ``conn.kcall(KCall.IOMAP)`` (it must hold
port windows and the IOMAP call), and gets the board's socket path and a
one-time token; ``open_channel(conn)`` does both steps.  The channel then
reaches exactly the driver's port windows, checked by the board on every
access (hw.board_fastpath), and maps the driver's
physical memory windows (``windows``: base -> mmap of the shared segment), so
buffers the NIC reads and writes by DMA need no copying.  Every call blocks
until the board answers (polling for up to SPIN first: a scheduler wake-up
costs more than the board takes to answer); a refused access raises
``ChannelError`` with the board's status (ECALLDENIED for a port outside the
windows).
"""
from __future__ import annotations

import mmap
import os
import socket
import time
from typing import Any

from minikern import ipc
from minikern.const import Err, KCall, err_name
from minikern.proto import fastpath as fp

MAX_REPLY = fp.MAX_REPLY
MAX_FDS = 64
SPIN = 100e-6  # seconds to poll for the board's answer before blocking in recv


class ChannelError(Exception):
    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"{what}: {err_name(code)}")
        self.code = code


class Channel:
    def __init__(self, path: str, token: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.sock.connect(path)
        self.sock.send(fp.encode(fp.Attach(token)))
        data, fds, _, _ = socket.recv_fds(self.sock, MAX_REPLY, MAX_FDS)
        reply = fp.decode_reply(data)
        info = fp.decode_attached(reply) if reply is not None else None
        if info is None or len(fds) != len(info.mem):
            for fd in fds:
                os.close(fd)
            self.sock.close()
            status = reply[0] if reply is not None and reply[0] != Err.OK else Err.EIO
            raise ChannelError(status, "attach")
        self.endpoint: int = info.endpoint
        self.io: list[tuple[int, int]] = info.io
        self.windows: dict[int, mmap.mmap] = {}
        for (base, length), fd in zip(info.mem, fds, strict=True):
            self.windows[base] = mmap.mmap(fd, length, mmap.MAP_SHARED)
            os.close(fd)

    def call(self, req: fp.Request) -> list[Any]:
        """One request; returns the board's reply (status first) or raises ChannelError."""
        return self._call(fp.encode(req), type(req).__name__)

    def _call(self, frame: bytes, what: str) -> list[Any]:
        sock = self.sock
        sock.send(frame)
        end = time.perf_counter() + SPIN  # spin, then sleep: the board answers in microseconds
        while True:
            try:
                data = sock.recv(MAX_REPLY, socket.MSG_DONTWAIT)
                break
            except (BlockingIOError, InterruptedError):
                if time.perf_counter() > end:
                    data = sock.recv(MAX_REPLY)
                    break
        if not data:
            raise ChannelError(Err.EIO, "board closed the channel")
        reply = fp.decode_reply(data)
        if reply is None:
            raise ChannelError(Err.EIO, f"{what}: an unreadable answer")
        if reply[0] != Err.OK:
            raise ChannelError(reply[0], what)
        return reply

    def inb(self, port: int) -> int:
        return int(self._call(fp.encode_in(port, 1), "In")[1])

    def inw(self, port: int) -> int:
        return int(self._call(fp.encode_in(port, 2), "In")[1])

    def inl(self, port: int) -> int:
        return int(self._call(fp.encode_in(port, 4), "In")[1])

    def outb(self, port: int, value: int) -> None:
        self._call(fp.encode_out(port, 1, value), "Out")

    def outw(self, port: int, value: int) -> None:
        self._call(fp.encode_out(port, 2, value), "Out")

    def outl(self, port: int, value: int) -> None:
        self._call(fp.encode_out(port, 4, value), "Out")

    def vec(self, ops: list[tuple[int, int, int | None]]) -> list[int | None]:
        """Several accesses in one round trip: (port, size, value or None to read)."""
        return list(self.call(fp.Vec(ops))[1])

    def ins(self, port: int, size: int, count: int) -> bytes:
        """rep ins: ``count`` reads of ``port``, little-endian bytes."""
        return bytes(self.call(fp.Sin(port, size, count))[1])

    def outs(self, port: int, size: int, data: bytes) -> None:
        self.call(fp.Sout(port, size, data))

    def dma_grant(self, device: str, base: int, length: int, write: bool) -> None:
        """Let ``device`` DMA to [base, base+length) of my own memory (write: it may write it)."""
        self.call(fp.Dma(device, base, length, write))

    def dma_revoke(self, device: str, base: int) -> int:
        return int(self.call(fp.Undma(device, base))[1])

    def memory(self, addr: int, length: int) -> memoryview:
        """A view of physical memory [addr, addr+length) inside one of my windows."""
        for base, m in self.windows.items():
            if base <= addr and addr + length <= base + len(m):
                return memoryview(m)[addr - base:addr - base + length]
        raise ChannelError(Err.EFAULT, f"{addr:#x} is not in my memory windows")

    def close(self) -> None:
        for m in self.windows.values():
            try:
                m.close()
            except BufferError:  # a memoryview is still alive; the mapping goes with it
                pass
        self.sock.close()


def connect(path: str, token: str) -> Channel:
    return Channel(path, token)


def open_channel(conn: ipc.Connection) -> Channel:
    """IOMAP through the kernel, then attach to the board."""
    r = conn.kcall(KCall.IOMAP)
    return Channel(r["path"], r["token"])
