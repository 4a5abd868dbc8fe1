"""The board's pending attaches are timed out (hw/board_fastpath.py, docs/PROTOCOL.md
section 10): connections held open to the fast-path socket without an ATTACH are closed
after params.ATTACH_TIMEOUT, counted, so a driver attaches again.

Before, forty idle connections filled the board's MAX_PENDING for good: rtl8139's attach
failed until RS gave up on it.
"""
from __future__ import annotations

import socket

import pytest

from hw.board_fastpath import MAX_PENDING, SOCKET_NAME
from minikern import devio
from tests.conftest import wait_for
from tests.hw.test_board import Machine, machine_fixture  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(90)

HELD = 40  # idle connections, past MAX_PENDING
COM = 0x3F8


@pytest.mark.timeout(90)
def test_idle_connections_to_the_board_do_not_keep_drivers_out(machine: Machine) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(HELD):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(str(machine.system.run_dir / SOCKET_NAME))
            held.append(s)  # and never a word
        com = machine.driver("com")

        def attached() -> devio.Channel | None:
            try:
                return devio.open_channel(com)
            except (devio.ChannelError, OSError):
                return None

        ch = wait_for(attached, 30, "a driver to attach past the held connections", interval=0.2)
        assert ch is not None
        try:
            ch.outb(COM + 7, 0x5A)  # the scratch register: a round trip on the channel
            assert ch.inb(COM + 7) == 0x5A
        finally:
            ch.close()
        assert machine.stats()["fastpath"]["attach_timeout"] >= MAX_PENDING
    finally:
        for s in held:
            s.close()
    info = machine.system.info()  # the kernel serves, the board is still there
    assert any(p["label"] == "hw" for p in info["procs"])
