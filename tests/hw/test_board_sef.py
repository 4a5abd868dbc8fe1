"""The board is a SEF component: RS's heartbeat is answered by SEF on the board's loop, and a
fault from bin/crash is taken through it.  The board is a core server (README, "Recovery"):
its failure is logged and the system shuts down in order."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from minikern import cli
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import boot_rs, events, service, wait_state

pytestmark = pytest.mark.timeout(90)
Make = Callable[..., SystemUnderTest]


def crash(s: SystemUnderTest, label: str, fault: str) -> str:
    """bin/crash, as the operator runs it (--force: the board is a core component)."""
    done = subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "crash"), "--run-dir",
                           str(s.run_dir), label, fault, "--force"], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout


@pytest.mark.parametrize("fault", ["exception", "panic"])
def test_the_boards_sef_answers_rs_and_takes_a_fault_which_is_fatal(make_system: Make,
                                                                     fault: str) -> None:
    s = boot_rs(make_system, board=True)  # the board's heartbeat period is 200 ms
    hw = wait_state(s, "hw", "up")
    wait_for(lambda: service(s, "hw")["uptime"] > 1.0, what="five periods of pings answered")
    assert service(s, "hw")["pid"] == hw["pid"] and not events(s, "crash")
    assert f"{fault} injected into hw" in crash(s, "hw", fault)
    wait_for(lambda: s.system.kernel.poll() is not None, what="the system to shut down")
    crashed = events(s, "crash", "hw")
    assert [(e["action"], e["reason"], e["pid"]) for e in crashed] == [
        ("fatal", fault, hw["pid"])]
    assert "hw" in events(s, "fatal")[0]["detail"]
    assert s.system.kernel.returncode == 0  # in order: the kernel ended its own shutdown
