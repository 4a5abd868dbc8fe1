"""A recovery script's channel to RS: one text line per request, one per answer (docs/PROTOCOL.md
section 16, "A recovery script's channel").

RS hands each recovery script one end of a socketpair as its standard
input; RS's side is services/rs/scripts.py.  The lines are made for a shell
(``printf`` out, ``read`` back), so a script needs no interpreter::

    MKSC 1 restart hello                       the script asks (ACTION LABEL)
    MKSC 1 OK endpoint=163855 pid=17066 incarnation=3
    MKSC 1 EBUSY hello is running; use refresh

A request is ASCII, at most MAX_LINE bytes, the protocol and version, then
one of ACTIONS and a label.  An answer is the protocol and version, ``OK``
or the error's MINIX name, then the reply's fields as ``key=value`` words
(only numbers and words without blanks) and RS's reason, if any, last.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from minikern.const import err_name

PROTO = "MKSC"
VERSION = "1"
MAX_LINE = 256  # bytes of one request line, its newline excluded
ACTIONS = ("up", "down", "restart", "refresh")  # bin/service's, on a configured label
MAX_LABEL = 32  # as the kernel's label bound


class Request(NamedTuple):
    action: str
    label: str


class Bad(NamedTuple):
    """A line RS will not act on: ``why`` is answered (EINVAL); a ``fatal`` one (not text, too
    long) also ends the channel, since what follows it cannot be trusted to be a line."""

    why: str
    fatal: bool


def split_lines(pending: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines in ``pending`` and what is left of it."""
    *lines, rest = pending.split(b"\n")
    return lines, rest


def decode_request(line: bytes) -> Request | Bad:
    if len(line) > MAX_LINE:
        return Bad(f"a request line longer than {MAX_LINE} bytes", True)
    try:
        words = line.decode("ascii").split()
    except UnicodeDecodeError:
        return Bad("a request line that is not ASCII text", True)
    if words[:2] != [PROTO, VERSION]:
        return Bad(f"not {PROTO} {VERSION}", False)
    if len(words) != 4 or words[2] not in ACTIONS or not 0 < len(words[3]) <= MAX_LABEL:
        return Bad(f"expected {PROTO} {VERSION}, one of {', '.join(ACTIONS)}, and a label",
                   False)
    return Request(words[2], words[3])


def encode_request(action: str, label: str) -> bytes:
    return f"{PROTO} {VERSION} {action} {label}\n".encode("ascii")


def decode_answer(line: bytes) -> tuple[bool, str]:
    """RS's answer as a script reads it: whether it is OK, and the rest of the line (the
    status name first when it is not)."""
    words = line.decode("ascii", errors="replace").split()
    if words[:2] != [PROTO, VERSION] or len(words) < 3:
        return False, "RS answered outside the protocol"
    return words[2] == "OK", " ".join(words[2 + (words[2] == "OK"):])


def encode_answer(status: int, fields: dict[str, Any]) -> bytes:
    words = [PROTO, VERSION, err_name(status) if status else "OK"]
    words += [f"{k}={v}" for k, v in fields.items()
              if k != "error" and type(v) in (int, str) and str(v) and not any(
                  c.isspace() for c in str(v))]
    error = fields.get("error")
    if type(error) is str:
        words.append(" ".join(error.split()))
    return (" ".join(words) + "\n").encode("ascii", errors="replace")
