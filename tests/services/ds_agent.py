"""A DS client for tests, started through PRIVCTL: it forwards requests to DS as itself.

A FORWARD {req, fields} request becomes one SENDREC to DS with this
component's own endpoint and label, and DS's reply comes back unchanged.
Started at the RS slot it lets a test speak as RS.
"""
from __future__ import annotations

from minikern import sef
from minikern.proto import Message
from minikern.const import DS, Err

FORWARD = 1


def do_forward(ctx: sef.Context, m: Message) -> Message:
    req, fields = m.get("req"), m.get("fields", {})
    if type(req) is not int or type(fields) is not dict:
        return Message(Err.EINVAL)
    r = ctx.conn.sendrec(DS, Message(req, fields))
    return Message(r.type, r.fields)


def main() -> None:
    ctx = sef.startup()
    sef.serve(ctx, {FORWARD: lambda m: do_forward(ctx, m)})
