"""The campaign's network application restarts its echo server after each failure of its
connection (experiment/rig.py ``Rig.echo``).  An old server that does not die within the
wait (SIGKILLed, but still in the host kernel on a loaded machine) must not end the
application: the re-run of the 10,000-fault plan's trials lost its network application for
the rest of a trial to that wait's TimeoutExpired, which no caller expects."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from experiment.rig import Rig

pytestmark = pytest.mark.timeout(30)


class Stuck:
    """A SIGKILLed child the host has not let go of yet."""

    killed = False

    def poll(self) -> None:
        return None

    def kill(self) -> None:
        self.killed = True

    def wait(self, timeout: float) -> int:
        raise subprocess.TimeoutExpired(["echo"], timeout)


class Children:
    def __init__(self) -> None:
        self.started: list[list[str]] = []

    def start(self, name: str, argv: list[str]) -> Any:
        self.started.append(argv)
        return object()


def test_a_stuck_old_server_does_not_stop_a_new_one(tmp_path: Path) -> None:
    rig = Rig.__new__(Rig)  # just what echo() uses: the UDP peer's path (system B's echod)
    old, children = Stuck(), Children()
    vars(rig).update(echod=old, children=children, netns=None, echo_port=7000,
                     run_b=tmp_path / "b")
    port = rig.echo()
    assert old.killed and port == 7001
    assert len(children.started) == 1 and children.started[0][-1] == "7001"
    assert vars(rig)["echod"] is not old
