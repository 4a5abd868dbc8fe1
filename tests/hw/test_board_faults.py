"""A bug in one device model is counted and contained: the machine keeps running."""
from __future__ import annotations

from pathlib import Path

import pytest

from hw.board_machine import Audit, Machine


def test_a_raising_model_floats_the_bus_and_the_rest_runs_on(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    m = Machine(tmp_path, disk, None, None, Audit(tmp_path))
    try:
        def broken(*args: object) -> int:
            raise ZeroDivisionError("a model bug")
        monkeypatch.setattr(m.uart, "io_read", broken)
        monkeypatch.setattr(m.uart, "io_write", broken)
        who = (8, "tty")
        assert m.read(0x3F8 + 7, 1, who) == 0xFF  # the bus floats
        m.write(0x3F8 + 7, 1, 0x55, who)  # the write is lost, nothing raises
        assert m.read(0x3F8 + 7, 2, who) == 0xFFFF
        assert m.stats()["model_faults"] == {m.uart.name: 3}
        assert capsys.readouterr().out.count("BUG in the") == 1  # one traceback, then counts
        m.write(0x378, 1, 0x41, who)  # another device is untouched
        assert m.read(0x378, 1, who) == 0x41
    finally:
        m.close()
