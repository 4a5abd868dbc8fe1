"""A driver whose answers a test scripts, and RS's successor wait played on it: what the
recovery tests of minikern/bdev.py and userland/terminal.py share (no kernel, no processes).

Only the kernel says that a driver died (it fails the SENDREC with EDEADSRCDST); a driver
that *answers* EDEADSRCDST is alive, and its successor never comes."""
from __future__ import annotations

from typing import Any

import pytest

from minikern import successor
from minikern.const import Err
from minikern.ipc import IpcError
from minikern.proto import Message

OLD, NEW = 40, 72  # the driver's endpoint, and its successor's once it is restarted


class ScriptedDriver:
    """The client's connection: OPEN (``open_type``) is always OK; every other request is
    answered by the next step of ``script`` (an IpcError in it is the kernel failing the
    SENDREC).  ``live`` is the endpoint DS names as up."""

    def __init__(self, script: list[Message | IpcError], open_type: int) -> None:
        self.script, self.open_type = script, open_type
        self.sent: list[tuple[int, int]] = []  # (destination, request type)
        self.live = OLD

    def sendrec(self, dst: int, m: Message) -> Message:
        self.sent.append((dst, m.type))
        if m.type == self.open_type:
            return Message(Err.OK)
        step = self.script.pop(0)
        if isinstance(step, IpcError):
            raise step
        return step

    def sent_to(self, req: int) -> list[int]:
        """The destinations of every ``req`` sent, in order."""
        return [dst for dst, t in self.sent if t == req]


def successor_waits(monkeypatch: pytest.MonkeyPatch, error: type[IpcError]) -> list[int | None]:
    """Every wait for the driver's successor (its ``dead`` argument).  A wait for a successor
    of the live endpoint ends as the real one does after its recovery wait: ``error`` EIO."""
    seen: list[int | None] = []

    def wait_up(conn: ScriptedDriver, label: str, key: str, dead: int | None,
                *args: Any, **kwargs: Any) -> int:
        seen.append(dead)
        if dead is not None and dead == conn.live:
            raise error(Err.EIO, f"{label} not back within 30 s")
        return conn.live
    monkeypatch.setattr(successor, "wait_up", wait_up)
    return seen
