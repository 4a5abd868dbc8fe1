"""userland/terminal.py against a scripted tty (no kernel, no processes): as minikern/bdev.py,
only the kernel says that the driver died (it fails the SENDREC with EDEADSRCDST): then the
terminal waits for the successor, reopens and resends.  A tty that *answers* EDEADSRCDST is
alive (a kernel call of its own failed, the code passed on): waiting for its successor would
hold the program TTY_RECOVERY_WAIT for nothing.  ERESTART is an answer that does mean a
restart (the new driver never saw us open the device)."""
from __future__ import annotations

from typing import cast

import pytest

from minikern import sef
from minikern.const import CharReq, Err
from minikern.ipc import IpcError
from minikern.proto import Message
from tests.lib.scripted_driver import NEW, OLD, ScriptedDriver, successor_waits
from userland import terminal

pytestmark = pytest.mark.timeout(30)


class ScriptedTty(ScriptedDriver):
    def __init__(self, script: list[Message | IpcError]) -> None:
        super().__init__(script, CharReq.OPEN)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    return successor_waits(monkeypatch, terminal.TerminalError)


def opened(tty: ScriptedTty) -> terminal.Terminal:
    term = terminal.Terminal(cast(sef.Context, type("Ctx", (), {"conn": tty})))
    term.call(Message(CharReq.OPEN, {"minor": 0, "access": 3}))
    term.opened = True
    return term


def writes(tty: ScriptedTty) -> list[int]:
    return tty.sent_to(CharReq.WRITE)


def test_a_ttys_answer_edeadsrcdst_is_a_refusal(waits: list[int | None]) -> None:
    tty = ScriptedTty([Message(Err.EDEADSRCDST, {"error": "kernel call failed: EDEADSRCDST"})])
    term = opened(tty)
    with pytest.raises(terminal.TerminalError) as refused:
        term.write(b"login: ")
    assert refused.value.code == Err.EDEADSRCDST
    assert OLD not in waits and writes(tty) == [OLD] and term.restarts_seen == 0


def test_the_kernels_edeadsrcdst_waits_for_the_successor_and_resends(
        waits: list[int | None]) -> None:
    tty = ScriptedTty([IpcError(Err.EDEADSRCDST, "sendrec"), Message(Err.OK)])
    term = opened(tty)
    tty.live = NEW
    term.write(b"login: ")
    assert OLD in waits and writes(tty) == [OLD, NEW]
    assert (NEW, CharReq.OPEN) in tty.sent and term.restarts_seen == 1


def test_an_answer_erestart_reopens_and_resends(waits: list[int | None]) -> None:
    tty = ScriptedTty([Message(Err.ERESTART), Message(Err.OK)])
    term = opened(tty)
    term.write(b"login: ")
    assert writes(tty) == [OLD, OLD]
    assert [t for _, t in tty.sent].count(CharReq.OPEN) == 2
