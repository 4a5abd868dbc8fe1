"""The driver fast path: a driver's channel to exactly its port and memory windows.

One AF_UNIX SOCK_SEQPACKET connection per driver to ``run_dir/board.sock``,
opened with the one-time token from IOMAP (docs/PROTOCOL.md, "The driver fast
path").  A request is ``["MKFP", 1, op, *args]``; the board answers every
request, in order, with ``["MKFP", 1, status, *values]`` (status 0 or a
negative ``minikern.const.Err``).  The first request must be ``Attach``; its
answer carries the driver's windows, and one memfd per memory window as
SCM_RIGHTS.  This channel carries every port access of a busy driver, so the
decoders are written for speed: a type test per field, no copies.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple

from minikern.proto import codec

MAX_STRING_BYTES = 64 * 1024  # data of one Sin/Sout
MAX_VECTOR = 1024  # accesses in one Vec
FASTPATH = codec.Protocol("MKFP", 1, MAX_STRING_BYTES + 4096)
MAX_REPLY = 256 * 1024  # largest answer (a Sin's data, or the attach reply)
_REPLY = codec.Protocol("MKFP", 1, MAX_REPLY)


class Op(IntEnum):
    ATTACH = 1
    IN = 2
    OUT = 3
    VEC = 4
    SIN = 5    # rep ins
    SOUT = 6   # rep outs
    DMA = 7    # grant a device DMA into my memory
    UNDMA = 8


class Attach(NamedTuple):
    token: str


class In(NamedTuple):
    port: int
    size: int


class Out(NamedTuple):
    port: int
    size: int
    value: int


class Vec(NamedTuple):
    ops: list[tuple[int, int, int | None]]  # (port, size, value or None to read)


class Sin(NamedTuple):
    port: int
    size: int
    repeat: int  # reads of the port


class Sout(NamedTuple):
    port: int
    size: int
    data: bytes


class Dma(NamedTuple):
    device: str
    base: int
    length: int
    write: bool


class Undma(NamedTuple):
    device: str
    base: int


class Attached(NamedTuple):
    """The answer to Attach: who the channel is and what it reaches."""

    endpoint: int
    io: list[tuple[int, int]]
    mem: list[tuple[int, int]]


Request = Attach | In | Out | Vec | Sin | Sout | Dma | Undma

_OP: dict[type, int] = {Attach: Op.ATTACH, In: Op.IN, Out: Op.OUT, Vec: Op.VEC, Sin: Op.SIN,
                        Sout: Op.SOUT, Dma: Op.DMA, Undma: Op.UNDMA}
_SIZES = (1, 2, 4)
_NAME, _VERSION, _IN, _OUT = FASTPATH.name, FASTPATH.version, int(Op.IN), int(Op.OUT)
_pack, _unpack = codec.frame_pack, codec.frame_unpack
_new = tuple.__new__


def encode(req: Request) -> bytes:
    return codec.encode_frame(FASTPATH, _OP[type(req)], *req)


# A busy driver's accesses are nearly all single IN and OUT: these two encode exactly what
# encode(In(..)) and encode(Out(..)) do, without building the message first.
def encode_in(port: int, size: int) -> bytes:
    return _pack((_NAME, _VERSION, _IN, port, size))


def encode_out(port: int, size: int, value: int) -> bytes:
    return _pack((_NAME, _VERSION, _OUT, port, size, value))


def _port(port: object, size: object) -> bool:
    return type(port) is int and 0 <= port < 1 << 16 and type(size) is int and size in _SIZES


def _vector(ops: object) -> Vec | None:
    if type(ops) is not list or not 0 < len(ops) <= MAX_VECTOR:
        return None
    out = []
    for o in ops:
        if (type(o) is not list or len(o) != 3 or not _port(o[0], o[1])
                or (o[2] is not None and type(o[2]) is not int)):
            return None
        out.append((o[0], o[1], o[2]))
    return Vec(out)


def decode_request(frame: bytes) -> Request | None:
    """The board's decoder; None for anything malformed (counted in codec.refused)."""
    if len(frame) <= FASTPATH.max_frame:  # IN and OUT first, written out: the hot path
        msg = _unpack(frame)
        if type(msg) is list and len(msg) in (5, 6) and msg[0] == _NAME and msg[1] == _VERSION:
            op, port, size = msg[2], msg[3], msg[4]
            if (type(port) is int and 0 <= port < 1 << 16 and type(size) is int
                    and size in _SIZES):
                if op == _IN and len(msg) == 5:
                    return _new(In, (port, size))  # In(port, size), without the Python call
                if op == _OUT and len(msg) == 6 and type(msg[5]) is int:
                    return _new(Out, (port, size, msg[5]))
    return _decode_other(frame)


def _decode_other(frame: bytes) -> Request | None:
    msg = codec.decode_frame(FASTPATH, frame)
    if msg is None:
        return None
    op, n = msg[0], len(msg)
    req: Request | None = None
    if op == Op.VEC:
        req = _vector(msg[1]) if n == 2 else None
    elif op == Op.SIN:
        if (n == 4 and _port(msg[1], msg[2]) and type(msg[3]) is int
                and 0 < msg[3] * msg[2] <= MAX_STRING_BYTES):
            req = Sin(msg[1], msg[2], msg[3])
    elif op == Op.SOUT:
        if (n == 4 and _port(msg[1], msg[2]) and type(msg[3]) is bytes
                and 0 < len(msg[3]) <= MAX_STRING_BYTES and len(msg[3]) % msg[2] == 0):
            req = Sout(msg[1], msg[2], msg[3])
    elif op == Op.DMA:
        if (n == 5 and type(msg[1]) is str and type(msg[2]) is int and type(msg[3]) is int
                and msg[2] >= 0 and msg[3] > 0 and type(msg[4]) is bool):
            req = Dma(msg[1], msg[2], msg[3], msg[4])
    elif op == Op.UNDMA:
        if n == 3 and type(msg[1]) is str and type(msg[2]) is int:
            req = Undma(msg[1], msg[2])
    elif op == Op.ATTACH and n == 2 and type(msg[1]) is str:
        req = Attach(msg[1])
    if req is None:
        codec.refused[FASTPATH.name + ":malformed"] += 1
    return req


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
