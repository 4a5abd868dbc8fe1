"""minikern/successor.py: the wait for a restarted driver's new endpoint (libbdev and the
console client share it), against a scripted DS."""
from __future__ import annotations

from typing import Any

import pytest

from minikern import ds, successor
from minikern.const import Err
from minikern.ipc import IpcError, KernelGone


class ScriptedDs:
    """DS's answers, one (state, endpoint) per look; IpcError instances are raised."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, looks: list[Any]) -> None:
        self.looks, self.now, self.pauses = looks, looks[0], 0
        monkeypatch.setattr(ds, "retrieve", self.retrieve)
        monkeypatch.setattr(ds, "retrieve_label", self.retrieve_label)

    def retrieve(self, conn: Any, key: str, vtype: str | None = None) -> Any:
        assert key == "rs.tty" and vtype == "str"
        if isinstance(self.now, Exception):
            raise self.now
        return self.now[0]

    def retrieve_label(self, conn: Any, label: str) -> int:
        assert label == "tty"
        return int(self.now[1])

    def pause(self, seconds: float) -> None:
        self.pauses += 1
        self.now = self.looks[min(self.pauses, len(self.looks) - 1)]


def wait(d: ScriptedDs, dead: int | None, within: float = 60.0) -> int:
    return successor.wait_up(None, "tty", "rs.tty", dead, within, 0.0,  # type: ignore[arg-type]
                             d.pause)


def test_the_dead_endpoint_is_not_taken_for_the_successor(monkeypatch: pytest.MonkeyPatch) -> None:
    d = ScriptedDs(monkeypatch, [("up", 7), ("restarting", 7), ("up", 7), ("up", 9)])
    assert wait(d, dead=7) == 9 and d.pauses == 3


def test_ds_trouble_is_waited_out_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    d = ScriptedDs(monkeypatch, [IpcError(Err.EDEADSRCDST, "DS restarting"),
                                 IpcError(Err.ESRCH, "no key yet"), ("up", 12)])
    assert wait(d, dead=None) == 12 and d.pauses == 2


def test_a_failed_driver_is_eio_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    d = ScriptedDs(monkeypatch, [("restarting", 3), ("failed", 3), ("up", 5)])
    with pytest.raises(IpcError) as e:
        wait(d, dead=3)
    assert e.value.code == Err.EIO and "failed" in str(e.value) and d.pauses == 1


def test_not_back_within_the_bound_is_eio(monkeypatch: pytest.MonkeyPatch) -> None:
    d = ScriptedDs(monkeypatch, [("restarting", 3)])
    with pytest.raises(IpcError) as e:
        wait(d, dead=3, within=-1.0)  # the deadline has passed at the first look
    assert e.value.code == Err.EIO and "not back" in str(e.value)


def test_the_kernel_gone_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    d = ScriptedDs(monkeypatch, [KernelGone()])
    with pytest.raises(KernelGone):
        wait(d, dead=None)
