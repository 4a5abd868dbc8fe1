"""The drivers' fast path into the board: per-driver rings reaching exactly their windows.

Runs in the board process.  MINIX maps device memory into a driver once the
kernel has checked its privileges; here the kernel checks the IOMAP call
(the driver holds I/O windows) and forwards ``["iomap", endpoint, label, io,
mem]`` on the bus.  The board answers with a one-time token and the path of
its listening socket, ``run_dir/board.sock`` (AF_UNIX SOCK_SEQPACKET, 0600
inside the 0700 run directory; booted as root, 0660 for the components' group,
minikern/domain.py).  The driver connects and sends ATTACH with
the token (minikern.proto.fastpath); the board answers with its windows and,
as SCM_RIGHTS, a fresh ring (hw.board_ring, minikern.proto.ring), the
driver's end of the ring's doorbell and one memfd per memory window, then
closes the connection: from then on port I/O is slots in shared memory and
the doorbell is the ring's only socket.  docs/PROTOCOL.md, section 10.

Waiting (a futex's spin-then-sleep, on both sides): after serving a ring the
board polls it for up to SPIN for the driver's next request, then sets the
ring's "board sleeps" word, looks once more, and goes back to the loop,
where the doorbell wakes it; the driver does the same for answers
(minikern.devio).  A bell rings only when its side said it sleeps, so a
busy driver costs no system call per access, an idle one no CPU at all.
Stores and loads to the two words and the slots are not fenced (Python has
no fence), so a request published just as the board decides to sleep may
see no bell; the driver, which waits for every answer, rings again when its
first wait (1 ms) ends without one, so the board needs no timer of its own.
At most BURST requests are served per loop turn, so one
busy driver cannot starve the bus or the others.

Invariants: every port of every request is checked against the ring's
windows before anything is performed (hw.board_ring); a refusal is audited
(a ``denied`` event, call "DEVIO", path "channel") and counted, never
performed.  A DMA grant must lie inside one of the driver's own memory
windows and name a DMA-capable device.  Tokens are single-use and replaced
by a newer IOMAP of the same endpoint.  A ring whose doorbell closes (the
driver closed it, or died, even mid-request) is dropped: the driver lives
and may IOMAP again for a fresh ring.  When the kernel reports the endpoint
``gone`` its rings, token and DMA grants all go (the IOMMU stops the device
writing a dead driver's buffers); device state stays, so a restarted driver
finds the hardware as it was left.
"""
from __future__ import annotations

import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hw.board_machine import DMA_DEVICES, Audit, Machine
from hw.board_ring import Offer, Ring
from minikern import domain, params
from minikern.const import Err
from minikern.proto import fastpath as fp

Windows = tuple[tuple[int, int], ...]
Watch = Callable[[int, Callable[[], None]], None]
Unwatch = Callable[[int], None]
Later = Callable[[float, Callable[[], None]], object]

