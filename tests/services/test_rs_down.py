"""A recovery script never outlives the decision it was for, nor its system.

An operator's `service down` ends the scripts still running for that service
(else a backoff script would bring back what a person stopped, Circus's bug);
a script left running when RS or the kernel dies is killed by RS's guardian.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from minikern.const import RsReq
from minikern import rsctl as ctl
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import boot_rs, events, service, wait_event, wait_state

pytestmark = pytest.mark.timeout(60)
Make = Callable[..., SystemUnderTest]

# A script that takes its time before restarting, as rs.backoff does at its cap.
SLOW = """#!/bin/sh
echo $$ > "$MINIKERN_RUN_DIR/script.pid"
sleep 30 &
echo $! > "$MINIKERN_RUN_DIR/sleep.pid"
wait
exec "$MINIKERN_PYTHON" "$MINIKERN_ROOT/bin/service" --run-dir "$MINIKERN_RUN_DIR" restart "$1"
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def slow_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "slow").write_text(SLOW)
    monkeypatch.setenv("MINIKERN_RECOVERY_SCRIPTS", str(scripts))


def script_under_way(make_system: Make) -> tuple[SystemUnderTest, list[int]]:
    """A system whose hello crashed and whose slow script runs: the script's shell and its
    sleep, once both are running."""
    s = boot_rs(make_system, hello="script slow;")
    os.kill(service(s, "hello")["pid"], signal.SIGKILL)
    wait_event(s, "script", "hello")

    def read() -> list[int] | None:
        try:
            return [int((s.run_dir / f).read_text()) for f in ("script.pid", "sleep.pid")]
        except (OSError, ValueError):
            return None
    return s, wait_for(read, what="the script running")


@pytest.mark.usefixtures("slow_script")
def test_operator_down_ends_the_recovery_script_under_way(make_system: Make) -> None:
    s, pids = script_under_way(make_system)
    assert all(alive(p) for p in pids)
    ctl.request(s.run_dir, RsReq.DOWN, label="hello")  # raises on an error
    wait_for(lambda: not any(alive(p) for p in pids), what="the script and its child gone")
    wait_state(s, "hello", "down")
    assert not events(s, "restart", "hello")


@pytest.mark.usefixtures("slow_script")
def test_scripts_die_with_a_killed_kernel(make_system: Make) -> None:
    s, pids = script_under_way(make_system)
    os.kill(s.system.kernel.pid, signal.SIGKILL)
    s.system.kernel.wait()
    wait_for(lambda: not any(alive(p) for p in pids), timeout=15,
             what="the script and its child killed by RS's guardian")
