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
- a frame from a peer that named itself (its ZMTP handshake declared a non-empty
  ``Identity``) is dropped and counted, never handled: no self-named peer is admitted,
  and none takes over the id of a connection that is gone.
"""
from __future__ import annotations

import ctypes
import secrets
from typing import Any

import zmq


def seed_routing_ids() -> None:
    """Seed libc's rand(), which libzmq draws each ROUTER's first routing id from."""
    ctypes.CDLL(None).srand(ctypes.c_uint(secrets.randbits(32)))


def named_itself(frame: zmq.Frame) -> bool:
    """Whether the peer that sent ``frame`` chose its own routing id.  A peer whose
    handshake carried no metadata (ZMTP before 3.0, which sends its id as a frame) counts
    as one that did."""
    try:
        return bool(frame.get("Identity"))
    except zmq.ZMQError:
        return True


def receive(sock: zmq.Socket[Any]) -> tuple[list[bytes], bool]:
    """One message from a ROUTER socket (its first frame the peer's routing id), and
    whether the peer named itself."""
    frames = sock.recv_multipart(copy=False)
    return [f.bytes for f in frames], len(frames) < 2 or named_itself(frames[1])
