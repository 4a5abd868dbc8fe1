"""hello: a character driver that says hello and counts its opens (runs in its own process).

OPEN increments ``open_counter``; READ returns the greeting and the count.
Like MINIX's example driver it is the smallest complete driver: callbacks
on the character driver framework (drivers/char), and state that must
survive a restart.  The counter is backed up in DS as a private u32 on
every OPEN and read back when the driver is restarted (the framework
announces ``drv.chr.<label>`` = "up" after init).  Without a DS (a system
booted without one) the driver runs on, with nothing backed up.  READ needs
no OPEN first (``needs_open = False``): the greeting is the same for anyone,
and a reader need not reopen after a restart.
"""
from __future__ import annotations

from drivers.char import CharDriver, Framework, Request, run
from minikern import ds
from minikern.const import DsFlag, Err
from minikern.ipc import IpcError
from minikern.proto import Message

GREETING = "Hello, World!"
COUNTER_KEY = "hello.open_counter"


class Hello(CharDriver):
    needs_open = False

    def __init__(self) -> None:
        self.open_counter = 0

    def init(self, fw: Framework) -> None:
        self.ctx = fw.ctx
        if self.ctx.restarted:
            try:
                self.open_counter = int(ds.retrieve(self.ctx.conn, COUNTER_KEY, vtype="u32"))
            except IpcError:
                pass  # nothing was backed up: count from zero

    def open(self, req: Request, access: int) -> Message:
        self.open_counter += 1
        try:
            ds.publish(self.ctx.conn, COUNTER_KEY, self.open_counter,
                       DsFlag.PRIVATE | DsFlag.OVERWRITE)
        except IpcError:
            pass  # no DS: keep serving; the count is only lost if we crash
        return Message(Err.OK, {"open_counter": self.open_counter})

    def read(self, req: Request) -> Message:
        return Message(Err.OK, {"data": GREETING, "open_counter": self.open_counter,
                                "incarnation": self.ctx.incarnation})


def main() -> None:
    run(Hello())
