"""The driver fast path's attach handshake: a driver's ring to exactly its port and memory windows.

One AF_UNIX SOCK_SEQPACKET connection per driver to ``run_dir/board.sock``,
opened with the one-time token from IOMAP (docs/PROTOCOL.md, section 10).
The driver sends one ``["MKFP", 2, ATTACH, token]``; the board answers
``["MKFP", 2, status, *values]`` (status 0 or a negative
``minikern.const.Err``) and closes the connection.  A successful answer
carries the driver's windows and, as SCM_RIGHTS, the ring (a sealed memfd,
minikern.proto.ring), the driver's end of the ring's doorbell (an AF_UNIX
stream socket) and one memfd per memory window, in that order.  Port I/O
itself never travels as a packet: it is slots in the ring.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple

from minikern.proto import codec

FASTPATH = codec.Protocol("MKFP", 2, 1024)
MAX_REPLY = 64 * 1024  # the attach answer (windows are at most 64 + 64)
_REPLY = codec.Protocol("MKFP", 2, MAX_REPLY)
FIXED_FDS = 2  # the ring and the doorbell come before the memory windows' memfds


class Op(IntEnum):
    ATTACH = 1


class Attach(NamedTuple):
    token: str


class Attached(NamedTuple):
    """The answer to Attach: who the ring is and what it reaches."""

    endpoint: int
    io: list[tuple[int, int]]
    mem: list[tuple[int, int]]


Request = Attach
_NAME, _VERSION = FASTPATH.name, FASTPATH.version
_pack, _unpack = codec.frame_pack, codec.frame_unpack


def encode(req: Request) -> bytes:
    return codec.encode_frame(FASTPATH, Op.ATTACH, *req)


def decode_request(frame: bytes) -> Request | None:
    """The board's decoder; None for anything malformed (counted in codec.refused)."""
    msg = codec.decode_frame(FASTPATH, frame)
    if msg is None:
        return None
    if msg[0] == Op.ATTACH and len(msg) == 2 and type(msg[1]) is str:
        return Attach(msg[1])
    codec.refused[FASTPATH.name + ":malformed"] += 1
    return None


def encode_reply(status: int, *values: Any) -> bytes:
    return _pack((_NAME, _VERSION, status, *values))


def encode_attached(a: Attached) -> bytes:
    return encode_reply(0, {"endpoint": a.endpoint, "io": a.io, "mem": a.mem})


def decode_reply(frame: bytes) -> list[Any] | None:
    """``[status, *values]`` (the driver's decoder), or None if malformed."""
    msg = _unpack(frame) if len(frame) <= MAX_REPLY else None
    if type(msg) is list and len(msg) >= 3 and msg[0] == _NAME and msg[1] == _VERSION \
            and type(msg[2]) is int:
        return msg[2:]
    return codec.decode_frame(_REPLY, frame)  # refused: this counts why


def _windows(v: object) -> list[tuple[int, int]] | None:
    if type(v) is not list or len(v) > 64:
        return None
    if not all(type(w) is list and len(w) == 2 and type(w[0]) is int and type(w[1]) is int
               for w in v):
        return None
    return [(w[0], w[1]) for w in v]


def decode_attached(reply: list[Any]) -> Attached | None:
    """The fields of a successful Attach answer, or None if they are not what they should be."""
    info = reply[1] if len(reply) == 2 and reply[0] == 0 else None
    if type(info) is not dict or type(info.get("endpoint")) is not int:
        return None
    io, mem = _windows(info.get("io")), _windows(info.get("mem"))
    if io is None or mem is None:
        return None
    return Attached(info["endpoint"], io, mem)
