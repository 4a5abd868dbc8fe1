"""The chipset: device timing on the board's loop, and the PIC's interrupt cycle after each event.

Runs in the board process (hw.board).  Devices keep time on the loop's clock
(``Machine(clock=loop.clock.now)``): each device with a deadline (the PIT's
next period, the UART's character timeout) has exactly one timer on the
loop, at its current ``next_deadline``, which polls the device when due.  A
device with a host fd (the NIC's wire, the UART's pty or socket) is polled
when that fd has input.  A device's ``poll`` runs only then: those are the
only times it has work.

The PIT is the one device whose timing matters only through its interrupt
line: while IRQ 0 is masked at the 8259 it gets no timer at all (the counter
values are computed from the clock whenever they are read; the IRQ 0 edges
that fell due meanwhile are caught up into the IRR before the PIC is looked
at, ``Machine.catch_up``).  So a machine whose clock line nobody asked for
sleeps: no wakeup 60 times a second, no IRQ 0 on the bus.

``settle`` runs after everything that can move a deadline or raise a line
(port I/O from the bus or the fast path, a knob, a device's input or timer):
it re-arms the timers whose deadline moved and runs the PIC's INTA cycle as
MINIX's interrupt path does: each pending line is acknowledged, ended
(specific EOI) and, except for the clock's IRQ 0, masked until the kernel
passes on the driver's IRQCTL ENABLE (``Machine.set_masked``); an edge that
arrives meanwhile waits in the IRR.  Each acknowledged line goes to
``raise_irq`` (the board sends it on the bus).

With a ``FakeClock`` on the loop the whole machine runs in fake time: a PIT
at 100 Hz ticks at exact multiples of its period, instantly.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from hw.board_machine import Machine
from hw.device import Device
from minikern.loop import Loop, Timer


class Chipset:
    def __init__(self, loop: Loop, machine: Machine, raise_irq: Callable[[int], None]) -> None:
        self.loop, self.machine, self.raise_irq = loop, machine, raise_irq
        self.armed: dict[Device, Timer] = {}  # device -> its one live timer
        # Only devices that keep time have deadlines; settle runs after every wakeup.
        self.timed = [dev for dev in machine.devices
                      if type(dev).next_deadline is not Device.next_deadline]
        self.irq_sent: Counter[int] = Counter()
        for dev in machine.devices:
            fd = dev.fileno()
            if fd is not None:
                loop.watch(fd, lambda dev=dev: self.run(dev))  # type: ignore[misc]
        self.settle()

    def run(self, dev: Device) -> None:
        """The device has work (input on its host fd, or its deadline has come)."""
        try:
            dev.poll()
        except Exception:  # a model bug: counted, and the machine runs on
            self.machine.device_fault(dev)
        self.settle()

    def due(self, dev: Device) -> None:
        self.armed.pop(dev, None)
        self.run(dev)

    def deadline(self, dev: Device) -> float | None:
        """When ``dev`` next needs its ``poll``: the PIT only while its line is unmasked."""
        if dev is self.machine.pit and self.machine.pic.master.imr & 1:
            return None
        return dev.next_deadline()

    def settle(self) -> None:
        for dev in self.timed:
            deadline = self.deadline(dev)
            timer = self.armed.get(dev)
            if timer is not None:
                if timer.when == deadline:
                    continue
                timer.cancel()
                del self.armed[dev]
            if deadline is not None:
                self.armed[dev] = self.loop.call_at(deadline, lambda dev=dev: self.due(dev))  # type: ignore[misc]
        self.interrupts()

    def interrupts(self) -> None:
        m = self.machine
        while (irq := m.pic.pending_irq()) is not None:
            m.end_of_interrupt(irq)
            if irq != 0:
                m.set_masked(irq, True)  # until the driver's IRQCTL ENABLE
            self.irq_sent[irq] += 1
            self.raise_irq(irq)

    def close(self) -> None:
        for dev in self.machine.devices:
            fd = dev.fileno()
            if fd is not None:
                self.loop.unwatch(fd)
        for timer in self.armed.values():
            timer.cancel()
        self.armed.clear()
