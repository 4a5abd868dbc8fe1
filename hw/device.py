"""The contract between the board and each emulated device (runs in the board process).

A device model is a plain object.  The board owns the port space and routes
every checked port access to the one device whose window holds the port.  A
device never touches another device, the kernel, or a driver: it reaches the
rest of the machine only through the three handles it is given at
construction:

* ``irq``: an ``IrqLine`` for each interrupt line it drives (the 8259 pair sits
  behind it);
* ``dma``: a ``DmaPort`` through the IOMMU, which refuses any physical range
  the device's driver has not granted to it;
* ``clock``: a zero-argument callable returning monotonic seconds, so timers
  (PIT, ATA busy time, the printer's ACK pulse) are testable with a fake clock.

Devices are single-threaded: the board calls ``io_read``/``io_write`` and
``poll`` from its one loop, and ``poll`` is also where a device takes frames
or bytes from its host backend.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Clock = Callable[[], float]


class DmaFault(Exception):
    """A DMA transfer the IOMMU refused.  The device treats it like a bus error."""


class IrqLine(Protocol):
    """One interrupt request line into the 8259 pair."""

    def set_level(self, level: bool) -> None:
        """Drive the line high (True) or low (False); the PIC latches rising edges."""


class DmaPort(Protocol):
    """A device's view of physical memory through the IOMMU."""

    def read(self, addr: int, length: int) -> bytes:
        """Read physical memory; raises DmaFault if not granted to this device."""

    def write(self, addr: int, data: bytes) -> None:
        """Write physical memory; raises DmaFault if not granted to this device."""


class Device:
    """Base class: a name, the port windows it decodes, and the access hooks."""

    name = "device"
    #: (base, length) port windows this device answers.
    ports: tuple[tuple[int, int], ...] = ()

    def io_read(self, port: int, size: int) -> int:
        """Read ``size`` (1, 2 or 4) bytes at ``port``; unmapped bits read as 1s."""
        return (1 << (8 * size)) - 1

    def io_write(self, port: int, size: int, value: int) -> None:
        """Write ``size`` bytes of ``value`` at ``port``."""

    def reset(self) -> None:
        """Power-on reset."""

    def poll(self) -> None:
        """Advance timers and take input from the host backend; called every board loop turn."""

    def next_deadline(self) -> float | None:
        """The clock time at which ``poll`` next has work, or None if only I/O wakes it."""
        return None

    def fileno(self) -> int | None:
        """A host fd the board should wait on (a UDP socket, a TAP fd, a pty), or None."""
        return None

    def close(self) -> None:
        """Release host resources (sockets, files)."""


class NullIrq:
    """An IRQ line connected to nothing (for device tests that do not look at interrupts)."""

    def __init__(self) -> None:
        self.level = False
        self.rises = 0

    def set_level(self, level: bool) -> None:
        if level and not self.level:
            self.rises += 1
        self.level = level
