"""The tty driver's logic on the real UART model, without a system: a channel that calls the
model's registers directly, an interrupt line the rig polls, and a context whose kernel and DS
answer OK (the backup is kept in a dict).  Deferred answers are collected in ``answers``."""
from __future__ import annotations

import itertools
from typing import Any

from drivers.tty.tty import Tty
from hw.uart import Uart16550
from minikern.const import Err, KCall
from minikern.proto import Message


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

    def sendrec(self, dst: int, m: Message) -> Message:  # DS: PUBLISH and RETRIEVE
        key = m.get("key")
        if "value" in m.fields:
            self.store[key] = m["value"]
            return Message(Err.OK)
        if key in self.store:
            return Message(Err.OK, {"value": self.store[key]})
        return Message(Err.ESRCH)


class FakeCtx:
    def __init__(self, store: dict[str, Any], incarnation: int) -> None:
        self.conn = FakeConn(store)
        self.incarnation = incarnation
        self.label = "tty"

    @property
    def restarted(self) -> bool:
        return self.incarnation > 0


class Rig:
    """One UART, and a tty driver instance on it (``restart`` replaces the instance)."""

    def __init__(self) -> None:
        self.clock = 0.0
        self.irq = Level()
        self.host = Host()
        self.uart = Uart16550(self.irq, lambda: self.clock, self.host)
        self.store: dict[str, Any] = {}
        self.answers: list[tuple[Message, Message]] = []
        self.sources = itertools.count(100)
        self.incarnation = 0
        self.tty = Tty()
        self.start()

    def start(self) -> None:
        self.tty = tty = Tty()
        tty.answer = lambda req, rep: self.answers.append((req, rep))  # type: ignore[method-assign]
        ctx = FakeCtx(self.store, self.incarnation)
        tty.ctx = ctx  # type: ignore[assignment]
        import drivers.tty.tty as module
        real = module.open_channel
        module.open_channel = lambda conn: ModelChannel(self.uart)  # type: ignore[assignment]
        try:
            tty.init(ctx)  # type: ignore[arg-type]
        finally:
            module.open_channel = real
        self.run()

    def restart(self) -> None:
        """The instance dies (its memory with it) and a new one starts on the same UART."""
        self.answers.clear()
        self.incarnation += 1
        self.start()

    def run(self) -> None:
        """Serve the interrupt line until it stays low, letting character timeouts pass."""
        for _ in range(10_000):
            if not self.irq.high:
                self.clock += 1.0  # past any character timeout
                self.uart.poll()
                if not self.irq.high:
                    return
            self.tty.on_interrupt()
        raise AssertionError("the interrupt line never went low")

    def type(self, text: bytes) -> None:
        self.uart.receive(text)
        self.run()

    def request(self, handler: str, **fields: Any) -> Message | None:
        m = Message(0, {"minor": 0, **fields}, source=next(self.sources))
        reply = getattr(self.tty, handler)(m)
        self.run()
        return reply  # type: ignore[no-any-return]

    def answered(self) -> list[Message]:
        out = [rep for _, rep in self.answers]
        self.answers.clear()
        return out
