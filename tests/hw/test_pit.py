"""8254 PIT: programming, tick rate on a fake clock, latch and read-back."""
from __future__ import annotations

import pytest

from hw.device import NullIrq
from hw.pit import MAX_CATCHUP_EDGES, PIT_FREQ, Pit8254
from tests.hw.conftest import FakeClock, Ports


@pytest.fixture
def irq() -> NullIrq:
    return NullIrq()


@pytest.fixture
def pit(irq: NullIrq, clock: FakeClock) -> Pit8254:
    return Pit8254(irq, clock)


def program(ports: Ports, command: int, count: int) -> None:
    ports.outb(0x43, command)
    ports.outb(0x40, count & 0xFF)
    ports.outb(0x40, count >> 8)


def run(pit: Pit8254, clock: FakeClock, seconds: float, step: float = 0.001) -> None:
    """Advance the fake clock in small steps, polling like the board loop."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        pit.poll()


@pytest.mark.parametrize("command", [0x36, 0x34])  # mode 3 (MINIX) and mode 2
def test_100hz_gives_100_edges_per_second(pit: Pit8254, irq: NullIrq, clock: FakeClock,
                                          command: int) -> None:
    program(Ports(pit), command, PIT_FREQ // 100)
    run(pit, clock, 1.0)
    assert irq.rises == 100
    assert pit.ticks == 100 and pit.missed_ticks == 0


def test_next_deadline_is_the_next_period(pit: Pit8254, clock: FakeClock, irq: NullIrq) -> None:
    start = clock()
    program(Ports(pit), 0x34, 11932)
    deadline = pit.next_deadline()
    assert deadline is not None
    assert deadline - start == pytest.approx(11932 / PIT_FREQ)
    clock.now = deadline - 1e-6
    pit.poll()
    assert irq.rises == 0
    clock.now = deadline
    pit.poll()
    assert irq.rises == 1
    assert (pit.next_deadline() or 0.0) - start == pytest.approx(2 * 11932 / PIT_FREQ)


def test_power_on_rate_is_18_2_hz(pit: Pit8254, irq: NullIrq, clock: FakeClock) -> None:
    run(pit, clock, 1.0)
    assert irq.rises == 18  # 65536 / 1193182 s per tick


def test_count_zero_means_65536(pit: Pit8254, clock: FakeClock) -> None:
    start = clock()
    program(Ports(pit), 0x34, 0)
    assert (pit.next_deadline() or 0.0) - start == pytest.approx(65536 / PIT_FREQ)


def test_catch_up_is_capped_and_missed_ticks_counted(pit: Pit8254, irq: NullIrq,
                                                     clock: FakeClock) -> None:
    program(Ports(pit), 0x36, PIT_FREQ // 100)
    clock.advance(1.0)
    pit.poll()
    assert irq.rises == MAX_CATCHUP_EDGES
    assert pit.missed_ticks == 100 - MAX_CATCHUP_EDGES
    run(pit, clock, 0.1)
    assert irq.rises == MAX_CATCHUP_EDGES + 10  # back on the original phase


def test_command_word_stops_counter_until_count_written(pit: Pit8254, irq: NullIrq,
                                                        clock: FakeClock) -> None:
    ports = Ports(pit)
    ports.outb(0x43, 0x34)
    ports.outb(0x40, 0x10)  # only the LSB so far
    assert pit.next_deadline() is None
    run(pit, clock, 0.1)
    assert irq.rises == 0
    ports.outb(0x40, 0x00)
    assert pit.next_deadline() is not None


def test_counter_latch_freezes_the_value(pit: Pit8254, clock: FakeClock) -> None:
    ports = Ports(pit)
    program(ports, 0x34, 1000)
    clock.advance(100.5 / PIT_FREQ)
    ports.outb(0x43, 0x00)  # latch counter 0
    clock.advance(300 / PIT_FREQ)
    value = ports.inb(0x40) | ports.inb(0x40) << 8
    assert value == 900
    unlatched = ports.inb(0x40) | ports.inb(0x40) << 8
    assert unlatched == 600


def test_read_back_latches_status_then_count(pit: Pit8254, clock: FakeClock) -> None:
    ports = Ports(pit)
    program(ports, 0x34, 1000)
    clock.advance(10.5 / PIT_FREQ)
    ports.outb(0x43, 0xC2)  # read-back: count and status of counter 0
    status = ports.inb(0x40)
    assert status == 0x80 | 0x30 | 0x04  # OUT high, LSB/MSB, mode 2, binary
    assert ports.inb(0x40) | ports.inb(0x40) << 8 == 990


def test_status_shows_null_count_after_command(pit: Pit8254) -> None:
    ports = Ports(pit)
    ports.outb(0x43, 0xB6)  # counter 2, LSB/MSB, mode 3
    ports.outb(0x43, 0xE8)  # read-back status only, counter 2
    assert ports.inb(0x42) & 0x7F == 0x40 | 0x36


def test_lsb_only_access(pit: Pit8254, irq: NullIrq, clock: FakeClock) -> None:
    ports = Ports(pit)
    ports.outb(0x43, 0x14)  # counter 0, LSB only, mode 2
    ports.outb(0x40, 200)
    period = 200 / PIT_FREQ
    run(pit, clock, 10.5 * period, step=period / 2)
    assert irq.rises == 10
    clock.advance(0.5 / PIT_FREQ)  # 2100.5 input clocks since loading
    assert ports.inb(0x40) == 100


def test_mode_0_raises_one_edge(pit: Pit8254, irq: NullIrq, clock: FakeClock) -> None:
    program(Ports(pit), 0x30, 1193)
    assert not irq.level  # OUT goes low on the command word
    run(pit, clock, 0.1)
    assert irq.rises == 1 and irq.level
    assert pit.next_deadline() is None


def test_mode_6_aliases_mode_2(pit: Pit8254) -> None:
    ports = Ports(pit)
    ports.outb(0x43, 0x3C)  # mode 110
    ports.outb(0x43, 0xE2)
    assert (ports.inb(0x40) >> 1) & 7 == 2


def test_gate_low_stops_counting(pit: Pit8254, irq: NullIrq, clock: FakeClock) -> None:
    program(Ports(pit), 0x36, PIT_FREQ // 100)
    pit.set_gate(0, False)
    run(pit, clock, 0.1)
    assert irq.rises == 0
    pit.set_gate(0, True)
    run(pit, clock, 0.1)
    assert irq.rises == 10


def test_mode_port_reads_zero_and_wide_access_is_counted(pit: Pit8254) -> None:
    assert pit.io_read(0x43, 1) == 0
    assert pit.io_read(0x40, 2) == 0xFFFF
    assert pit.bad_accesses == 1
