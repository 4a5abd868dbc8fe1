"""The drivers' fast path into the board: per-driver channels to exactly their windows.

Runs in the board process.  MINIX maps device memory into a driver once the
kernel has checked its privileges; here the kernel checks the IOMAP call
(the driver holds I/O windows) and forwards ``["iomap", endpoint, label, io,
mem]`` on the bus.  The board answers with a one-time token and the path of
its listening socket, ``run_dir/board.sock`` (AF_UNIX SOCK_SEQPACKET, 0600
inside the 0700 run directory).  The protocol (typed requests ``Attach``,
``In``, ``Out``, ``Vec``, ``Sin``, ``Sout``, ``Dma``, ``Undma``, every one
answered in order on the same channel) is minikern.proto.fastpath and
docs/PROTOCOL.md, "The driver fast path".  A refused request is answered with
its status alone (negative minikern.const.Err): ECALLDENIED for a port
outside the windows, EINVAL for a malformed request.

Speed: after answering, the board polls the same channel for up to SPIN
(100 us) for the driver's next request, and the driver polls for the answer
likewise (minikern.devio), before either sleeps: on a loaded two-core host a
blocking round trip costs two scheduler wake-ups (~15k/s for two bare Python
processes), the spin-then-sleep one ~150k/s.  At most BURST requests are
served per loop turn, so one busy driver cannot starve the bus or the others.

Invariants: every port of every request is checked against the channel's
windows before anything is performed; one port outside them refuses the
whole request, which is audited (a ``denied`` event, call "DEVIO", path
"channel") and counted, never performed.  A DMA grant must lie inside one of
the driver's own memory windows and name a DMA-capable device.  Tokens are
single-use and replaced by a newer IOMAP of the same endpoint.  A channel
that closes (EOF) is only dropped: the driver lives and may IOMAP again.
When the kernel reports the endpoint ``gone`` its channels, token and DMA
grants all go (the IOMMU stops the device writing a dead driver's buffers);
device state stays, so a restarted driver finds the hardware as it was left.
"""
from __future__ import annotations

import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw.board_machine import DMA_DEVICES, Audit, Machine
from minikern import params
from minikern.const import Err
from minikern.proto import fastpath as fp

Windows = tuple[tuple[int, int], ...]
Watch = Callable[[int, Callable[[], None]], None]
Unwatch = Callable[[int], None]
Later = Callable[[float, Callable[[], None]], object]  # the loop's call_later

MAX_PACKET = fp.FASTPATH.max_frame + 1  # one byte more, so an oversized request is seen
BURST = 64  # requests served from one channel per loop turn
SPIN = 100e-6  # seconds the board waits for a served driver's next request before polling
MAX_PENDING = 32  # connected channels that have not attached yet (each for ATTACH_TIMEOUT at most)
SOCKET_NAME = "board.sock"


@dataclass(frozen=True)
class Offer:
    endpoint: int
    label: str
    io: Windows
    mem: Windows


@dataclass
class Channel:
    sock: socket.socket
    offer: Offer

    def holds(self, port: int, size: int) -> bool:
        """Is [port, port+size) inside one window?  (The decoder checked port and size.)"""
        end = port + size
        for base, length in self.offer.io:  # noqa: SIM110 (a plain loop: this runs on every access)
            if base <= port and end <= base + length:
                return True
        return False


def _windows(value: object, limit: int) -> Windows | None:
    if type(value) is not list or len(value) > 64:
        return None
    out = []
    for w in value:
        if (type(w) not in (list, tuple) or len(w) != 2 or type(w[0]) is not int or type(w[1]) is not int
                or w[0] < 0 or w[1] <= 0 or w[0] + w[1] > limit):
            return None
        out.append((w[0], w[1]))
    return tuple(out)


