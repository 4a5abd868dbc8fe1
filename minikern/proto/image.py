"""The boot image: the processes the kernel starts at boot, in order (``run_dir/boot.image``).

Written by bin/boot (minikern.boot) from system.conf's ``boot`` line and read
once by the kernel before it listens.  Frame: ``["MKIMAGE", 1, 1,
[entry, ...]]``.  The kernel refuses to boot from an image that does not
decode (it says so on the console and exits): nothing else would make sense
of a half-read machine.  Each entry's ``priv`` is checked again by the
kernel (``Privileges.from_wire``, minikern.proto.priv), as from any other source.
"""
from __future__ import annotations

from typing import Any, TypedDict, cast

from minikern.proto import codec

IMAGE = codec.Protocol("MKIMAGE", 1, 1 << 20)
ENTRIES = 1  # the channel's one verb
MAX_ENTRIES = 64


class BootEntry(TypedDict):
    label: str
    module: str
    args: list[str]
    priv: dict[str, Any]
    slot: int | None      # a fixed slot (the board's HW, RS's, ...) or None for any
    manager: int | None   # the endpoint told of this process's death (RS), or None
    uid: int | None       # booted as root: system.conf's uid key, or None (one is allocated)
    priority: int         # the scheduling queue (minikern/sched.py)


def encode(entries: list[BootEntry]) -> bytes:
    return codec.encode_frame(IMAGE, ENTRIES, [dict(e) for e in entries])


def _valid(e: object) -> bool:
    return (type(e) is dict and set(e) == set(BootEntry.__annotations__)
            and type(e["label"]) is str and type(e["module"]) is str
            and type(e["args"]) is list and all(type(a) is str for a in e["args"])
            and type(e["priv"]) is dict
            and (e["slot"] is None or type(e["slot"]) is int)
            and (e["manager"] is None or type(e["manager"]) is int)
            and (e["uid"] is None or type(e["uid"]) is int)
            and type(e["priority"]) is int)


def decode(frame: bytes) -> list[BootEntry] | None:
    msg = codec.decode_frame(IMAGE, frame)
    if msg is None:
        return None
    entries: Any = msg[1] if len(msg) == 2 and msg[0] == ENTRIES else None
    if type(entries) is not list or len(entries) > MAX_ENTRIES or not all(map(_valid, entries)):
        codec.refused[IMAGE.name + ":malformed"] += 1
        return None
    return cast(list[BootEntry], entries)
