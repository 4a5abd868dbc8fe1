"""The console as a program of the system uses it (runs in the program's process, e.g. the shell):
the tty driver's minor 0, through the character driver protocol, kept open across the driver's
restarts.

    term = Terminal(ctx)                 # the tty driver found through DS's label entry "tty"
    term.open()
    term.write(b"login: ")
    line = term.read()                   # waits (in the kernel) until a line is typed
    term.set_termios(icanon=False)       # TCSETS: raw mode

Every call is one SENDREC to the driver.  ``read`` raises ``Interrupted``
when the person typed the interrupt character (the driver answers EINTR).

Recovery, like minikern/bdev.py's: a call that fails because the driver died
(the kernel fails the SENDREC with EDEADSRCDST; the driver's own *answer*
EDEADSRCDST is a refusal: a kernel call of its that failed, from a driver
alive, whose successor would never come) or because a restarted driver never
saw us open the device (ERESTART) waits until RS says the driver is ``up`` again at a new endpoint
(DS: ``rs.tty`` and the label entry ``tty``), opens the device again and
sends the call again.  A read waiting when the driver died is sent again and
gets what was typed meanwhile (the driver's rule: README, "the console").  A
write cut by the kill is sent again whole, so part of that output may show
twice on the screen; typed input never does.  While it waits the process
receives (a notification from DS ends the wait early); anything else that
arrives is dropped, for a terminal program serves nobody.  A driver that RS
gave up on (``failed``), or not back within TTY_RECOVERY_WAIT, gives EIO.
"""
from __future__ import annotations

from typing import Any

import zmq

from minikern import ds, params, sef, successor
from minikern.const import CDEV_MAX_IO, DS, CharReq, DsFlag, Err, Kind, err_name
from minikern.ipc import IpcError, KernelGone
from minikern.proto import Message

TTY_LABEL = "tty"
CONSOLE = 0


class TerminalError(IpcError):
    """The tty refused a call (``code``: its Err)."""


class Interrupted(TerminalError):
    """The person typed the interrupt character (^C) at a read."""

    def __init__(self) -> None:
        super().__init__(Err.EINTR, "interrupted")


class Terminal:
    def __init__(self, ctx: sef.Context, label: str = TTY_LABEL, minor: int = CONSOLE) -> None:
        self.ctx, self.label, self.minor = ctx, label, minor
        self.state_key = f"rs.{label}"  # RS's word on the driver: up, restarting, failed
        self.driver: int | None = None
        self.opened = False
        self.restarts_seen = 0  # new driver endpoints taken over

    # -- the interface -------------------------------------------------------------------

    def open(self) -> None:
        try:
            ds.subscribe(self.ctx.conn, self.state_key.replace(".", r"\."), DsFlag.OVERWRITE)
        except KernelGone:
            raise
        except IpcError:
            pass  # no DS: the wait below still looks every TTY_RECOVERY_CHECK
        self.call(Message(CharReq.OPEN, {"minor": self.minor, "access": 3}))
        self.opened = True

    def read(self, count: int = CDEV_MAX_IO) -> bytes:
        """A line (canonical mode) or what raw mode's vmin asks for; b"" is end of file."""
        r = self.call(Message(CharReq.READ, {"minor": self.minor, "count": count}))
        data = r.get("data")
        if not isinstance(data, bytes) or len(data) > count:
            raise TerminalError(Err.EIO, f"{self.label}: a read answered with bad data")
        return data

    def write(self, data: bytes) -> None:
        for at in range(0, len(data), CDEV_MAX_IO):
            self.call(Message(CharReq.WRITE, {"minor": self.minor,
                                              "data": data[at:at + CDEV_MAX_IO]}))

    def termios(self) -> dict[str, Any]:
        r = self.call(Message(CharReq.IOCTL, {"minor": self.minor, "request": "TCGETS"}))
        termios = r.get("termios")
        return termios if isinstance(termios, dict) else {}

    def set_termios(self, **changes: Any) -> dict[str, Any]:
        r = self.call(Message(CharReq.IOCTL, {"minor": self.minor, "request": "TCSETS",
                                              "arg": changes}))
        termios = r.get("termios")
        return termios if isinstance(termios, dict) else {}

    # -- calls, carried across restarts --------------------------------------------------

    def call(self, m: Message) -> Message:
        while True:
            if self.driver is None:
                self.find_driver(dead=None)
            driver = self.driver or 0
            r, died = successor.sendrec(self.ctx.conn, driver, m)
            status = r.type
            if status == Err.OK:
                return r
            if status == Err.EINTR and m.type == CharReq.READ:
                raise Interrupted()
            if not (died or status == Err.ERESTART):
                why = r.get("error")
                raise TerminalError(status, f"{self.label}: {why or err_name(status)}")
            self.find_driver(dead=driver if died else None)
            if m.type != CharReq.OPEN and self.opened:
                self.call(Message(CharReq.OPEN, {"minor": self.minor, "access": 3}))

    def find_driver(self, dead: int | None) -> None:
        """Block until RS says the driver is up at an endpoint other than ``dead``."""
        endpoint = successor.wait_up(self.ctx.conn, self.label, self.state_key, dead,
                                     params.TTY_RECOVERY_WAIT, params.TTY_RECOVERY_CHECK,
                                     self.pause, TerminalError)
        if self.driver is not None and endpoint != self.driver:
            self.restarts_seen += 1
        self.driver = endpoint

    def pause(self, seconds: float) -> None:
        """Receive for up to ``seconds``; DS's notification ends the wait early."""
        conn = self.ctx.conn
        conn.start_receive()
        if not conn.sock.poll(max(0, int(seconds * 1000)), zmq.POLLIN):
            conn.cancel()
        m = conn.finish()
        if (m is not None and not sef.filtered(self.ctx, m) and m.kind == Kind.NOTIFY
                and m.source == DS):
            while ds.check(conn) is not None:
                pass
