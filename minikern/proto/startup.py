"""The startup record: what the kernel tells a template process it is to become.

Sent once, by the kernel (minikern.kernel.spawn) to a template
(minikern.template) over their private socketpair, with the fd of the
process's memory segment as SCM_RIGHTS.  Frame: ``["MKSTART", 1, 1,
record]``.  The template has no one to report to: if the record does not
decode it exits, and the kernel sees a process die before its HELLO.
"""
from __future__ import annotations

from typing import Any, NotRequired, TypedDict, cast

from minikern.const import NR_SCHED_QUEUES
from minikern.proto import codec

STARTUP = codec.Protocol("MKSTART", 1, 4096)
RECORD = 1  # the channel's one verb

_FIELDS: dict[str, type] = {
    "module": str, "label": str, "endpoint": int, "credential": bytes, "address": str,
    "run_dir": str, "incarnation": int, "memory_size": int,
}


class StartupRecord(TypedDict):
    """A dict on purpose: it becomes ``minikern.ipc.boot_record``, which every library reads."""

    module: str
    args: list[str]
    label: str
    endpoint: int
    credential: bytes
    address: str
    run_dir: str
    incarnation: int
    memory_size: int
    bus: NotRequired[str]  # the board alone: the bus's address and its one-time credential
    bus_credential: NotRequired[bytes]
    priority: NotRequired[int]  # the scheduling queue (minikern/sched.py), set while still root
    domain: NotRequired[list[int]]  # booted as root: uid, gid, extra groups to run as (minikern.domain)


def encode(record: StartupRecord) -> bytes:
    return codec.encode_frame(STARTUP, RECORD, dict(record))


def _ids(ids: object) -> bool:
    """uid, gid and extra groups: two to eight ids, none of them root's (0)."""
    return (type(ids) is list and 2 <= len(ids) <= 8
            and all(type(i) is int and 0 < i < 1 << 31 for i in ids))


def decode(frame: bytes) -> StartupRecord | None:
    msg = codec.decode_frame(STARTUP, frame)
    if msg is None:
        return None
    rec: Any = msg[1] if len(msg) == 2 and msg[0] == RECORD else None
    if (type(rec) is not dict or not all(type(rec.get(k)) is t for k, t in _FIELDS.items())
            or type(rec.get("args")) is not list or not all(type(a) is str for a in rec["args"])
            or set(rec) - set(StartupRecord.__annotations__)
            or ("bus" in rec) != ("bus_credential" in rec)
            or "bus" in rec and (type(rec["bus"]) is not str
                                 or type(rec["bus_credential"]) is not bytes)
            or "domain" in rec and not _ids(rec["domain"])
            or "priority" in rec and (type(rec["priority"]) is not int
                                      or not 0 <= rec["priority"] < NR_SCHED_QUEUES)):
        codec.refused[STARTUP.name + ":malformed"] += 1
        return None
    return cast(StartupRecord, rec)
