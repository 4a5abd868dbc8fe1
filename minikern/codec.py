"""The one module that builds and parses wire frames (docs/PROTOCOL.md).

Every frame is msgpack.  Decoders never raise on bad input: they return None
and the caller counts and drops the frame.  The kernel decodes only headers;
message bodies pass through it untouched, except kernel calls (to SYSTEM) and
kernel messages (from SYSTEM), which it encodes and decodes itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from minikern.const import PROTO, Call, Kind
from minikern.params import MAX_HEADER, MAX_MESSAGE

def _packb(obj: object) -> bytes:
    data: bytes = msgpack.packb(obj)
    return data


def unpack(frame: bytes) -> Any:
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception:  # msgpack raises many types on garbage; all mean "malformed"
        return None


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


def decode_request(frames: list[bytes]) -> tuple[Any, ...] | None:
    """Validate a request; return (call, args..., body) or None if malformed.

    For IPC traps the result is (call, a, b, body-or-None), all plain ints (b is
    0 for one-argument traps); for HELLO it is (HELLO, credential, pid, label, priv).
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
        return (Call.HELLO, cred, pid, label, priv)
    return None


def encode_reply(status: int, source: int = 0, kind: int = Kind.REPLY,
                 aux: int = 0, send_status: int = 0) -> bytes:
    return _packb((PROTO, status, source, kind, aux, send_status))


def decode_reply(frame: bytes) -> tuple[int, int, int, int, int] | None:
    hdr = unpack(frame)
    if type(hdr) is not list or len(hdr) != 6 or hdr[0] != PROTO:
        return None
    if not all(type(v) is int for v in hdr[1:]):
        return None
    return (hdr[1], hdr[2], hdr[3], hdr[4], hdr[5])


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


def decode_body(frame: bytes) -> tuple[int, dict[str, Any]] | None:
    """A message body is [type:int, fields:map with str keys]."""
    body = unpack(frame)
    if type(body) is not list or len(body) != 2:
        return None
    mtype, fields = body
    if type(mtype) is not int or type(fields) is not dict:
        return None
    if not all(type(k) is str for k in fields):
        return None
    return mtype, fields
