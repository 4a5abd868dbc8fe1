"""The board's control socket: fault knobs and device statistics (docs/PROTOCOL.md, "Board control").

``run_dir/board.ctl`` is an AF_UNIX stream socket reached only by the
operator's shell and the test suite (0600 inside the 0700 run directory).
Frames are JSON objects, one per line, so ``socat - UNIX-CONNECT:board.ctl``
works by hand; every frame carries ``"proto": "MKCTL", "version": 1`` and a
``"verb"``::

    {"proto": "MKCTL", "version": 1, "verb": "stats"}
    {"proto": "MKCTL", "version": 1, "verb": "set", "knob": "ata.bad_sectors", "value": [5]}

The board answers each request, in order, with ``"verb": "ok"`` and the
result fields (``stats`` for stats; ``knob`` and ``value`` for set), or with
``"verb": "error"`` and ``"error"`` (a sentence, and ``knobs`` when the knob
is unknown).
"""
from __future__ import annotations

from typing import Any, NamedTuple

from minikern.proto import codec

MAX_LINE = 64 * 1024
CONTROL = codec.Protocol("MKCTL", 1, MAX_LINE)
_REPLY = codec.Protocol("MKCTL", 1, 16 << 20)  # statistics grow with the devices


# Every knob the board has (hw/board_ctl.py's KNOBS sets them), the value it takes and what
# it does: bin/hwctl knobs prints this, and a test holds the two lists equal.
KNOBS: dict[str, tuple[str, str]] = {
    "ata.bad_sectors": ("[LBA, ...]", "reads of these sectors fail with ERR/UNC (writes "
                                      "succeed: the drive remaps them); [] clears"),
    "nic.drop_rx": ("N or {\"count\": N, \"rate\": R}",
                    "the wire loses the next N received frames, then each with "
                    "probability R"),
    "nic.drop_tx": ("N or {\"count\": N, \"rate\": R}",
                    "the wire loses the next N sent frames (TOK still set), then each with "
                    "probability R"),
    "nic.link": ("true|false", "the cable: false drops every frame and shows the link down"),
    "lpt.paper_out": ("true|false", "the printer reports paper out (PE, BUSY) and prints "
                                    "nothing"),
    "lpt.offline": ("true|false", "the printer reports offline (SLCT = 0, BUSY) and prints "
                                  "nothing"),
    **{f"{dev}.irq_disabled": ("true|false", f"the {name} stops raising its interrupt line "
                               "(a driver's timeout paths)")
       for dev, name in (("pit", "timer (8254)"), ("uart", "serial port (16550)"),
                         ("lpt", "printer port"), ("ata", "disk (ATA)"),
                         ("nic", "network card (RTL8139)"))},
}


class Stats(NamedTuple):
    pass


class Set(NamedTuple):
    knob: str
    value: Any  # a JSON value; the knob's setter checks it


class Reply(NamedTuple):
    ok: bool
    fields: dict[str, Any]  # the result, or "error" (and "knobs") when refused


Request = Stats | Set


def encode_request(req: Request) -> bytes:
    if isinstance(req, Set):
        return codec.encode_json(CONTROL, "set", {"knob": req.knob, "value": req.value})
    return codec.encode_json(CONTROL, "stats", {})


def decode_request(line: bytes) -> Request | None:
    obj = codec.decode_json(CONTROL, line)
    if obj is None:
        return None
    if obj["verb"] == "stats" and set(obj) == {"proto", "version", "verb"}:
        return Stats()
    if (obj["verb"] == "set" and set(obj) == {"proto", "version", "verb", "knob", "value"}
            and type(obj["knob"]) is str):
        return Set(obj["knob"], obj["value"])
    codec.refused[CONTROL.name + ":malformed"] += 1
    return None


def encode_reply(reply: Reply) -> bytes:
    return codec.encode_json(CONTROL, "ok" if reply.ok else "error", reply.fields)


def decode_reply(line: bytes) -> Reply | None:
    obj = codec.decode_json(_REPLY, line)
    if obj is None or obj["verb"] not in ("ok", "error"):
        return None
    fields = {k: v for k, v in obj.items() if k not in ("proto", "version", "verb")}
    if obj["verb"] == "error" and type(fields.get("error")) is not str:
        return None
    return Reply(obj["verb"] == "ok", fields)
