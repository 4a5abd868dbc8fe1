"""The bus: the kernel's link to the board process (the emulated machine).

Hardware does not trap.  The board is started by the kernel like any boot
process (slot HW, label hw), but it answers port I/O and raises interrupts
asynchronously, as a machine does, over a second socket that only it may
join: the kernel checks the one-time bus credential it handed the board at
start-up.  The kernel checks every port access against the driver's
capabilities before it is put on the bus; the board checks nothing it was
not told (docs/PROTOCOL.md, "The bus").
"""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import zmq

from minikern.proto import bus as wire, codec
from minikern import params
from minikern.const import HARDWARE, HW, SYSTEM, Err, Kind, Wait
from minikern.kernel import ipc

if TYPE_CHECKING:
    from minikern.kernel.main import Kernel

MAX_HELLO = 128  # bytes: the largest frame read from a peer before it is known as the board


class Bus:
    def __init__(self, k: Kernel, ctx: zmq.Context[Any], address: str) -> None:
        self.k, self.address = k, address
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
        self.bounded = k.admission.guard(self.sock, "bus", params.MAX_BUS_CONNECTIONS, lambda: {
            p.pid for p in (k.table.lookup(HW),) if p is not None})  # the board's process
        self.sock.bind(address)
        self.ident: bytes | None = None
        self.credential: bytes | None = None

    def expect_board(self) -> bytes:
        self.credential, self.ident = secrets.token_bytes(32), None
        return self.credential

    def send(self, msg: wire.FromKernel) -> bool:
        if self.ident is None:
            return False
        try:
            self.sock.send_multipart([self.ident, wire.encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError:
            self.k.count("bus_send_failed")
            return False
        return True

    def is_board(self, ident: bytes) -> bool:
        return self.ident is not None and ident == self.ident

    def handle(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            return self.k.count("bus_malformed")
        if frames[0] != self.ident and (self.credential is None or len(frames[1]) > MAX_HELLO):
            return self.k.count("bus_unadmitted")  # unread: only the board's frames are decoded
        msg = wire.decode_from_board(frames[1])
        if msg is None:
            return self.k.count("bus_malformed")
        if type(msg) is wire.Hello:
            if self.credential and secrets.compare_digest(msg.credential, self.credential):
                self.ident, self.credential = frames[0], None
                self.send(wire.Welcome())  # its first frame: the board reports its init done after
                return self.k.log("board attached to the bus")
            return self.k.count("bus_unadmitted")
        if frames[0] != self.ident:
            return self.k.count("bus_unadmitted")
        if type(msg) is wire.Irq:
            return self.interrupt(msg.line)
        if type(msg) is wire.Done:
            return self.complete(msg.endpoint, msg.status, msg.result)

    def interrupt(self, irq: int) -> None:
        for e in self.k.irq_holders.get(irq, ()):
            holder = self.k.table.lookup(e)
            if holder is not None:
                ipc.notify(self.k, HARDWARE, holder, 1 << irq)

    def complete(self, endpoint: int, status: int, result: dict[str, Any]) -> None:
        """The board's answer to a forwarded port access: unblock the driver."""
        req, board = self.k.table.lookup(endpoint), self.k.table.lookup(HW)
        if req is None or board is None or req.wait is not Wait.KCALL or req.peer != board.endpoint:
            return self.k.count("bus_stale_reply")
        req.wait, req.peer = Wait.READY, 0
        self.k.answer(req, Err.OK, SYSTEM, Kind.KERNEL, 0, codec.encode_body(status, result))

    def board_died(self) -> None:
        self.ident = self.credential = None
