"""A scriptable component for kernel tests, started through PRIVCTL like any service.

argv[1] picks the behaviour:
  idle        - enter RECEIVE and answer nothing (a peer that never takes messages)
  echo        - answer every request with its fields (and report notifications)
  sender EP   - SEND to EP once, then idle (blocks if EP does not receive)
  grant       - write b"secret" into memory and answer GRANT requests with a grant id
  copier      - on COPY requests, SAFECOPYFROM the named grant and answer with the bytes
  puppet      - do what each request says (REQ_KCALL, REQ_NOTIFY, REQ_POKE, REQ_PEEK) and
                answer with the result: a test drives a kernel-started process, which,
                unlike a test endpoint, has a memory segment to grant and copy into
  board [S]   - a fake board at the HW slot, on the bus only: answers port reads with
                0x1234 + port, and raises an IRQ line whenever the kernel enables it;
                it joins the bus S seconds after starting (default at once), and then
                reports its init done, as the real board does; "board exit" exits with
                status 1 before joining
"""
from __future__ import annotations

import sys
import threading
import time

import zmq

from minikern import ipc, sef
from minikern.proto import Message
from minikern.proto import bus as wire
from minikern.const import ANY, CPF_READ, SYSTEM, Err, KCall, Kind

REQ_GRANT, REQ_COPY = 1, 2
REQ_KCALL, REQ_NOTIFY, REQ_POKE, REQ_PEEK = 3, 4, 5, 6


def join_bus(how: str) -> zmq.Socket[bytes]:
    if how == "exit":
        sys.exit(1)
    time.sleep(float(how))  # a slow machine: nothing may use it before it is on the bus
    bus: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    bus.connect(ipc.boot_record["bus"])
    bus.send(wire.encode(wire.Hello(ipc.boot_record["bus_credential"])))
    if type(wire.decode_from_kernel(bus.recv())) is not wire.Welcome:  # as hw/board.py waits
        sys.exit(1)
    return bus


def fake_board(bus: zmq.Socket[bytes]) -> None:
    while True:
        msg = wire.decode_from_kernel(bus.recv())
        if type(msg) is wire.Io:
            values = [0x1234 + op[0] if op[2] is None else None for op in msg.ops]
            bus.send(wire.encode(wire.Done(msg.endpoint, 0, {"values": values})))
        elif type(msg) is wire.IrqCtl and msg.enable:
            bus.send(wire.encode(wire.Irq(msg.line)))


def puppet(ctx: sef.Context) -> None:
    """Serve the puppet's requests forever; each reply's type is the status of what was done."""
    conn, memory = ctx.conn, ctx.memory
    assert memory is not None
    m = sef.receive(ctx)
    while True:
        if m.kind != Kind.MESSAGE:
            m = sef.receive(ctx)
            continue
        if m.type == REQ_KCALL:
            status, fields = conn.kcall_status(KCall(m["call"]), **m["args"])
            reply = Message(status, fields)
        elif m.type == REQ_NOTIFY:
            reply = Message(conn.notify(m["dst"]))
        elif m.type == REQ_POKE:
            memory[m["offset"]:m["offset"] + len(m["data"])] = m["data"]
            reply = Message(Err.OK)
        elif m.type == REQ_PEEK:
            reply = Message(Err.OK, {"data": bytes(memory[m["offset"]:m["offset"] + m["length"]])})
        else:
            reply = Message(Err.EBADREQUEST)
        m = conn.reply_recv(m.source, reply, ANY)


def main() -> None:
    mode = sys.argv[1]
    bus: list[zmq.Socket[bytes]] = []

    def init(_: sef.Context) -> None:
        if mode == "board":  # on the bus before it reports init done, as the real board is
            bus.append(join_bus(sys.argv[2] if len(sys.argv) > 2 else "0"))

    ctx = sef.startup(init)
    conn = ctx.conn
    if mode == "puppet":
        return puppet(ctx)
    if mode not in ("idle", "echo", "sender", "grant", "copier", "board"):
        raise ValueError(f"agent: unknown mode {mode!r}")  # a crash with a traceback, on purpose
    if mode == "sender":
        conn.send(int(sys.argv[2]), Message(7, {"hello": 1}))
    if mode in ("idle", "sender"):
        while True:
            sef.receive(ctx, src=SYSTEM)  # only the kernel (shutdown) can satisfy this
    if mode == "board":  # the bus in a thread; SEF answers RS's pings and the shutdown
        threading.Thread(target=fake_board, args=(bus[0],), daemon=True).start()
        while True:
            sef.receive(ctx)
    if mode == "grant":
        assert ctx.memory is not None
        ctx.memory[100:106] = b"secret"
    m = sef.receive(ctx)
    while True:
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
        m = conn.reply_recv(m.source, reply, ANY)


if __name__ == "__main__":
    main()