class FastPath:
    def __init__(self, run_dir: Path, machine: Machine, audit: Audit,
                 watch: Watch, unwatch: Unwatch, later: Later) -> None:
        self.machine, self.audit, self.watch, self.unwatch = machine, audit, watch, unwatch
        self.later = later
        self.path = run_dir / SOCKET_NAME
        self.path.unlink(missing_ok=True)  # left by a board that died
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK)
        old = os.umask(0o177)
        try:
            self.listener.bind(str(self.path))
        finally:
            os.umask(old)
        self.listener.listen(16)
        self.offers: dict[str, Offer] = {}
        self.token_of: dict[int, str] = {}
        self.pending: dict[int, socket.socket] = {}
        self.channels: dict[int, Channel] = {}
        self.grants: dict[int, list[tuple[str, int]]] = {}  # endpoint -> (device, base)
        self.labels: dict[int, str] = {}  # endpoint -> label, from IOMAP (for audit records)
        self.counters: Counter[str] = Counter()
        watch(self.listener.fileno(), self.on_accept)

    # -- from the bus ---------------------------------------------------------------

    def offer(self, endpoint: int, label: object, io: object, mem: object) -> tuple[int, dict[str, Any]]:
        io_w, mem_w = _windows(io, 1 << 16), _windows(mem, 1 << 32)
        if type(label) is not str or io_w is None or mem_w is None:
            self.counters["iomap_malformed"] += 1
            return Err.EINVAL, {}
        for base, length in mem_w:
            if self.machine.memory.window(base, length) is None:
                self.counters["iomap_bad_window"] += 1
                return Err.ENOMEM, {}
        old = self.token_of.pop(endpoint, None)
        if old is not None:
            self.offers.pop(old, None)
        token = secrets.token_hex(16)
        self.labels[endpoint] = label
        self.offers[token] = Offer(endpoint, label, io_w, mem_w)
        self.token_of[endpoint] = token
        return Err.OK, {"path": str(self.path), "token": token}

    def label_of(self, endpoint: int) -> str:
        return self.labels.get(endpoint, f"endpoint {endpoint}")

    def gone(self, endpoint: int) -> None:
        self.labels.pop(endpoint, None)
        token = self.token_of.pop(endpoint, None)
        if token is not None:
            self.offers.pop(token, None)
        for fd, ch in list(self.channels.items()):
            if ch.offer.endpoint == endpoint:
                self.drop(fd)
        for device, base in self.grants.pop(endpoint, []):
            self.machine.iommu.revoke(device, base, owner=endpoint)

    # -- sockets --------------------------------------------------------------------

    def on_accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.counters["accept_failed"] += 1
                return
            if len(self.pending) >= MAX_PENDING:
                self.counters["pending_refused"] += 1
                sock.close()
                continue
            sock.setblocking(False)
            fd = sock.fileno()
            self.pending[fd] = sock
            self.watch(fd, lambda fd=fd: self.on_attach(fd))  # type: ignore[misc]
            self.later(params.ATTACH_TIMEOUT, lambda fd=fd, sock=sock: self.expire(fd, sock))  # type: ignore[misc]

    def expire(self, fd: int, sock: socket.socket) -> None:
        """A connection that has not sent its ATTACH in time is closed (counted): held
        connections would otherwise fill MAX_PENDING and keep every driver out."""
        if self.pending.get(fd) is sock:
            del self.pending[fd]
            self.unwatch(fd)
            sock.close()
            self.counters["attach_timeout"] += 1

    def on_attach(self, fd: int) -> None:
        sock = self.pending.pop(fd)
        self.unwatch(fd)
        msg = self._recv(sock)
        offer = self.offers.pop(msg.token, None) if type(msg) is fp.Attach else None
        if offer is None:
            self.counters["attach_refused"] += 1
            self._send(sock, fp.encode_reply(Err.EPERM))
            sock.close()
            return
        self.token_of.pop(offer.endpoint, None)
        fds = [self.machine.memory.segments[base].fd for base, _ in offer.mem]
        reply = fp.encode_attached(fp.Attached(offer.endpoint, list(offer.io), list(offer.mem)))
        try:
            socket.send_fds(sock, [reply], fds)
        except OSError:
            sock.close()
            return
        self.channels[fd] = Channel(sock, offer)
        self.counters["attached"] += 1
        self.watch(fd, lambda: self.on_request(fd))

    def on_request(self, fd: int) -> None:
        """Serve up to BURST requests; after each answer wait SPIN for the driver's next one.

        Spinning briefly before going back to poll (a futex's spin-then-sleep)
        saves two scheduler wake-ups per access, which dominate a round trip.
        """
        ch = self.channels.get(fd)
        served = 0
        while ch is not None and served < BURST:
            data: bytes | None
            try:
                data = ch.sock.recv(MAX_PACKET, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                data = self._spin(ch.sock)
                if data is None:
                    return
            except OSError:
                data = b""
            if not data:
                self.drop(fd)
                return
            served += 1
            if not self._send(ch.sock, self.request(ch, fp.decode_request(data))):
                self.counters["reply_failed"] += 1
                self.drop(fd)
                return

    @staticmethod
    def _spin(sock: socket.socket) -> bytes | None:
        end = time.perf_counter() + SPIN
        while time.perf_counter() < end:
            try:
                return sock.recv(MAX_PACKET, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return b""
        return None

    def drop(self, fd: int) -> None:
        ch = self.channels.pop(fd, None)
        if ch is not None:
            self.unwatch(fd)
            ch.sock.close()

    @staticmethod
    def _recv(sock: socket.socket) -> fp.Request | None:
        try:
            return fp.decode_request(sock.recv(MAX_PACKET))
        except OSError:  # EOF, EAGAIN: not an attach
            return None

    @staticmethod
    def _send(sock: socket.socket, reply: bytes) -> bool:
        try:
            sock.send(reply)
            return True
        except OSError:
            return False

    # -- requests -------------------------------------------------------------------

    def refuse(self, ch: Channel, port: int) -> bytes:
        self.counters["port_refused"] += 1
        self.audit.write(ch.offer.endpoint, ch.offer.label, "DEVIO", port, "ECALLDENIED",
                         path="channel")
        return fp.encode_reply(Err.ECALLDENIED)

    def request(self, ch: Channel, req: fp.Request | None) -> bytes:
        """Perform one decoded request (None: it did not decode) and encode its answer."""
        who, m = (ch.offer.endpoint, ch.offer.label), self.machine
        if isinstance(req, fp.In):
            if not ch.holds(req.port, req.size):
                return self.refuse(ch, req.port)
            return fp.encode_reply(Err.OK, m.read(req.port, req.size, who))
        if isinstance(req, fp.Out):
            if not ch.holds(req.port, req.size):
                return self.refuse(ch, req.port)
            m.write(req.port, req.size, req.value, who)
            return fp.encode_reply(Err.OK)
        if isinstance(req, fp.Vec):
            return self.vector(ch, req.ops)
        if isinstance(req, (fp.Sin, fp.Sout)):
            return self.string(ch, req)
        if isinstance(req, fp.Dma):
            return self.dma(ch, req)
        if isinstance(req, fp.Undma):
            owned = self.grants.get(ch.offer.endpoint, [])
            if (req.device, req.base) not in owned:
                return fp.encode_reply(Err.EINVAL)
            owned.remove((req.device, req.base))
            return fp.encode_reply(Err.OK, m.iommu.revoke(req.device, req.base,
                                                          owner=ch.offer.endpoint))
        self.counters["malformed"] += 1  # undecodable, or a second Attach
        return fp.encode_reply(Err.EINVAL)

    def vector(self, ch: Channel, ops: list[tuple[int, int, int | None]]) -> bytes:
        for port, size, _ in ops:
            if not ch.holds(port, size):
                return self.refuse(ch, port)
        who, values = (ch.offer.endpoint, ch.offer.label), list[int | None]()
        for port, size, value in ops:
            if value is None:
                values.append(self.machine.read(port, size, who))
            else:
                self.machine.write(port, size, value, who)
                values.append(None)
        return fp.encode_reply(Err.OK, values)

    def string(self, ch: Channel, req: fp.Sin | fp.Sout) -> bytes:
        port, size = req.port, req.size
        if not ch.holds(port, size):
            return self.refuse(ch, port)
        who = (ch.offer.endpoint, ch.offer.label)
        if isinstance(req, fp.Sin):
            data = b"".join(self.machine.read(port, size, who).to_bytes(size, "little")
                            for _ in range(req.repeat))
            return fp.encode_reply(Err.OK, data)
        for i in range(0, len(req.data), size):
            self.machine.write(port, size, int.from_bytes(req.data[i:i + size], "little"), who)
        return fp.encode_reply(Err.OK)

    def dma(self, ch: Channel, req: fp.Dma) -> bytes:
        device, base, length, write = req
        if device not in DMA_DEVICES:
            return fp.encode_reply(Err.EINVAL)
        if not any(b <= base and base + length <= b + n for b, n in ch.offer.mem):
            self.counters["dma_grant_refused"] += 1
            self.audit.write(ch.offer.endpoint, ch.offer.label, "DMAGRANT", base, "EPERM",
                             device=device, length=length)
            return fp.encode_reply(Err.EPERM)
        self.machine.iommu.grant(device, base, length, write, owner=ch.offer.endpoint)
        self.grants.setdefault(ch.offer.endpoint, []).append((device, base))
        return fp.encode_reply(Err.OK)

    def close(self) -> None:
        for fd in list(self.channels):
            self.drop(fd)
        for sock in self.pending.values():
            sock.close()
        self.listener.close()
        self.path.unlink(missing_ok=True)
