"""A component for RS tests, started by RS like any service: it forwards requests for the test.

FORWARD {dst, type, fields}: SENDREC ``type`` with ``fields`` to ``dst`` and answer with
{type, fields} of the reply.  This is how a test makes a *component* (not an
operator tool) talk to RS or to another component.
"""
from __future__ import annotations

from typing import Any

from minikern import sef
from minikern.proto import Message
from minikern.const import Err
from minikern.ipc import IpcError

FORWARD = 1


def do_forward(ctx: sef.Context, m: Message) -> Message:
    fields: Any = m.get("fields", {})
    try:
        r = ctx.conn.sendrec(int(m.get("dst", -1)), Message(int(m.get("type", 0)), fields))
    except IpcError as e:
        return Message(e.code, {})
    return Message(Err.OK, {"type": r.type, "fields": r.fields})


def main() -> None:
    ctx = sef.startup()
    sef.serve(ctx, {FORWARD: lambda m: do_forward(ctx, m)})
