"""The one module that serializes: msgpack (and the control socket's JSON) go through here.

It holds the kernel IPC frames (request and reply headers, HELLO, BYE,
message bodies) and the framing every other channel shares: a frame is
``[name, version, verb, *fields]`` where ``name``/``version`` identify the
channel's protocol (a ``Protocol``).  The channel modules beside this one
(bus, fastpath, control, startup, image) turn those fields into typed
messages.  docs/PROTOCOL.md is the specification.

Decoders never raise on bad input: they return None and the caller counts
and drops the frame.  A frame refused for its size, its shape or a protocol
name/version mismatch is also counted here, per process, in ``refused``
(keyed ``"<name>:<reason>"``), so a process can report why it dropped what it
dropped.  The kernel decodes only headers; message bodies pass through it
untouched, except kernel calls (to SYSTEM) and kernel messages (from SYSTEM),
which it encodes and decodes itself.  The kernel IPC functions are its hot
path and are written out by hand: plain tuples, no per-call allocation
beyond msgpack's.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack

from minikern.const import PROTO, Call, Kind
from minikern.params import MAX_HEADER, MAX_MESSAGE

refused: Counter[str] = Counter()


class Protocol(NamedTuple):
    """A channel's protocol: its name and version open every frame; max_frame bounds a frame."""

    name: str
    version: int
    max_frame: int


def pack(obj: object) -> bytes:
    """Raw msgpack of any value: for this package's encoders, and for tests of hostile frames."""
    data: bytes = msgpack.packb(obj)
    return data


_packb = pack
# The other channels' frames go through one long-lived Packer: msgpack.packb builds a new one
# per call, a third of the cost of a fast-path access.  Sharing it is safe: packing the plain
# values frames hold runs in C without releasing the GIL or calling back into Python.
_frame_pack = msgpack.Packer().pack
frame_pack: Callable[[object], bytes] = _frame_pack  # for a channel module's hand-written encoders


def unpack(frame: bytes) -> Any:
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception:  # msgpack raises many types on garbage; all mean "malformed"
        return None


def frame_unpack(frame: bytes) -> Any:
    """The other channels' unpack: map keys must be strings (msgpack's default), else None."""
    try:
        return msgpack.unpackb(frame)
    except Exception:  # msgpack raises many types on garbage; all mean "malformed"
        return None


def encode_frame(proto: Protocol, verb: int, *fields: Any) -> bytes:
    data: bytes = _frame_pack((proto.name, proto.version, verb) + fields)
    return data


def decode_frame(proto: Protocol, frame: bytes) -> list[Any] | None:
    """``[verb, *fields]`` of a well-formed frame of ``proto``, else None (counted in refused)."""
    if len(frame) > proto.max_frame:
        refused[proto.name + ":oversized"] += 1
        return None
    msg = frame_unpack(frame)
    if type(msg) is not list or len(msg) < 3 or type(msg[2]) is not int:
        refused[proto.name + ":malformed"] += 1
        return None
    if msg[0] != proto.name or msg[1] != proto.version:
        refused[proto.name + ":protocol"] += 1
        return None
    return msg[2:]


def encode_json(proto: Protocol, verb: str, fields: dict[str, Any]) -> bytes:
    """One JSON object on one line: the control socket's frame, readable with socat."""
    return json.dumps({"proto": proto.name, "version": proto.version, "verb": verb,
                       **fields}).encode() + b"\n"


def decode_json(proto: Protocol, line: bytes) -> dict[str, Any] | None:
    """The object of a well-formed JSON line of ``proto`` (with "verb" a string), else None."""
    if len(line) > proto.max_frame:
        refused[proto.name + ":oversized"] += 1
        return None
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        obj = None
    if type(obj) is not dict or type(obj.get("verb")) is not str:
        refused[proto.name + ":malformed"] += 1
        return None
    if obj.get("proto") != proto.name or obj.get("version") != proto.version:
        refused[proto.name + ":protocol"] += 1
        return None
    return obj


_INT_MIN, _INT_MAX = -(1 << 31), 1 << 31  # endpoints and ports are 32-bit


def _is_int(v: object) -> bool:
    return type(v) is int and _INT_MIN <= v < _INT_MAX  # bool is not an endpoint


# Number of integer fields after (PROTO, call) for each IPC trap.
_REQUEST_ARGS = {int(c): 1 for c in (Call.SEND, Call.SENDNB, Call.SENDREC, Call.NOTIFY,
                                      Call.RECEIVE)}
_REQUEST_ARGS[Call.REPLYRECV] = 2
_HAS_BODY = frozenset(int(c) for c in (Call.SEND, Call.SENDNB, Call.SENDREC, Call.REPLYRECV))


