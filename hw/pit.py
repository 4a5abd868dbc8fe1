"""Intel 8254 programmable interval timer (runs in the board process).

Role: the system tick.  Counter 0's output drives IRQ 0; the kernel's clock
task programs it through ports 0x40-0x43 like MINIX's ``init_8253A_timer``.

Time does not come from the host's wall clock directly but from the injected
``Clock``: a counter started at clock time ``t0`` with reload value ``N`` has
run ``floor((now - t0) * 1193182)`` input clocks.  Everything a program can
observe (the counter value, OUT in the status byte, IRQ 0 edges) is computed
from that, so a fake clock makes the timer exact and instant to test.

What is modelled: the command byte (counter select, access mode LSB / MSB /
LSB-then-MSB, mode, BCD flag), the counter latch command, the read-back
command (count and status latches), count 0 meaning 65536, the power-on state
(all counters mode 3, count 65536, counters 0/1 gated on, counter 2 off).
Modes 2 (rate generator) and 3 (square wave) run periodically; mode 0 gives
its one terminal-count edge; modes 1, 4, 5 are stored and count down but raise
no edges.

Choices:

* a new count takes effect as soon as it is complete (QEMU), not at the end of
  the current period as on a real chip;
* NULL COUNT (status bit 6) is set by a command word and cleared as soon as
  the full count is written, since loading is instantaneous here;
* BCD is stored and reported but counting is binary;
* UNCONFIRMED (spec sheet 4.1): modes 6 and 7 alias modes 2 and 3;
* catch-up: ``poll`` raises one IRQ 0 edge per elapsed period, but at most
  ``MAX_CATCHUP_EDGES`` per call; the rest are counted in ``missed_ticks``.
  The PIC latches only one pending edge per line anyway, so after a long board
  stall a burst would only waste work; the count lets a clock task correct
  its notion of time.  While IRQ 0 is masked the board polls the PIT only
  when the PIC is looked at (hw.board_chipset), so those periods land here
  too.
"""
from __future__ import annotations

from hw.device import Clock, Device, IrqLine

PIT_FREQ = 1193182  # input clock, Hz
PIT_BASE = 0x40
COUNTER0 = 0x40
COUNTER1 = 0x41
COUNTER2 = 0x42
MODE_PORT = 0x43
NUM_COUNTERS = 3
MAX_CATCHUP_EDGES = 4

# Command byte (port 0x43)
SC_SHIFT = 6  # counter select, bits 7:6
SC_READ_BACK = 3
RW_SHIFT = 4  # access mode, bits 5:4
RW_LATCH = 0
RW_LSB = 1
RW_MSB = 2
RW_LSB_MSB = 3
M_SHIFT = 1  # mode, bits 3:1
BCD = 0x01
# Read-back command
RB_NOT_COUNT = 0x20  # 0 = latch count
RB_NOT_STATUS = 0x10  # 0 = latch status
RB_COUNTER0 = 0x02  # bit for counter n is RB_COUNTER0 << n
# Status byte
ST_OUTPUT = 0x80
ST_NULL_COUNT = 0x40

MODE_INTERRUPT_ON_TC = 0
MODE_RATE_GENERATOR = 2
MODE_SQUARE_WAVE = 3
PERIODIC_MODES = (MODE_RATE_GENERATOR, MODE_SQUARE_WAVE)


class Counter:
    """One counter: its programming, its latches, and the time it was loaded."""

    def __init__(self, clock: Clock, gate: bool) -> None:
        self._clock = clock
        self.gate = gate
        self.mode = MODE_SQUARE_WAVE
        self.access = RW_LSB_MSB
        self.bcd = False
        self.count = 0x10000  # reload value, 1..65536
        self.running = True
        self.null_count = False
        self.load_time = clock()
        self.periods_done = 0  # output edges already accounted for since load_time
        self._write_low_next = True
        self._write_low = 0
        self._read_low_next = True
        self.latched: list[int] = []  # bytes still to be read from the count latch
        self.latched_status: int | None = None

    def _clocks(self) -> int:
        return int((self._clock() - self.load_time) * PIT_FREQ)

    def period_deadline(self, period: int) -> float:
        """Clock time at which the ``period``-th output edge after loading is due."""
        return self.load_time + period * self.count / PIT_FREQ

    def counts_time(self) -> bool:
        return self.running and self.gate

    def value(self) -> int:
        """The current count as the chip's 16-bit counting element shows it."""
        if not self.counts_time():
            return self.count & 0xFFFF
        clocks = self._clocks()
        if self.mode == MODE_RATE_GENERATOR:
            return (self.count - clocks % self.count) & 0xFFFF
        if self.mode == MODE_SQUARE_WAVE:
            return (self.count - (2 * clocks) % self.count) & 0xFFFF
        return (self.count - clocks) & 0xFFFF

    def output(self) -> bool:
        if not self.counts_time():
            return self.mode != MODE_INTERRUPT_ON_TC
        clocks = self._clocks()
        if self.mode == MODE_INTERRUPT_ON_TC:
            return clocks >= self.count
        if self.mode == MODE_RATE_GENERATOR:
            return clocks % self.count != self.count - 1
        if self.mode == MODE_SQUARE_WAVE:
            return clocks % self.count < (self.count + 1) // 2
        return True

    def status(self) -> int:
        return ((ST_OUTPUT if self.output() else 0) | (ST_NULL_COUNT if self.null_count else 0)
                | self.access << RW_SHIFT | self.mode << M_SHIFT | (BCD if self.bcd else 0))

    def program(self, access: int, mode: int, bcd: bool) -> None:
        """A command word: new mode, counting stops until a count is written."""
        if mode >= 6:
            mode -= 4
        self.access, self.mode, self.bcd = access, mode, bcd
        self.running = False
        self.null_count = True
        self._write_low_next = self._read_low_next = True
        self.latched = []
        self.latched_status = None

    def latch_count(self) -> None:
        if self.latched:
            return  # a second latch before the first is read is ignored
        value = self.value()
        if self.access == RW_LSB:
            self.latched = [value & 0xFF]
        elif self.access == RW_MSB:
            self.latched = [value >> 8]
        else:
            self.latched = [value & 0xFF, value >> 8]

    def latch_status(self) -> None:
        if self.latched_status is None:
            self.latched_status = self.status()

    def write(self, byte: int) -> None:
        if self.access == RW_LSB:
            self._load(byte)
        elif self.access == RW_MSB:
            self._load(byte << 8)
        elif self._write_low_next:
            self._write_low = byte
            self._write_low_next = False
        else:
            self._write_low_next = True
            self._load(self._write_low | byte << 8)

    def _load(self, count: int) -> None:
        self.count = count or 0x10000
        self.null_count = False
        self.running = True
        self.restart()

    def restart(self) -> None:
        self.load_time = self._clock()
        self.periods_done = 0

    def read(self) -> int:
        if self.latched_status is not None:
            status, self.latched_status = self.latched_status, None
            return status
        if self.latched:
            return self.latched.pop(0)
        value = self.value()
        if self.access == RW_LSB:
            return value & 0xFF
        if self.access == RW_MSB:
            return value >> 8
        low_next, self._read_low_next = self._read_low_next, not self._read_low_next
        return value & 0xFF if low_next else value >> 8


