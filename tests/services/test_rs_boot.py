"""RS starts the services once the machine is there: after the board has reported its init done,
which it does once it is on the bus (a driver started earlier failed IOMAP with ENODEV)."""
from __future__ import annotations


from pathlib import Path

import pytest

from minikern.events import read_all
from minikern.boot import System
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import RS_CONF, events

pytestmark = pytest.mark.timeout(90)
REAL_BOARD = "program hw.board; args --nic none --serial socket;"


def conf_with_fake_board(board: str) -> str:
    """RS starting hello, the board a tests.kernel.agent board (``board`` its arguments)."""
    assert REAL_BOARD in RS_CONF
    conf = RS_CONF.replace(REAL_BOARD, f"program tests.kernel.agent; args board {board};")
    return conf.replace("{hello}", "").replace("{agent}", "").replace("{start}", "hello")


def console_marks(s: SystemUnderTest | System, *marks: str) -> list[str]:
    text = s.console() if isinstance(s, SystemUnderTest) else s.console.read_text()
    return [m for ln in text.splitlines() for m in marks if m in ln]


def test_rs_starts_its_services_only_once_the_board_is_on_the_bus(make_system) -> None:  # type: ignore[no-untyped-def]
    s = make_system(boot="hw rs", conf=conf_with_fake_board("1.0"))
    marks = ["started hw", "started rs", "board attached", "started hello"]
    assert console_marks(s, *marks) == marks
    ups = [e["label"] for e in events(s, "up")]
    assert ups.index("hw") < ups.index("hello"), ups


def test_a_board_that_dies_before_its_init_done_is_fatal_and_nothing_starts(
        tmp_path: Path) -> None:
    """No machine, no system: RS logs the core failure, starts none of its services, and the
    system shuts down in order."""
    conf = tmp_path / "system.conf"
    conf.write_text(conf_with_fake_board("exit").format(boot="hw rs"))
    system = System(tmp_path / "run", conf)
    try:
        wait_for(lambda: system.kernel.poll() is not None, 30, "the system to shut down")
    finally:
        system.halt()
    assert system.kernel.returncode == 0
    log = [e for e in read_all(system.run_dir) if e["source"] == "rs"]
    assert [(e["kind"], e["label"], e.get("action")) for e in log] == [
        ("crash", "hw", "fatal"), ("fatal", "rs", None)]
    assert console_marks(system, "started hello", "board attached") == []
