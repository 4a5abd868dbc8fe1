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

import msgpack
import zmq

from minikern import codec
from minikern.const import HARDWARE, HW, SYSTEM, Err, Kind
from minikern.kernel import ipc
from minikern.kernel.proc import Wait

if TYPE_CHECKING:
    from minikern.kernel.main import Kernel


class Bus:
    def __init__(self, k: Kernel, ctx: zmq.Context[Any], address: str) -> None:
        self.k, self.address = k, address
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
        self.sock.bind(address)
        self.ident: bytes | None = None
        self.credential: bytes | None = None
        self.ticks = 0  # IRQ 0 from the 8254: the machine's clock

    def expect_board(self) -> bytes:
        self.credential, self.ident = secrets.token_bytes(32), None
        return self.credential

    def send(self, *msg: Any) -> bool:
        if self.ident is None:
            return False
        try:
            self.sock.send_multipart([self.ident, msgpack.packb(msg)], zmq.NOBLOCK)
        except zmq.ZMQError:
            self.k.count("bus_send_failed")
            return False
        return True

    def handle(self, frames: list[bytes]) -> None:
        msg = codec.unpack(frames[1]) if len(frames) == 2 else None
        if type(msg) is not list or not msg or type(msg[0]) is not str:
            return self.k.count("bus_malformed")
        if (msg[0] == "hello" and len(msg) == 2 and type(msg[1]) is bytes and self.credential
                and secrets.compare_digest(msg[1], self.credential)):
            self.ident, self.credential = frames[0], None
            return self.k.log("board attached to the bus")
        if frames[0] != self.ident:
            return self.k.count("bus_unadmitted")
        if msg[0] == "irq" and len(msg) == 2 and type(msg[1]) is int and 0 <= msg[1] < 16:
            return self.interrupt(msg[1])
        if (msg[0] == "io" and len(msg) == 4 and type(msg[1]) is int
                and type(msg[2]) is int and type(msg[3]) is dict):
            return self.complete(msg[1], msg[2], msg[3])
        self.k.count("bus_malformed")

    def interrupt(self, irq: int) -> None:
        if irq == 0:
            self.ticks += 1
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
