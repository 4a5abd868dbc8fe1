"""Routing ids on the kernel's ROUTER sockets (the kernel socket and the bus): a peer is
known only by the id the kernel's ROUTER gave it (docs/PROTOCOL.md, "Connections and
routing ids").

libzmq names a peer that does not name itself 0x00 and a 32-bit counter, and never
checks that name against the ones peers chose for themselves: a peer that names itself
with the counter's next value, then any plain connection, and libzmq asserts (the kernel
dies with SIGABRT).  Two defences, because libzmq offers no way to refuse a self-named
peer before it is attached (a ZAP request carries the listening socket's own routing id,
not the peer's):

- the counter starts where no peer can predict: libzmq draws it from the C library's
  rand() as it makes a ROUTER, and rand() is never seeded, so every kernel started at
  the same value.  ``seed_routing_ids`` seeds it from the operating system's CSPRNG
  before the kernel makes its sockets.
- a frame from a peer that named itself is dropped and counted, never handled.  An id
  the ROUTER assigned has libzmq's own form, five bytes with 0x00 first; a peer not
  admitted yet whose id has any other form chose it.  Against a chosen name of libzmq's
  own form, the one that collides or takes over a gone connection's id, the unguessable
  counter is the defence.
"""
from __future__ import annotations

import ctypes
import secrets
from collections.abc import Callable
from typing import Any

import zmq

from minikern.proto import peercred
from minikern.proto.peercred import PeerCred


def seed_routing_ids() -> None:
    """Seed libc's rand(), which libzmq draws each ROUTER's first routing id from."""
    ctypes.CDLL(None).srand(ctypes.c_uint(secrets.randbits(32)))


def assigned(ident: bytes) -> bool:
    """Whether ``ident`` has the form of a routing id libzmq assigns (0x00, a counter)."""
    return len(ident) == 5 and ident[0] == 0


def receive(sock: zmq.Socket[Any], known: Callable[[bytes], bool]
            ) -> tuple[list[bytes], bool, PeerCred | None]:
    """One message from a ROUTER socket (its first frame the peer's routing id), whether
    the peer named itself (one not ``known`` yet, not admitted, whose id is not of the
    assigned form), and, for a peer not admitted yet, its credentials as the operating
    system gave them (minikern.proto.peercred; None for an admitted peer: the kernel
    already knows who it is).  The hot path pays a lookup and one frame read apart."""
    first = sock.recv(copy=False)
    ident = first.bytes
    frames = [ident, *sock.recv_multipart()] if first.more else [ident]
    if known(ident):
        return frames, False, None
    return frames, not assigned(ident), peercred.parse(str(first.get("Peer-Address")))

ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq asks (RFC 27/ZAP), in the kernel's context


class Bounded:
    """A listening socket's open connections, counted from its monitor (accepted and
    disconnected, the ZAP-refused ones included)."""

    def __init__(self, sock: zmq.Socket[Any], limit: int) -> None:
        self.limit, self.open = limit, 0
        self.monitor: zmq.Socket[Any] = sock.get_monitor_socket(
            zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.sock = sock

    def on_events(self, batch: int) -> None:
        for _ in range(batch):
            try:
                event = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = int.from_bytes(event[0][:2], "little")
            step = 1 if kind == zmq.EVENT_ACCEPTED else -1 if kind == zmq.EVENT_DISCONNECTED else 0
            self.open = max(self.open + step, 0)

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(0)


class Admission:
    """The kernel's ZAP handler: every connection to a guarded socket is asked about
    before its handshake completes, and refused (ZAP status 400) while the socket has
    more than its bound of open connections.  Why not stop listening instead: libzmq's
    unbind drops every connection it accepted.  Only libzmq, from inside the kernel's own
    context, can reach this socket; a request that is not ZAP 1.0 is dropped."""

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        self.sock: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)
        self.guarded: dict[bytes, Bounded] = {}

    def guard(self, sock: zmq.Socket[Any], domain: str, limit: int) -> Bounded:
        sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
        self.guarded[domain.encode()] = bounded = Bounded(sock, limit)
        return bounded

    def on_requests(self, batch: int) -> list[str]:
        """Answer up to ``batch`` requests; return the domains of the refused ones."""
        refused: list[str] = []
        for socket_counts in self.guarded.values():
            socket_counts.on_events(4 * batch)  # counts first: the request follows its accept
        for _ in range(batch):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) < 8 or frames[1] != b"" or frames[2] != b"1.0":
                continue
            bounded = self.guarded.get(frames[4])
            ok = bounded is not None and bounded.open <= bounded.limit
            if not ok:
                refused.append(frames[4].decode(errors="replace"))
            self.sock.send_multipart([frames[0], b"", b"1.0", frames[3],
                                      b"200" if ok else b"400",
                                      b"OK" if ok else b"too many connections", b"", b""])
        return refused

    def close(self) -> None:
        for bounded in self.guarded.values():
            bounded.close()
        self.sock.close(0)
