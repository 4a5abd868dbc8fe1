"""An injection's window (experiment/trial.py): it closes once the driver's application has
done an operation *begun* after the recovery (one begun before may have been served by the
instance that died, and the error of its death comes after), and a driver is refreshed
after a window whose fault goes on or hurt the application unseen."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from experiment.plan import Injection
from experiment.trial import fired_late, needs_restore
from experiment.workload import Load
from minikern.deadline import wait_for

pytestmark = pytest.mark.timeout(30)


class Scripted(Load):
    """An application whose operations each wait for the test to let them finish."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, 1)
        self.entered = threading.Semaphore(0)
        self.finish = threading.Semaphore(0)

    def connect(self) -> None:
        self.conn = None

    def op(self, i: int) -> int:
        self.entered.release()
        self.finish.acquire()
        return 1


def test_an_operation_begun_before_the_mark_does_not_close_the_window(tmp_path: Path) -> None:
    load = Scripted(tmp_path)
    load.start()
    try:
        assert load.entered.acquire(timeout=10)  # operation 0 is under way
        mark = time.time()
        wait_for(lambda: time.time() > mark, 5)
        load.finish.release()  # operation 0 ends after the mark, but began before it
        assert load.entered.acquire(timeout=10)  # operation 1 begun: 0 is recorded
        assert len(load.ops) == 1 and load.ops[0][0] > mark
        assert not load.done_after(mark)
        load.finish.release()  # operation 1, begun after the mark, ends
        wait_for(lambda: load.done_after(mark), 10, "operation 1 recorded")
    finally:
        load.stop.set()
        load.finish.release(5)
        load.join(10)
    assert not load.is_alive()


def outcome(**kw: Any) -> dict[str, Any]:
    return {"activated": True, "detected": False, "silent": False, **kw}


def test_a_driver_is_refreshed_after_a_lasting_or_silent_fault_only() -> None:
    spin = Injection(0, "s1-0", "printer", "resource", "spin")
    assert needs_restore(spin, outcome(), resumed=True)  # spinning on, below the CPU limit
    assert not needs_restore(spin, outcome(detected=True), resumed=True)  # restarted by RS
    skip_unfired = Injection(3, "s1-3", "memory", "code", "negate")
    assert needs_restore(skip_unfired, outcome(activated=False), resumed=True)  # still armed
    skip = Injection(1, "s1-1", "tty", "code", "skip")
    assert not needs_restore(skip, outcome(), resumed=True)  # fired, harmed nothing
    assert needs_restore(skip, outcome(activated_late=True), resumed=True)  # its failure may come
    assert not needs_restore(skip, outcome(activated_late=True, detected=True), resumed=True)
    assert needs_restore(skip, outcome(silent=True), resumed=True)
    kill = Injection(2, "s1-2", "hello", "process", "kill")  # nothing stays armed
    assert not needs_restore(kill, outcome(detected=True), resumed=True)
    assert needs_restore(kill, outcome(detected=True), resumed=False)


def test_a_fault_found_fired_at_the_windows_end_is_activated_and_refreshed() -> None:
    negate = Injection(4, "s1-4", "at_wini", "code", "corrupt")
    out = outcome(activated=False)
    fired_late(negate, out, fired=False)
    assert out["activated"] is False and "activated_late" not in out  # not fired: still armed
    fired_late(negate, out, fired=True)
    assert out["activated"] is True and out["activated_late"] is True
    assert needs_restore(negate, out, resumed=True)
    kill = Injection(5, "s1-5", "hello", "process", "kill")  # no record: activated by its kill
    out = outcome(activated=True)
    fired_late(kill, out, fired=False)
    assert "activated_late" not in out
