"""minikern/bdev.py against a scripted driver (no kernel, no processes): which failures make
the client wait for a new driver (docs/PROTOCOL.md section 19, "Recovery").

Only the kernel says that a driver died: it fails the SENDREC with EDEADSRCDST, and the
client waits for a successor, reopens and resends.  A driver that *answers* EDEADSRCDST
is alive (one of its own kernel calls failed and it passed the code on, as the block
framework does for any failed kernel call): its successor never comes, so waiting for it
stalls the file server for BDEV_RECOVERY_WAIT and then fails with EIO anyway.  That answer
is a refusal like any other.  ERESTART is a driver's answer and does mean a restart.
"""
from __future__ import annotations

from typing import Any, cast

import pytest

from minikern import bdev, sef
from minikern.const import BDEV_MAX_IO, BdevReq, Err, KCall
from minikern.ipc import IpcError
from minikern.proto import Message
from tests.lib.scripted_driver import NEW, OLD, ScriptedDriver, successor_waits

pytestmark = pytest.mark.timeout(30)


class ScriptedKernel(ScriptedDriver):
    """The block client's connection: a scripted driver, and the kernel's grant calls."""

    def __init__(self, script: list[Message | IpcError]) -> None:
        super().__init__(script, BdevReq.OPEN)

    def kcall(self, call: KCall, **args: Any) -> dict[str, Any]:
        assert call == KCall.SETGRANT
        return {"grant": 1}

    def kcall_status(self, call: KCall, **args: Any) -> tuple[int, dict[str, Any]]:
        return Err.OK, {}


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    return successor_waits(monkeypatch, IpcError)


def device(kernel: ScriptedKernel, monkeypatch: pytest.MonkeyPatch) -> bdev.BlockDevice:
    ctx = cast(sef.Context, type("Ctx", (), {"conn": kernel, "memory": bytearray(BDEV_MAX_IO),
                                             "shutting_down": False}))
    dev = bdev.BlockDevice(ctx, "memory", 0, subscribe=False)
    monkeypatch.setattr(dev, "pause", lambda seconds: None)  # no RS heartbeat to answer here
    dev.open()
    return dev


def transfers(kernel: ScriptedKernel) -> list[int]:
    return kernel.sent_to(BdevReq.WRITE)


def test_a_drivers_answer_edeadsrcdst_is_a_refusal_not_its_death(
        monkeypatch: pytest.MonkeyPatch, waits: list[int | None]) -> None:
    kernel = ScriptedKernel([Message(Err.EDEADSRCDST,
                                     {"error": "kernel call failed sendrec: EDEADSRCDST"})])
    dev = device(kernel, monkeypatch)
    with pytest.raises(IpcError) as refused:
        dev.write(0, bytes(1024))
    assert refused.value.code == Err.EDEADSRCDST  # the driver's refusal, passed on as is
    assert OLD not in waits  # nobody waited for a successor of a driver that is alive
    assert transfers(kernel) == [OLD]  # one WRITE, answered once
    assert dev.driver == OLD and dev.driver_restarts_seen == 0


def test_the_kernels_edeadsrcdst_waits_for_the_successor_and_resends(
        monkeypatch: pytest.MonkeyPatch, waits: list[int | None]) -> None:
    kernel = ScriptedKernel([IpcError(Err.EDEADSRCDST, "sendrec"),
                             Message(Err.OK, {"count": 1024})])
    dev = device(kernel, monkeypatch)
    kernel.live = NEW  # RS restarted it: DS names the successor
    dev.write(0, bytes(1024))
    assert OLD in waits  # waited for a driver other than the dead one
    assert transfers(kernel) == [OLD, NEW]
    assert (NEW, BdevReq.OPEN) in kernel.sent  # reopened on the successor before the resend
    assert dev.driver == NEW and dev.driver_restarts_seen == 1


def test_at_shutdown_a_dead_driver_fails_the_request_without_waiting(
        monkeypatch: pytest.MonkeyPatch, waits: list[int | None]) -> None:
    """After SEF took the kernel's SHUTDOWN no successor comes (RS is going too): a file
    server's last CLOSE must fail at once, not wait BDEV_RECOVERY_WAIT and be killed."""
    kernel = ScriptedKernel([IpcError(Err.EDEADSRCDST, "sendrec")])
    dev = device(kernel, monkeypatch)
    dev.ctx.shutting_down = True
    looked = list(waits)  # the open's lookup of the driver
    with pytest.raises(IpcError) as gone:
        dev.close()
    assert gone.value.code == Err.EDEADSRCDST
    assert waits == looked  # nobody waited for a successor
    assert dev.grant is None  # the last close still revoked the buffer's grant


def test_an_answer_erestart_reopens_and_resends(
        monkeypatch: pytest.MonkeyPatch, waits: list[int | None]) -> None:
    kernel = ScriptedKernel([Message(Err.ERESTART), Message(Err.OK, {"count": 1024})])
    dev = device(kernel, monkeypatch)
    dev.write(0, bytes(1024))
    assert transfers(kernel) == [OLD, OLD]
    assert [t for _, t in kernel.sent].count(BdevReq.OPEN) == 2  # opened, then reopened
