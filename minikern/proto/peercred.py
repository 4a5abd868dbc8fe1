"""Who is at the other end of a connection, as the operating system says: its uid, gid and pid.

Used by the kernel to admit a connection (docs/PROTOCOL.md section 3): what a peer claims
in its HELLO is never its identity.  libzmq reads the peer's SO_PEERCRED when it accepts an
``ipc://`` connection and attaches ``localhost:<uid>:<gid>:<pid>`` to every message from it
as the ``Peer-Address`` property (the ZAP request's address is the same string), so the
kernel reads it from the first frame of a message (minikern.proto.routing.receive).  A
string of another form (a TCP peer, a libzmq built without SO_PEERCRED) gives None: the
peer is then no one the kernel can name, and gets nothing that needs a name.
"""
from __future__ import annotations

from typing import NamedTuple


class PeerCred(NamedTuple):
    uid: int
    gid: int
    pid: int


def parse(address: str | None) -> PeerCred | None:
    """The credentials in libzmq's peer address of an ipc connection, or None."""
    if not address:
        return None
    parts = address.rsplit(":", 3)
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 10 for p in parts[1:]):
        return None
    uid, gid, pid = (int(p) for p in parts[1:])
    return PeerCred(uid, gid, pid) if pid > 0 else None
