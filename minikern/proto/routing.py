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
import os
import secrets
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import zmq

from minikern import params
from minikern.proto import peercred
from minikern.proto.peercred import PeerCred


def seed_routing_ids() -> None:
    """Seed libc's rand(), which libzmq draws each ROUTER's first routing id from."""
    ctypes.CDLL(None).srand(ctypes.c_uint(secrets.randbits(32)))


def assigned(ident: bytes) -> bool:
    """Whether ``ident`` has the form of a routing id libzmq assigns (0x00, a counter)."""
    return len(ident) == 5 and ident[0] == 0


def receive(sock: zmq.Socket[Any], known: Callable[[bytes], bool]
            ) -> tuple[list[bytes], str | None, PeerCred | None]:
    """One message from a ROUTER socket (its first frame the peer's routing id); why it is
    refused unread, if it is: from a peer not ``known`` yet (not admitted) that named
    itself (``routing_id_claimed``), or that sent more parts or bytes than a HELLO needs
    (``unadmitted_oversized``); and, for a peer not admitted yet, its credentials as the
    operating system gave them (minikern.proto.peercred; None for an admitted peer: the
    kernel already knows who it is).  The hot path pays a lookup and the id read apart, as
    bytes: a frame object (needed for the metadata) costs a microsecond more a message, so
    only the parts after the id of a peer not admitted yet are read as frames (every part of
    a message carries its connection's metadata).  A ROUTER's message always has a part
    after the id (a peer cannot send an empty message)."""
    ident = sock.recv()
    if known(ident):
        return [ident, *sock.recv_multipart()], None, None
    rest = sock.recv_multipart(copy=False) if sock.get(zmq.RCVMORE) else []
    frames = [ident, *(f.bytes for f in rest)]
    if not assigned(ident):
        return frames, "routing_id_claimed", None
    if (len(frames) > 1 + params.UNADMITTED_MAX_PARTS
            or sum(map(len, frames)) > params.UNADMITTED_MAX_BYTES):
        return frames, "unadmitted_oversized", None
    return frames, None, peercred.parse(str(rest[0].get("Peer-Address"))) if rest else None


ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq asks (RFC 27/ZAP), in the kernel's context


SWEEP = 0.25  # seconds between two looks at the connections not admitted yet
_LIBC = ctypes.CDLL(None)


class Peer:
    """One accepted connection, as the operating system names its peer (SO_PEERCRED)."""
    __slots__ = ("fd", "uid", "pid", "since", "bounded", "gone")

    def __init__(self, fd: int, uid: int, pid: int, since: float, bounded: Bounded) -> None:
        self.fd, self.uid, self.pid, self.since, self.bounded = fd, uid, pid, since, bounded
        self.gone = False  # disconnected (its descriptor may be another connection's now)


def _connection(fd: int, path: str) -> socket.socket | None:
    """Descriptor ``fd`` as a socket object, if it is still a connection accepted on the
    socket bound at ``path``: the monitor reports a descriptor by number, and by the time
    the report is read it may have been closed and reused (by a spawn's socketpair, say).
    The object borrows the descriptor (no dup: near the descriptor limit there may be none
    to spare); release it with ``detach``, never ``close``."""
    try:
        s = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        if s.family == socket.AF_UNIX and s.getsockname() == path:
            return s
    except OSError:
        pass
    s.detach()
    return None


def peer_credentials(s: socket.socket) -> tuple[int, int]:
    """(uid, pid) of the process at the other end of the AF_UNIX socket ``s``."""
    pid, uid, _ = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return uid, pid


def zap_peer(address: bytes) -> PeerCred | None:
    """The peer's credentials in a ZAP request's address: libzmq writes
    ``localhost:<uid>:<gid>:<pid>`` for an ipc:// peer, from SO_PEERCRED."""
    return peercred.parse(address.decode(errors="replace"))


