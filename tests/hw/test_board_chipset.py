"""The board's device timing on its loop (hw/board_chipset.py): loop timers on the loop's clock,
host fds watched, and the PIC's interrupt cycle after each event, all in fake time."""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hw.board_chipset import Chipset
from hw.board_machine import Audit, Machine
from hw.wire import UdpWire
from minikern.loop import FakeClock, Loop
from tests.hw.test_board import free_udp_port

pytestmark = pytest.mark.timeout(60)

PIT_INPUT_HZ = 1193182  # the 8254's input clock (Intel's datasheet), not a module constant
START = 50.0


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    yield s
    s.close()


def machine(tmp_path: Path, clock: FakeClock, wire: UdpWire | None = None) -> Machine:
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    return Machine(tmp_path, disk, wire, None, Audit(tmp_path), clock=clock.now)


def test_the_pit_ticks_at_exact_periods_of_the_loops_clock(tmp_path: Path) -> None:
    """At 100 Hz the firmware loads round(1193182 / 100) = 11932: IRQ 0 every 11932 input
    clocks after loading, no earlier and no later, and no real time passes."""
    clock = FakeClock(START)
    loop, m = Loop(clock=clock), machine(tmp_path, clock)
    sent: list[tuple[int, float]] = []
    try:
        m.firmware(100)
        m.set_masked(0, False)  # someone asked for the clock's interrupt
        Chipset(loop, m, lambda irq: sent.append((irq, clock.now())))
        started = time.monotonic()
        while len(sent) < 5:
            loop.turn()
        assert [irq for irq, _ in sent] == [0] * 5
        period = 11932 / PIT_INPUT_HZ
        assert [t for _, t in sent] == pytest.approx([START + k * period for k in range(1, 6)],
                                                     abs=1e-9)
        assert m.stats()["pit"] == {"ticks": 5, "missed_ticks": 0}
        assert time.monotonic() - started < 1.0
    finally:
        m.close()


def test_reprogramming_the_pit_moves_its_timer(tmp_path: Path) -> None:
    """A new count takes effect at once (the model's documented choice): from 20 Hz to 100 Hz,
    the next tick comes one new period after the reload, not at the old period's end."""
    clock = FakeClock(START)
    loop, m = Loop(clock=clock), machine(tmp_path, clock)
    sent: list[float] = []
    who = (0, "kernel")
    try:
        m.firmware(20)
        m.set_masked(0, False)
        chipset = Chipset(loop, m, lambda irq: sent.append(clock.now()))
        while not sent:
            loop.turn()
        clock.advance(0.001)
        reloaded = clock.now()
        for port, value in ((0x43, 0x36), (0x40, 11932 & 0xFF), (0x40, 11932 >> 8)):
            m.write(port, 1, value, who)
        chipset.settle()  # as the board does after every port access
        while len(sent) < 2:
            loop.turn()
        assert sent[1] == pytest.approx(reloaded + 11932 / PIT_INPUT_HZ, abs=1e-9)
    finally:
        m.close()


def test_a_masked_clock_line_costs_no_timer_yet_reads_as_if_it_ticked(tmp_path: Path) -> None:
    """The firmware leaves IRQ 0 masked (MINIX's 0xFB): the PIT gets no timer on the loop, so
    an idle board sleeps; its counter still counts down from the clock, the edges it raised
    meanwhile are latched in the IRR when the PIC is looked at, and the unmask delivers that
    one latched edge at once and then one per period."""
    clock = FakeClock(START)
    loop, m = Loop(clock=clock), machine(tmp_path, clock)
    sent: list[tuple[int, float]] = []
    who = (0, "kernel")
    try:
        m.firmware(100)
        chipset = Chipset(loop, m, lambda irq: sent.append((irq, clock.now())))
        assert m.stats()["pic"]["imr"] & 1 and chipset.deadline(m.pit) is None
        assert m.pit not in chipset.armed
        gave_up = loop.call_later(5.0, lambda: None)
        loop.turn()  # nothing but the fallback timer: fake time jumps to it
        assert clock.now() == START + 5.0 and sent == []
        period = 11932 / PIT_INPUT_HZ
        m.write(0x43, 1, 0x00, who)  # latch counter 0
        low, high = m.read(0x40, 1, who), m.read(0x40, 1, who)
        clocks = int(5.0 * PIT_INPUT_HZ)
        assert low | high << 8 == (11932 - (2 * clocks) % 11932) & 0xFFFF  # mode 3 counts by 2
        assert m.stats()["pic"]["irr"] & 1  # an edge came while masked: the IRR holds it
        m.set_masked(0, False)
        chipset.settle()
        assert sent == [(0, START + 5.0)]  # the latched edge, at the unmask
        assert chipset.deadline(m.pit) == pytest.approx(START + (int(5.0 / period) + 1) * period,
                                                        abs=1e-9)
        while len(sent) < 3:
            loop.turn()
        assert [irq for irq, _ in sent] == [0, 0, 0]
        m.set_masked(0, True)
        chipset.settle()
        assert m.pit not in chipset.armed
        gave_up.cancel()
    finally:
        m.close()


def test_a_device_line_is_masked_after_its_interrupt_until_enabled(tmp_path: Path) -> None:
    """MINIX's interrupt path: acknowledged, ended, masked until the driver re-enables it; an
    edge meanwhile waits in the IRR and is raised on the unmask, the clock's line never masks."""
    clock = FakeClock(START)
    loop, m = Loop(clock=clock), machine(tmp_path, clock)
    sent: list[int] = []
    who = (8, "tty")
    try:
        m.firmware(100)
        m.set_masked(0, False)
        chipset = Chipset(loop, m, sent.append)
        m.set_masked(4, False)
        m.write(0x3F9, 1, 0x02, who)  # IER ETBEI with THR empty: THRE at once
        chipset.settle()
        assert sent == [4]
        m.write(0x3F9, 1, 0x00, who)
        m.write(0x3F9, 1, 0x02, who)  # a second edge on the masked line
        chipset.settle()
        assert sent == [4] and m.stats()["pic"]["irr"] & 1 << 4
        while sent.count(0) < 2:  # the clock's line keeps ticking through
            loop.turn()
        assert 4 not in sent[1:]
        m.set_masked(4, False)  # the driver's IRQCTL ENABLE
        chipset.settle()
        assert sent[-1] == 4 and sent.count(4) == 2
    finally:
        m.close()


def test_a_frame_on_the_wire_wakes_the_loop_and_reaches_the_nic(tmp_path: Path,
                                                                 peer: socket.socket) -> None:
    clock = FakeClock(START)
    port = free_udp_port()
    wire = UdpWire(("127.0.0.1", port), peer.getsockname())
    loop, m = Loop(clock=clock), machine(tmp_path, clock, wire)
    try:
        Chipset(loop, m, lambda irq: None)  # no firmware: the PIT does not count, no timers
        gave_up = loop.call_later(5.0, lambda: None)  # fake time jumps here if nothing is ready
        peer.sendto(bytes(60), ("127.0.0.1", port))  # (on loopback, queued before sendto returns)
        loop.turn()
        assert m.nic.counters.rx_dropped_disabled == 1  # taken; the receiver is not enabled
        assert clock.now() == START  # the fd woke the turn, not the fallback timer
        gave_up.cancel()
    finally:
        m.close()