MAX_PACKET = fp.FASTPATH.max_frame + 1  # one byte more, so an oversized request is seen
BURST = 256  # requests served from one ring per loop turn (one ring's worth)
SPIN = 100e-6  # seconds the board polls a served ring for the next request before sleeping
MAX_PENDING = 32  # connected sockets that have not attached yet (each for ATTACH_TIMEOUT at most)
SOCKET_NAME = "board.sock"


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
        domain.share_socket(self.path)  # booted as root: every component's group may connect
        self.listener.listen(16)
        self.offers: dict[str, Offer] = {}
        self.token_of: dict[int, str] = {}
        self.pending: dict[int, socket.socket] = {}
        self.rings: dict[int, Ring] = {}  # the board's end of the doorbell's fd -> ring
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
        for fd, r in list(self.rings.items()):
            if r.owner.endpoint == endpoint:
                self.drop(fd)
        for device, base in self.grants.pop(endpoint, []):
            self.machine.iommu.revoke(device, base, owner=endpoint)

    # -- the attach handshake -------------------------------------------------------

    def on_accept(self) -> None:
        for _ in range(MAX_PENDING):  # a turn's worth; more are accepted the next turn
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
        """Answer the one ATTACH with a fresh ring, then close the connection."""
        sock = self.pending.pop(fd)
        self.unwatch(fd)
        with sock:
            try:
                msg = fp.decode_request(sock.recv(MAX_PACKET))
            except OSError:  # EOF, EAGAIN: not an attach
                msg = None
            offer = self.offers.pop(msg.token, None) if msg is not None else None
            if offer is None:
                self.counters["attach_refused"] += 1
                try:
                    sock.send(fp.encode_reply(Err.EPERM))
                except OSError:
                    pass
                return
            self.token_of.pop(offer.endpoint, None)
            try:
                r = Ring(offer, self.machine, self.audit, self.counters, self.dma, self.undma)
            except OSError:  # out of memory or descriptors: this driver gets no ring
                self.counters["ring_failed"] += 1
                try:
                    sock.send(fp.encode_reply(Err.ENOMEM))
                except OSError:
                    pass
                return
            fds = [r.fd, r.peer.fileno()]
            fds += [self.machine.memory.segments[base].fd for base, _ in offer.mem]
            reply = fp.encode_attached(fp.Attached(offer.endpoint, list(offer.io), list(offer.mem)))
            try:
                socket.send_fds(sock, [reply], fds)
            except OSError:
                r.close()
                return
        r.handed_over()
        bell = r.bell.fileno()
        self.rings[bell] = r
        self.counters["attached"] += 1
        self.watch(bell, lambda: self.on_bell(bell))

    # -- serving the rings ------------------------------------------------------------

    def on_bell(self, fd: int) -> None:
        r = self.rings.get(fd)
        if r is None:
            return
        if not r.drain():
            self.drop(fd)
            return
        self.counters["kicks"] += 1
        self.run(fd, r)

    def run(self, fd: int, r: Ring) -> None:
        """Serve up to BURST requests, polling SPIN for more after each; then sleep on the bell.

        Only a served request keeps the board here: a chain whose last slot never comes
        (a driver killed in the middle of writing it) is looked at once per bell, not spun on."""
        r.wake()
        served, spin_end = 0, 0.0
        while served < BURST:
            n = r.serve(BURST - served)
            if n:
                served, spin_end = served + n, 0.0
                continue
            now = time.perf_counter()
            if not spin_end:
                spin_end = now + SPIN
            elif now > spin_end:
                r.sleep()
                n = r.serve(BURST - served)  # looked at again after saying so
                if not n:
                    self.counters["sleeps"] += 1
                    return
                r.wake()
                served, spin_end = served + n, 0.0
        self.later(0, lambda: self._again(fd))  # more may be waiting: the next loop turn

    def _again(self, fd: int) -> None:
        r = self.rings.get(fd)
        if r is not None:
            self.run(fd, r)

    def drop(self, fd: int) -> None:
        r = self.rings.pop(fd, None)
        if r is not None:
            self.unwatch(fd)
            r.close()
            self.counters["dropped"] += 1

    # -- DMA grants, for the rings ------------------------------------------------------

    def dma(self, owner: Offer, device: str, base: int, length: int, write: bool) -> tuple[int, int]:
        endpoint = owner.endpoint
        if device not in DMA_DEVICES:
            return Err.EINVAL, 0
        if not any(b <= base and base + length <= b + n for b, n in owner.mem):
            self.counters["dma_grant_refused"] += 1
            self.audit.write(endpoint, self.label_of(endpoint), "DMAGRANT", base, "EPERM",
                             device=device, length=length)
            return Err.EPERM, 0
        self.machine.iommu.grant(device, base, length, write, owner=endpoint)
        self.grants.setdefault(endpoint, []).append((device, base))
        return Err.OK, 0

    def undma(self, owner: Offer, device: str, base: int) -> tuple[int, int]:
        endpoint = owner.endpoint
        owned = self.grants.get(endpoint, [])
        if (device, base) not in owned:
            return Err.EINVAL, 0
        owned.remove((device, base))
        return Err.OK, self.machine.iommu.revoke(device, base, owner=endpoint)

    def close(self) -> None:
        for fd in list(self.rings):
            self.drop(fd)
        for sock in self.pending.values():
            sock.close()
        self.listener.close()
        self.path.unlink(missing_ok=True)
