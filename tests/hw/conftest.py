"""Shared fakes for the device-model tests: a settable clock and port helpers."""
from __future__ import annotations

import pytest

from hw.device import Device


class FakeClock:
    """A ``hw.device.Clock`` that only moves when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Ports:
    """``inb``/``outb`` style access to one device, as the board would route it."""

    def __init__(self, device: Device) -> None:
        self.device = device

    def inb(self, port: int) -> int:
        return self.device.io_read(port, 1)

    def inw(self, port: int) -> int:
        return self.device.io_read(port, 2)

    def inl(self, port: int) -> int:
        return self.device.io_read(port, 4)

    def outb(self, port: int, value: int) -> None:
        self.device.io_write(port, 1, value)

    def outw(self, port: int, value: int) -> None:
        self.device.io_write(port, 2, value)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
