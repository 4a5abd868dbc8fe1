"""Rings in a booted system: a driver killed in the middle of a request does not wedge the board,
garbage from a live driver gets refusals, and a driver that attaches again gets a fresh ring."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from minikern import cli, devio
from minikern.const import Err, KCall
from minikern.proto import ring
from tests.conftest import wait_for
from tests.hw.test_board import UART_SCR, Machine, machine_fixture  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(60)

# A driver that writes the first slot of a chain whose rest never comes, rings the board, and
# waits to be killed: the board is left in the middle of its request.
DYING = """
import sys
from minikern import devio
from minikern.proto import ring
ch = devio.connect(sys.argv[1], sys.argv[2])
ch.outb(0x3FF, 0x42)
n = ch.seq
i = ring.request_word(n)
ch.words[i + 1] = 0
ch.words[i] = ring.head(n, ring.Op.IN | ring.CHAIN, 1, 0x3FF)
ch.bell.send(b"\\1")
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_driver_killed_mid_request_does_not_wedge_the_board(machine: Machine) -> None:
    com, tty = machine.driver("com"), machine.driver("tty")
    other = devio.open_channel(tty)
    r = com.kcall(KCall.IOMAP)
    child = subprocess.Popen([sys.executable, "-c", DYING, r["path"], r["token"]],
                             cwd=cli.REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        wait_for(lambda: machine.stats()["channels"] == 2, what="both rings attached")
        assert other.inb(0x3FD) & 0x60 == 0x60  # the board serves the others meanwhile
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        wait_for(lambda: machine.stats()["channels"] == 1, what="the dead driver's ring dropped")
        assert machine.stats()["fastpath"]["dropped"] == 1
        assert other.inb(0x3FD) & 0x60 == 0x60
        again = devio.open_channel(com)  # a restarted driver attaches a fresh ring
        try:
            assert again.seq == 1 and again.inb(UART_SCR) == 0x42  # the device kept its state
        finally:
            again.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        other.close()


def test_garbage_from_a_live_driver_gets_refusals(machine: Machine) -> None:
    ch = devio.open_channel(machine.driver("com"))
    try:
        before = machine.stats()["fastpath"].get("malformed", 0)
        n = ch.seq
        ch.seq += 1
        i = ring.request_word(n)
        ch.words[i + 1] = 0xDEAD
        ch.words[i] = ring.head(n, 0x55, 9, 0x3FF)  # no such op, no such size
        ch.bell.send(b"\1")
        with pytest.raises(devio.ChannelError) as e:
            ch._answer(n, "garbage")
        assert e.value.code == Err.EINVAL
        assert machine.stats()["fastpath"]["malformed"] == before + 1
        ch.outb(UART_SCR, 0x17)  # and the ring goes on
        assert ch.inb(UART_SCR) == 0x17
    finally:
        ch.close()


def test_closing_and_attaching_again_gives_a_fresh_ring(machine: Machine) -> None:
    com = machine.driver("com")
    first = devio.open_channel(com)
    first.outb(UART_SCR, 0x99)
    first.close()
    wait_for(lambda: machine.stats()["channels"] == 0, what="the closed ring dropped")
    second = devio.open_channel(com)
    try:
        assert second.inb(UART_SCR) == 0x99
        assert second.vec([(UART_SCR, 1, 0x11), (UART_SCR, 1, None)]) == [None, 0x11]
        assert machine.stats()["fastpath"]["attached"] == 2
    finally:
        second.close()


def test_a_lost_bell_costs_a_millisecond_not_a_hang(machine: Machine) -> None:
    """The words are not fenced against the slots, so a bell can be missed: the driver rings
    again when its first wait ends empty.  Here the bell is lost on purpose: the board's
    "I sleep" word is cleared under it, so the driver sees no reason to ring."""
    ch = devio.open_channel(machine.driver("com"))
    try:
        ch.outb(UART_SCR, 0x5A)
        wait_for(lambda: ch.words[ring.W_BOARD_SLEEPS] == 1, what="the board asleep")
        ch.words[ring.W_BOARD_SLEEPS] = 0
        assert ch.inb(UART_SCR) == 0x5A
    finally:
        ch.close()
