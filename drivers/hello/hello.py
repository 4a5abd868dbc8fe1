"""hello: a character driver that says hello and counts its opens (runs in its own process).

OPEN increments ``open_counter``; READ returns the greeting and the count.
Like MINIX's example driver it is the smallest complete driver: the SEF
skeleton, a request table, and state that must survive a restart.  The
counter is backed up in DS as a private u32 on every OPEN and read back
when the driver is restarted; after init the driver announces itself as
``drv.chr.<label>`` = "up".  Without a DS (a system booted without one)
the driver runs on, with nothing backed up.
"""
from __future__ import annotations

from minikern import ds, sef
from minikern.proto import Message
from minikern.const import CharReq, DsFlag, Err
from minikern.ipc import IpcError

GREETING = "Hello, World!"
COUNTER_KEY = "hello.open_counter"


class Hello:
    def __init__(self) -> None:
        self.open_counter = 0

    def init(self, ctx: sef.Context) -> None:
        self.ctx = ctx
        if ctx.restarted:
            try:
                self.open_counter = int(ds.retrieve(ctx.conn, COUNTER_KEY, vtype="u32"))
            except IpcError:
                pass  # nothing was backed up: count from zero
        self._publish(f"drv.chr.{ctx.label}", "up", DsFlag.OVERWRITE)

    def _publish(self, key: str, value: int | str, flags: DsFlag) -> None:
        try:
            ds.publish(self.ctx.conn, key, value, flags)
        except IpcError:
            pass  # no DS: keep serving; the state is only lost if we crash

    def do_open(self, m: Message) -> Message:
        self.open_counter += 1
        self._publish(COUNTER_KEY, self.open_counter, DsFlag.PRIVATE | DsFlag.OVERWRITE)
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