def encode_request(call: int, *args: int) -> bytes:
    return _packb((PROTO, call) + args)


def encode_bye() -> bytes:
    return _packb((PROTO, Call.BYE))


def encode_cancel() -> bytes:
    return _packb((PROTO, Call.CANCEL))


def encode_hello(credential: bytes, pid: int, label: str | None = None,
                 priv: dict[str, Any] | None = None) -> bytes:
    return _packb((PROTO, Call.HELLO, credential, pid, label, priv))


class Hello(NamedTuple):
    """A process's admission: its one-time credential, its pid, and (operator only) a label."""

    call: int
    credential: bytes
    pid: int
    label: str | None
    priv: dict[str, Any] | None


def decode_request(frames: list[bytes]) -> tuple[Any, ...] | None:
    """Validate a request; return (call, args..., body) or None if malformed.

    For IPC traps the result is the plain tuple (call, a, b, body-or-None), all
    ints (b is 0 for one-argument traps): the kernel's hot path, so no class;
    for HELLO it is a ``Hello``; for BYE ``(BYE,)``.
    """
    if not 1 <= len(frames) <= 2 or len(frames[0]) > MAX_HEADER:
        return None
    hdr = unpack(frames[0])
    if type(hdr) is not list or len(hdr) < 2 or hdr[0] != PROTO:
        return None
    call = hdr[1]
    if type(call) is not int:
        return None
    nargs = _REQUEST_ARGS.get(call)
    if nargs is not None:  # an IPC trap: the hot path, so the checks are written out
        if len(hdr) != 2 + nargs:
            return None
        a, b = hdr[2], hdr[3] if nargs == 2 else 0
        if (type(a) is not int or type(b) is not int or not _INT_MIN <= a < _INT_MAX
                or not _INT_MIN <= b < _INT_MAX):
            return None
        if (call in _HAS_BODY) != (len(frames) == 2):
            return None
        body = frames[1] if len(frames) == 2 else None
        if body is not None and len(body) > MAX_MESSAGE:
            return None
        return (call, a, b, body)
    if call in (Call.BYE, Call.CANCEL):
        return (call,) if len(hdr) == 2 and len(frames) == 1 else None
    if call == Call.HELLO:
        if len(hdr) != 6 or len(frames) != 1:
            return None
        _, _, cred, pid, label, priv = hdr
        if type(cred) is not bytes or not _is_int(pid) or pid <= 0:
            return None
        if label is not None and type(label) is not str:
            return None
        if priv is not None and type(priv) is not dict:
            return None
        return Hello(Call.HELLO, cred, pid, label, priv)
    return None


def encode_reply(status: int, source: int = 0, kind: int = Kind.REPLY,
                 aux: int = 0, send_status: int = 0) -> bytes:
    return _packb((PROTO, status, source, kind, aux, send_status))


def decode_reply(frame: bytes) -> tuple[int, int, int, int, int] | None:
    """(status, source, kind, aux, send_status): a plain tuple, as the IPC library's hot path."""
    if len(frame) > MAX_HEADER:
        return None
    hdr = unpack(frame)
    if type(hdr) is not list or len(hdr) != 6 or hdr[0] != PROTO:
        return None
    _, status, source, kind, aux, send_status = hdr
    if (type(status) is not int or type(source) is not int or type(kind) is not int
            or type(aux) is not int or type(send_status) is not int):
        return None
    return (status, source, kind, aux, send_status)


@dataclass
class Message:
    """A message as a process sees it: a type number and named fields.

    ``source`` and ``kind`` are stamped by the kernel on delivery and cannot be
    forged by the sender; ``aux`` carries a notification's timestamp (ms) or,
    from HARDWARE, the pending-IRQ bitmap.
    """

    type: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    source: int = 0
    kind: int = Kind.MESSAGE
    aux: int = 0
    send_status: int = 0  # REPLYRECV: the result of sending the reply

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def encode_body(mtype: int, fields: dict[str, Any] | None = None) -> bytes:
    return _packb((mtype, fields or {}))


def decode_body(frame: bytes, limit: int = MAX_MESSAGE) -> tuple[int, dict[str, Any]] | None:
    """A message body is [type:int, fields:map with str keys], at most ``limit`` bytes
    (a process's message; the kernel's answer to a kernel call may be MAX_KERNEL_ANSWER)."""
    if len(frame) > limit:
        return None
    body = unpack(frame)
    if type(body) is not list or len(body) != 2:
        return None
    mtype, fields = body
    if type(mtype) is not int or type(fields) is not dict:
        return None
    if not all(type(k) is str for k in fields):
        return None
    return mtype, fields
