"""hello: a character driver that says hello and counts its opens (runs in its own process).

OPEN increments ``open_counter``; READ returns the greeting and the count.
Like MINIX's example driver it is the smallest complete driver: the SEF
skeleton, a request table, and state that must survive a restart.
"""
from __future__ import annotations

from minikern import sef
from minikern.codec import Message
from minikern.const import CharReq, Err

GREETING = "Hello, World!"


class Hello:
    def __init__(self) -> None:
        self.open_counter = 0

    def init(self, ctx: sef.Context) -> None:
        self.ctx = ctx

    def do_open(self, m: Message) -> Message:
        self.open_counter += 1
        return Message(Err.OK, {"open_counter": self.open_counter})

    def do_close(self, m: Message) -> Message:
        return Message(Err.OK)

    def do_read(self, m: Message) -> Message:
        return Message(Err.OK, {"data": GREETING, "open_counter": self.open_counter,
                                "incarnation": self.ctx.incarnation})


def main() -> None:
    drv = Hello()
    ctx = sef.startup(drv.init)
    sef.serve(ctx, {CharReq.OPEN: drv.do_open, CharReq.CLOSE: drv.do_close,
                    CharReq.READ: drv.do_read})