class Pit8254(Device):
    """The 8254 with counter 0 wired to IRQ 0."""

    name = "pit"
    ports = ((PIT_BASE, 4),)

    def __init__(self, irq: IrqLine, clock: Clock) -> None:
        self._irq = irq
        self._clock = clock
        self.counters: list[Counter] = []
        self.ticks = 0  # IRQ 0 edges raised
        self.missed_ticks = 0  # periods elapsed beyond the catch-up cap
        self.bad_accesses = 0
        self.reset()

    def reset(self) -> None:
        self.counters = [Counter(self._clock, gate=n != 2) for n in range(NUM_COUNTERS)]

    def set_gate(self, counter: int, level: bool) -> None:
        """Drive a GATE input (counter 2's is port 0x61 bit 0, owned by the board)."""
        if not 0 <= counter < NUM_COUNTERS:
            raise ValueError(f"no counter {counter}")
        chosen = self.counters[counter]
        if level and not chosen.gate:
            chosen.restart()  # modes 2/3 reload on the rising edge of GATE
        chosen.gate = level

    def io_read(self, port: int, size: int) -> int:
        if size != 1 or not COUNTER0 <= port <= MODE_PORT:
            self.bad_accesses += 1
            return (1 << (8 * size)) - 1
        if port == MODE_PORT:
            return 0  # write-only; QEMU reads 0
        return self.counters[port - COUNTER0].read()

    def io_write(self, port: int, size: int, value: int) -> None:
        if size != 1 or not COUNTER0 <= port <= MODE_PORT:
            self.bad_accesses += 1
            return
        value &= 0xFF
        if port == MODE_PORT:
            self._command(value)
            return
        self.counters[port - COUNTER0].write(value)

    def _command(self, value: int) -> None:
        select = value >> SC_SHIFT
        if select == SC_READ_BACK:
            for n, counter in enumerate(self.counters):
                if value & (RB_COUNTER0 << n):
                    if not value & RB_NOT_COUNT:
                        counter.latch_count()
                    if not value & RB_NOT_STATUS:
                        counter.latch_status()
            return
        access = (value >> RW_SHIFT) & 3
        counter = self.counters[select]
        if access == RW_LATCH:
            counter.latch_count()
            return
        counter.program(access, (value >> M_SHIFT) & 7, bool(value & BCD))
        if select == 0 and counter.mode == MODE_INTERRUPT_ON_TC:
            self._irq.set_level(False)  # OUT drops until terminal count

    def next_deadline(self) -> float | None:
        counter = self.counters[0]
        if not counter.counts_time():
            return None
        if counter.mode in PERIODIC_MODES:
            return counter.period_deadline(counter.periods_done + 1)
        if counter.mode == MODE_INTERRUPT_ON_TC and counter.periods_done == 0:
            return counter.period_deadline(1)
        return None

    def poll(self) -> None:
        counter = self.counters[0]
        deadline = self.next_deadline()
        now = self._clock()
        if deadline is None or now < deadline:
            return
        if counter.mode == MODE_INTERRUPT_ON_TC:
            counter.periods_done = 1
            self._edge()
            return
        due = self._periods_elapsed(counter, now) - counter.periods_done
        raised = min(due, MAX_CATCHUP_EDGES)
        self.missed_ticks += due - raised
        for _ in range(raised):
            self._edge()
        counter.periods_done += due

    @staticmethod
    def _periods_elapsed(counter: Counter, now: float) -> int:
        """Whole periods since loading, consistent with ``period_deadline``."""
        periods = int((now - counter.load_time) * PIT_FREQ / counter.count)
        while counter.period_deadline(periods + 1) <= now:
            periods += 1
        while periods > 0 and counter.period_deadline(periods) > now:
            periods -= 1
        return periods

    def _edge(self) -> None:
        """One rising edge of OUT 0 as the PIC sees it.

        The line is only driven here: between edges it rests high, and the
        pulse makes the PIC see exactly one 0->1 transition per period (the
        waveform within a period is not observable through an edge input).
        """
        self._irq.set_level(False)
        self._irq.set_level(True)
        self.ticks += 1
