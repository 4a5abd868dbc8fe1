"""A scriptable component for kernel tests, started through PRIVCTL like any service.

argv[1] picks the behaviour:
  idle        - enter RECEIVE and answer nothing (a peer that never takes messages)
  echo        - answer every request with its fields (and report notifications)
  sender EP   - SEND to EP once, then idle (blocks if EP does not receive)
  grant       - write b"secret" into memory and answer GRANT requests with a grant id
  copier      - on COPY requests, SAFECOPYFROM the named grant and answer with the bytes
  board       - a fake board at the HW slot: answers forwarded port I/O, raises IRQs on request
"""
from __future__ import annotations

import sys

from minikern import sef
from minikern.codec import Message
from minikern.const import ANY, CPF_READ, SYSTEM, Err, KCall, Kind, KMsg

REQ_GRANT, REQ_COPY, REQ_IRQ = 1, 2, 3


def main() -> None:
    ctx = sef.startup()
    conn = ctx.conn
    mode = sys.argv[1]
    if mode not in ("idle", "echo", "sender", "grant", "copier", "board"):
        raise ValueError(f"agent: unknown mode {mode!r}")  # a crash with a traceback, on purpose
    if mode == "sender":
        conn.send(int(sys.argv[2]), Message(7, {"hello": 1}))
    if mode in ("idle", "sender"):
        while True:
            sef.receive(ctx, src=SYSTEM)  # only the kernel (shutdown) can satisfy this
    if mode == "grant":
        assert ctx.memory is not None
        ctx.memory[100:106] = b"secret"
    m = sef.receive(ctx)
    while True:
        if m.kind == Kind.KERNEL and m.type == KMsg.HW_DEVIO:
            ops = m["ops"]
            result = {"values": [0x1234 + op[0] if op[2] is None else None for op in ops]}
            conn.kcall(KCall.HWREPLY, req=m["req"], status=0, result=result)
            m = sef.receive(ctx)
            continue
        if m.kind != Kind.MESSAGE:
            m = sef.receive(ctx)
            continue
        reply = Message(Err.OK, m.fields)
        if mode == "grant" and m.type == REQ_GRANT:
            f = conn.kcall(KCall.SETGRANT, grantee=m["grantee"], offset=100, length=6,
                           access=CPF_READ)
            reply = Message(Err.OK, f)
        elif mode == "copier" and m.type == REQ_COPY:
            status, _ = conn.kcall_status(KCall.SAFECOPYFROM, granter=m["granter"],
                                          grant=m["grant"], goffset=0, offset=0, length=6)
            assert ctx.memory is not None
            reply = Message(status, {"data": bytes(ctx.memory[0:6])})
        elif mode == "board" and m.type == REQ_IRQ:
            conn.kcall(KCall.HWIRQ, irq=m["irq"])
        m = conn.reply_recv(m.source, reply, ANY)


if __name__ == "__main__":
    main()
