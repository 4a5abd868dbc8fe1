"""The kernel-board bus: the kernel's link to the emulated machine (docs/PROTOCOL.md, "The bus").

Frames are ``["MKBUS", 1, verb, *fields]`` on a ZeroMQ DEALER (board) /
ROUTER (kernel) pair.  The board joins with ``Hello`` carrying the one-time
credential from its startup record and waits for the kernel's ``Welcome``
before it reports its init done; after that it raises interrupts
(``Irq``) and answers every forwarded ``Io``/``IoMap`` with exactly one
``Done``.  The kernel forwards port I/O it has already checked against the
driver's windows, line masks, fast-path offers, deaths and the shutdown.
Each direction has its own decoder, so a verb sent the wrong way is refused
like any malformed frame.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple

from minikern.proto import codec

BUS = codec.Protocol("MKBUS", 1, 1 << 20)
MAX_OPS = 1024  # port accesses in one Io


class Verb(IntEnum):
    HELLO = 1     # board -> kernel
    IRQ = 2       # board -> kernel
    DONE = 3      # board -> kernel
    IO = 4        # kernel -> board
    IRQCTL = 5    # kernel -> board
    IOMAP = 6     # kernel -> board
    GONE = 7      # kernel -> board
    SHUTDOWN = 8  # kernel -> board
    WELCOME = 9   # kernel -> board


class IoKind(IntEnum):
    DEVIO = 1   # one access
    VDEVIO = 2  # a vector of accesses
    SDEVIO = 3  # rep ins/outs: one port, ``count`` times, data in ``extra``


Op = tuple[int, int, int | None]  # (port, size, value or None to read)


class Hello(NamedTuple):
    credential: bytes


class Irq(NamedTuple):
    line: int


class Done(NamedTuple):
    """The board's one answer to an Io or IoMap: a status and its result fields."""

    endpoint: int
    status: int
    result: dict[str, Any]


class Io(NamedTuple):
    endpoint: int
    kind: IoKind
    ops: list[Op]
    extra: dict[str, Any]


class IrqCtl(NamedTuple):
    line: int
    enable: bool


class IoMap(NamedTuple):
    endpoint: int
    label: str
    io: list[tuple[int, int]]
    mem: list[tuple[int, int]]


class Gone(NamedTuple):
    endpoint: int


class Shutdown(NamedTuple):
    pass


class Welcome(NamedTuple):
    """The kernel took the board's Hello: the board is on the bus (its first frame from the
    kernel).  A connection is made in the background, so a Hello sent is not yet a Hello
    taken: the board waits for this before it reports its init done."""


class Unreadable(NamedTuple):
    """An Io or IoMap whose endpoint is readable but whose fields are not.

    Never sent: the decoder returns it so the board still answers the driver
    (EINVAL) instead of leaving it blocked in its kernel call.
    """

    endpoint: int


FromBoard = Hello | Irq | Done
FromKernel = Io | IrqCtl | IoMap | Gone | Shutdown | Welcome | Unreadable

_VERB: dict[type, Verb] = {
    Hello: Verb.HELLO, Irq: Verb.IRQ, Done: Verb.DONE, Io: Verb.IO, IrqCtl: Verb.IRQCTL,
    IoMap: Verb.IOMAP, Gone: Verb.GONE, Shutdown: Verb.SHUTDOWN, Welcome: Verb.WELCOME,
}
_INT32 = 1 << 31


def encode(msg: FromBoard | FromKernel) -> bytes:
    return codec.encode_frame(BUS, _VERB[type(msg)], *msg)


def _endpoint(v: object) -> bool:
    return type(v) is int and -_INT32 <= v < _INT32


def decode_op(o: object) -> Op | None:
    """One port access of an Io, or None (the kernel checks a driver's request with it too)."""
    if (type(o) is list and len(o) == 3 and type(o[0]) is int and 0 <= o[0] < 1 << 16
            and o[1] in (1, 2, 4) and type(o[1]) is int and (o[2] is None or type(o[2]) is int)):
        return (o[0], o[1], o[2])
    return None


def _windows(v: object) -> list[tuple[int, int]] | None:
    if type(v) is not list or len(v) > 64:
        return None
    out = []
    for w in v:
        if type(w) is not list or len(w) != 2 or not all(type(x) is int and x >= 0 for x in w):
            return None
        out.append((w[0], w[1]))
    return out


def decode_from_board(frame: bytes) -> FromBoard | None:
    """What the kernel accepts from the board; None for anything else (counted in codec.refused)."""
    msg = codec.decode_frame(BUS, frame)
    if msg is None:
        return None
    verb, n = msg[0], len(msg)
    if verb == Verb.IRQ and n == 2 and type(msg[1]) is int and 0 <= msg[1] < 16:
        return Irq(msg[1])
    if (verb == Verb.DONE and n == 4 and _endpoint(msg[1]) and type(msg[2]) is int
            and type(msg[3]) is dict and all(type(k) is str for k in msg[3])):
        return Done(msg[1], msg[2], msg[3])
    if verb == Verb.HELLO and n == 2 and type(msg[1]) is bytes:
        return Hello(msg[1])
    codec.refused[BUS.name + ":malformed"] += 1
    return None


def _decode_io(msg: list[Any]) -> Io | None:
    if len(msg) != 5 or not _endpoint(msg[1]) or type(msg[2]) is not int:
        return None
    if msg[2] not in IoKind._value2member_map_ or type(msg[3]) is not list:
        return None
    if type(msg[4]) is not dict:
        return None
    if not 0 < len(msg[3]) <= MAX_OPS or not all(type(k) is str for k in msg[4]):
        return None
    ops = []
    for o in msg[3]:
        op = decode_op(o)
        if op is None:
            return None
        ops.append(op)
    return Io(msg[1], IoKind(msg[2]), ops, msg[4])


def decode_from_kernel(frame: bytes) -> FromKernel | None:
    """What the board accepts from the kernel; None for anything else (counted in codec.refused)."""
    msg = codec.decode_frame(BUS, frame)
    if msg is None:
        return None
    verb, n = msg[0], len(msg)
    decoded: FromKernel | None = None
    if verb == Verb.IO:
        decoded = _decode_io(msg)
    elif (verb == Verb.IRQCTL and n == 3 and type(msg[1]) is int and 0 <= msg[1] < 16
            and type(msg[2]) is bool):
        decoded = IrqCtl(msg[1], msg[2])
    elif verb == Verb.IOMAP and n == 5 and _endpoint(msg[1]) and type(msg[2]) is str:
        io, mem = _windows(msg[3]), _windows(msg[4])
        decoded = IoMap(msg[1], msg[2], io, mem) if io is not None and mem is not None else None
    elif verb == Verb.GONE and n == 2 and _endpoint(msg[1]):
        decoded = Gone(msg[1])
    elif verb == Verb.SHUTDOWN and n == 1:
        decoded = Shutdown()
    elif verb == Verb.WELCOME and n == 1:
        decoded = Welcome()
    if decoded is None:
        codec.refused[BUS.name + ":malformed"] += 1
        if verb in (Verb.IO, Verb.IOMAP) and n > 1 and _endpoint(msg[1]):
            return Unreadable(msg[1])  # a driver waits on this one: it must be answered
    return decoded
