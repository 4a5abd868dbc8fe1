"""The tty driver on the real character framework and the real UART model, without a system:
a channel that calls the model's registers directly, an interrupt line the rig serves, and a
context whose kernel answers OK and whose DS keeps entries in a dict.  Late answers (the
framework's ``reply``) are collected in ``answers``."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.char import Framework
from drivers.tty.tty import Tty
from hw.uart import Uart16550
from minikern.const import HARDWARE, CharReq, DsReq, Err, KCall, Kind
from minikern.proto import Message

CALLER = 100  # the endpoint the rig's requests come from
DS_MAX_VALUE = 4096  # services/ds/store.py's MAX_VALUE_SIZE


class Level:
    def __init__(self) -> None:
        self.high = False

    def set_level(self, level: bool) -> None:
        self.high = level


class Host:
    """The person's end of the line: what the system printed."""

    path = "rig"

    def __init__(self) -> None:
        self.screen = bytearray()

    def fileno(self) -> int:
        return -1

    def read(self, limit: int) -> bytes:
        return b""

    def write(self, data: bytes) -> int:
        self.screen += data
        return len(data)

    def close(self) -> None:
        pass


class ModelChannel:
    """minikern.devio.Channel's port calls, on the model."""

    def __init__(self, uart: Uart16550) -> None:
        self.uart = uart

    def inb(self, port: int) -> int:
        return self.uart.io_read(port, 1)

    def outb(self, port: int, value: int) -> None:
        self.uart.io_write(port, 1, value)

    def outs(self, port: int, size: int, data: bytes) -> None:
        for b in data:
            self.uart.io_write(port, size, b)

    def vec(self, ops: list[tuple[int, int, int | None]]) -> list[int | None]:
        out: list[int | None] = []
        for port, size, value in ops:
            if value is None:
                out.append(self.uart.io_read(port, size))
            else:
                self.uart.io_write(port, size, value)
                out.append(None)
        return out


class FakeConn:
    def __init__(self, store: dict[str, Any]) -> None:
        self.store = store

    def kcall(self, call: KCall, **args: Any) -> dict[str, Any]:
        return {}

    def sendrec(self, dst: int, m: Message) -> Message:  # DS: PUBLISH, RETRIEVE, DELETE
        key = m.get("key")
        if m.type == DsReq.PUBLISH:
            if len(m["value"]) > DS_MAX_VALUE:
                return Message(Err.E2BIG)
            self.store[key] = m["value"]
            return Message(Err.OK)
        if m.type == DsReq.DELETE:
            return Message(Err.OK if self.store.pop(key, None) is not None else Err.ESRCH)
        if key in self.store:
            return Message(Err.OK, {"value": self.store[key]})
        return Message(Err.ESRCH)


class FakeLoop:
    def __init__(self, answers: list[tuple[Message, Message]]) -> None:
        self.answers = answers
        self.later: list[Callable[[], None]] = []
        self.sent: list[tuple[int, Message]] = []

    def reply(self, request: Message, answer: Message) -> int:
        self.answers.append((request, answer))
        return Err.OK

    def asend(self, dst: int, m: Message, on_fail: object = None) -> int:
        self.sent.append((dst, m))
        return Err.OK

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self.later.append(fn)


class FakeCtx:
    def __init__(self, store: dict[str, Any], incarnation: int,
                 answers: list[tuple[Message, Message]]) -> None:
        self.conn = FakeConn(store)
        self.incarnation = incarnation
        self.label = "tty"
        self.loop = FakeLoop(answers)

    @property
    def restarted(self) -> bool:
        return self.incarnation > 0


class Rig:
    """One UART, and a tty driver instance on it (``restart`` replaces the instance)."""

    def __init__(self, open_console: bool = True) -> None:
        self.clock = 0.0
        self.irq = Level()
        self.host = Host()
        self.uart = Uart16550(self.irq, lambda: self.clock, self.host)
        self.store: dict[str, Any] = {}
        self.answers: list[tuple[Message, Message]] = []
        self.incarnation = 0
        self.start()
        if open_console:
            self.request(CharReq.OPEN, access=3)

    def start(self) -> None:
        model = ModelChannel(self.uart)
        self.tty = Tty(connect=lambda conn: model)  # type: ignore[arg-type,return-value]
        self.fw = Framework(self.tty)
        self.ctx = FakeCtx(self.store, self.incarnation, self.answers)
        self.fw.init(self.ctx)  # type: ignore[arg-type]
        self.run()

    def restart(self, reopen: bool = True) -> None:
        """The instance dies (its memory with it) and a new one starts on the same UART."""
        self.answers.clear()
        self.incarnation += 1
        self.start()
        if reopen:
            self.request(CharReq.OPEN, access=3)

    def run(self) -> None:
        """Run the loop's timers and serve the interrupt line until it stays low, letting
        character timeouts pass."""
        for _ in range(10_000):
            while self.ctx.loop.later:
                self.ctx.loop.later.pop(0)()
            if not self.irq.high:
                self.clock += 1.0  # past any character timeout
                self.uart.poll()
                if not self.irq.high:
                    return
            self.fw.on_notify(Message(0, source=HARDWARE, kind=Kind.NOTIFY,
                                      aux=1 << self.tty.irq))
        raise AssertionError("the interrupt line never went low")

    def type(self, text: bytes) -> None:
        self.uart.receive(text)
        self.run()

    def request(self, rtype: CharReq, source: int = CALLER, **fields: Any) -> Message | None:
        reply = self.fw.dispatch(Message(rtype, {"minor": 0, **fields}, source=source))
        self.run()
        return reply

    def answered(self) -> list[Message]:
        out = [rep for _, rep in self.answers]
        self.answers.clear()
        return out