class Bounded:
    """A listening socket's open connections, from its monitor (accepted and disconnected,
    the ZAP-refused ones included), each with its peer's uid and pid: ``peers`` by
    descriptor, ``uids`` and ``pids``, open connections per uid and per process."""

    def __init__(self, sock: zmq.Socket[Any], limit: int, per_uid: int, per_pid: int,
                 admitted: Callable[[], set[int]], domain: str) -> None:
        self.limit, self.per_uid, self.per_pid = limit, per_uid, per_pid
        self.admitted, self.domain = admitted, domain
        self.peers: dict[int, Peer] = {}
        self.uids: Counter[int] = Counter()
        self.pids: Counter[int] = Counter()
        self.monitor: zmq.Socket[Any] = sock.get_monitor_socket(
            zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.sock, self.path = sock, ""

    @property
    def open(self) -> int:
        return len(self.peers)

    def on_events(self, batch: int, pending: set[Peer]) -> None:
        for _ in range(batch):
            try:
                event = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            kind, fd = struct.unpack("=HI", event[0][:6])
            self._forget(fd)
            if kind == zmq.EVENT_ACCEPTED:
                self.path = self.path or event[1].decode(errors="replace").removeprefix("ipc://")
                s = _connection(fd, self.path)
                if s is None:
                    continue
                try:
                    uid, pid = peer_credentials(s)
                except OSError:
                    continue
                finally:
                    s.detach()
                self.peers[fd] = peer = Peer(fd, uid, pid, time.monotonic(), self)
                pending.add(peer)
                self.uids[uid] += 1
                self.pids[pid] += 1

    def _forget(self, fd: int) -> None:
        peer = self.peers.pop(fd, None)
        if peer is not None:
            peer.gone = True
            for count, key in (self.uids, peer.uid), (self.pids, peer.pid):
                count[key] -= 1
                if not count[key]:
                    del count[key]

    def cut(self, peer: Peer) -> bool:
        """End a connection whose peer was never admitted: shutdown(2) on its descriptor
        (still the same peer's), so libzmq sees it close and frees what it buffered."""
        s = _connection(peer.fd, self.path)
        if s is None:
            return False
        try:
            if peer_credentials(s) != (peer.uid, peer.pid):
                return False
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            return False
        finally:
            s.detach()
        return True

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(0)


class Admission:
    """The kernel's ZAP handler and the watch on connections not admitted yet.

    Every connection to a guarded socket is asked about before its handshake completes,
    and refused (ZAP status 400) while the socket has more than its bound of open
    connections, its peer's uid more than its own bound (the kernel's own uid, whose
    processes are the system's, has only the socket's), or its peer process more than
    ``per_pid`` (every uid's: a process needs one connection, and an admitted one's others
    are never cut, so they are bounded here).  Why not stop listening instead:
    libzmq's unbind drops every connection it accepted.  Only libzmq, from inside the
    kernel's own context, can reach this socket; a request that is not ZAP 1.0 is dropped.

    A connection whose peer process is neither one the kernel started nor one admitted
    ``params.UNADMITTED_DEADLINE`` after it was accepted is cut (``sweep``).  Why: libzmq
    counts only complete messages against the high-water mark, so a peer that sends parts
    with MORE set and never ends the message grows the kernel without bound, and the kernel
    cannot see those parts until the message is complete.  Cutting the connection frees them."""

    def __init__(self, ctx: zmq.Context[Any], own_uid: int | None = None) -> None:
        self.sock: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)
        self.guarded: dict[bytes, Bounded] = {}
        self.own_uid = os.getuid() if own_uid is None else own_uid
        self.pending: set[Peer] = set()  # accepted, their peer process not known yet
        self.next_sweep = 0.0

    def guard(self, sock: zmq.Socket[Any], domain: str, limit: int,
              admitted: Callable[[], set[int]] = set,
              per_uid: int = params.MAX_CONNECTIONS_PER_UID,
              per_pid: int = params.MAX_CONNECTIONS_PER_PID) -> Bounded:
        """Guard ``sock`` (before its bind: libzmq copies the domain then).  ``admitted``
        gives the pids the socket knows (a connection of theirs is never cut)."""
        sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
        self.guarded[domain.encode()] = bounded = Bounded(sock, limit, per_uid, per_pid, admitted,
                                                          domain)
        return bounded

    def on_events(self, batch: int) -> None:
        for bounded in self.guarded.values():
            bounded.on_events(batch, self.pending)

    def refusal(self, bounded: Bounded, address: bytes) -> str | None:
        if bounded.open > bounded.limit:
            return "too many connections"
        peer = zap_peer(address)
        if peer is not None and peer.uid != self.own_uid and bounded.uids[peer.uid] > bounded.per_uid:
            return "too many connections of this uid"
        if peer is not None and bounded.pids[peer.pid] > bounded.per_pid:
            return "too many connections of this pid"
        return None

    def on_requests(self, batch: int) -> list[str]:
        """Answer up to ``batch`` requests; return what each refusal is counted as: the
        domain (``kernel``, ``bus``), or the domain and ``_uid`` (``_pid``) for the bound
        per uid (per process)."""
        refused: list[str] = []
        self.on_events(4 * batch)  # the kernel may have been woken by a monitor alone: drain it
        for _ in range(batch):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) < 8 or frames[1] != b"" or frames[2] != b"1.0":
                continue
            # The accept came before this request, but on the monitor's own pipe: read it
            # now, or a request read just after the events were drained is counted short.
            self.on_events(4 * batch)
            bounded = self.guarded.get(frames[4])
            why = "no such domain" if bounded is None else self.refusal(bounded, frames[5])
            if why is not None:
                domain = frames[4].decode(errors="replace")
                refused.append(domain + "_" + why[-3:] if why.endswith(("uid", "pid")) else domain)
            self.sock.send_multipart([frames[0], b"", b"1.0", frames[3],
                                      b"200" if why is None else b"400",
                                      (why or "OK").encode(), b"", b""])
        return refused

    def sweep(self, timeout: int | None, count: Callable[[str], None]) -> int | None:
        """Cut the connections past the deadline whose peer process is not known to the
        socket (``admitted``) (each counted ``<domain>_unadmitted_cut``); return the poll timeout
        (``timeout``, or sooner while connections remain to be watched)."""
        now = time.monotonic()
        if now >= self.next_sweep:
            self.on_events(1024)  # first the accepts and disconnects already reported
            admitted: dict[int, set[int]] = {}
            freed = 0
            for peer in list(self.pending):
                pids = admitted.get(id(peer.bounded))
                if pids is None:
                    pids = admitted[id(peer.bounded)] = peer.bounded.admitted()
                if peer.pid in pids:
                    self.pending.discard(peer)  # its process is known: one of its own
                elif peer.gone:
                    self.pending.discard(peer)
                    freed += 1
                elif now - peer.since >= params.UNADMITTED_DEADLINE:
                    self.pending.discard(peer)
                    if peer.bounded.cut(peer):
                        freed += 1
                        count(peer.bounded.domain + "_unadmitted_cut")
            if freed:  # what libzmq held for an unknown peer goes back to the system
                _LIBC.malloc_trim(0)
            self.next_sweep = now + SWEEP
        if not self.pending:
            return timeout
        left = int((self.next_sweep - now) * 1000) + 1
        return left if timeout is None else min(timeout, left)

    def close(self) -> None:
        for bounded in self.guarded.values():
            bounded.close()
        self.sock.close(0)
