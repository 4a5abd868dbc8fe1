"""LPT1 printer: the Centronics handshake, IRQ 7 on nACK, status faults, reset."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hw.device import NullIrq
from hw.lpt import ParallelPrinter
from tests.hw.conftest import Ports

DATA, STATUS, CONTROL = 0x378, 0x379, 0x37A


@pytest.fixture
def irq() -> NullIrq:
    return NullIrq()


@pytest.fixture
def paper(tmp_path: Path) -> Path:
    return tmp_path / "printout"


@pytest.fixture
def lpt(irq: NullIrq, paper: Path) -> Iterator[ParallelPrinter]:
    printer = ParallelPrinter(irq, paper)
    yield printer
    printer.close()


def minix_print(ports: Ports, text: bytes, irq: NullIrq | None = None) -> None:
    """MINIX's printer driver: check ready, data, strobe with IRQ enabled, release."""
    ports.outb(CONTROL, 0x08)  # SELECT IN, nINIT = 0: reset
    ports.outb(CONTROL, 0x0C)
    for byte in text:
        assert ports.inb(STATUS) & 0xB0 == 0x90
        ports.outb(DATA, byte)
        ports.outb(CONTROL, 0x1D)
        assert ports.inb(STATUS) & 0x80 == 0  # busy while STROBE is held
        ports.outb(CONTROL, 0x1C)
        if irq is not None:
            assert irq.level  # the nACK rising edge
    ports.outb(CONTROL, 0x0C)


def test_reset_state(lpt: ParallelPrinter) -> None:
    ports = Ports(lpt)
    assert (ports.inb(DATA), ports.inb(STATUS), ports.inb(CONTROL)) == (0xFF, 0xD8, 0xCC)


def test_handshake_prints_every_byte_once(lpt: ParallelPrinter, irq: NullIrq,
                                          paper: Path) -> None:
    text = b"Hello, printer!\n\x00\xff"
    minix_print(Ports(lpt), text, irq)
    assert paper.read_bytes() == text
    assert lpt.printed == len(text)
    assert irq.rises == len(text)


def test_output_is_appended(irq: NullIrq, paper: Path) -> None:
    paper.write_bytes(b"old ")
    printer = ParallelPrinter(irq, paper)
    minix_print(Ports(printer), b"new")
    printer.close()
    assert paper.read_bytes() == b"old new"


def test_strobe_held_or_repeated_data_prints_once(lpt: ParallelPrinter, paper: Path) -> None:
    ports = Ports(lpt)
    ports.outb(DATA, ord("a"))
    ports.outb(CONTROL, 0x0D)
    ports.outb(CONTROL, 0x0D)
    ports.outb(DATA, ord("b"))  # changed while strobed: the latched byte counts
    ports.outb(CONTROL, 0x0C)
    ports.outb(CONTROL, 0x0C)
    assert paper.read_bytes() == b"a"


def test_irq_only_with_control_bit4(lpt: ParallelPrinter, irq: NullIrq) -> None:
    ports = Ports(lpt)
    ports.outb(DATA, ord("x"))
    ports.outb(CONTROL, 0x0D)
    ports.outb(CONTROL, 0x0C)
    assert irq.rises == 0
    ports.outb(CONTROL, 0x1C)  # enabling alone raises nothing
    assert irq.rises == 0
    ports.outb(CONTROL, 0x1D)
    ports.outb(CONTROL, 0x1C)
    assert irq.rises == 1 and irq.level
    ports.inb(STATUS)  # the status read acknowledges
    assert not irq.level


def test_ack_edge_after_strobe_release_with_irq_disabled_is_lost(lpt: ParallelPrinter,
                                                                  irq: NullIrq) -> None:
    ports = Ports(lpt)
    ports.outb(CONTROL, 0x1D)
    ports.outb(CONTROL, 0x0C)  # release and disable in one write
    assert irq.rises == 0


def test_paper_out_status_and_no_printing(lpt: ParallelPrinter, paper: Path) -> None:
    ports = Ports(lpt)
    lpt.paper_out = True
    status = ports.inb(STATUS)
    assert status & 0xB0 == 0x30  # busy, paper end, still on line
    assert status & 0x08 == 0  # nERROR asserted
    ports.outb(DATA, ord("p"))
    ports.outb(CONTROL, 0x1D)
    ports.outb(CONTROL, 0x1C)
    assert paper.read_bytes() == b""
    assert lpt.refused == 1
    lpt.paper_out = False
    assert ports.inb(STATUS) & 0xB8 == 0x98


def test_offline_status(lpt: ParallelPrinter) -> None:
    ports = Ports(lpt)
    lpt.offline = True
    status = ports.inb(STATUS)
    assert status & 0x10 == 0 and status & 0x08 == 0 and status & 0x80 == 0


def test_ninit_low_resets_the_printer(lpt: ParallelPrinter, irq: NullIrq,
                                      paper: Path) -> None:
    ports = Ports(lpt)
    ports.outb(DATA, ord("q"))
    ports.outb(CONTROL, 0x1D)
    ports.outb(CONTROL, 0x18)  # nINIT = 0 while the byte is latched: it is lost
    ports.outb(CONTROL, 0x19)  # strobes during reset are ignored
    ports.outb(CONTROL, 0x18)
    assert paper.read_bytes() == b""
    assert irq.rises == 0
    assert ports.inb(STATUS) == 0xD8


def test_no_select_in_no_printing(lpt: ParallelPrinter, paper: Path) -> None:
    ports = Ports(lpt)
    ports.outb(CONTROL, 0x05)
    ports.outb(CONTROL, 0x04)
    assert paper.read_bytes() == b""


def test_control_reads_bits_7_6_set_and_dir_floats_data(lpt: ParallelPrinter) -> None:
    ports = Ports(lpt)
    ports.outb(DATA, 0x12)
    ports.outb(CONTROL, 0x2C)
    assert ports.inb(CONTROL) == 0xEC
    assert ports.inb(DATA) == 0xFF
    ports.outb(CONTROL, 0x0C)
    assert ports.inb(DATA) == 0x12
