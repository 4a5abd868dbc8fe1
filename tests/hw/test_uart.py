"""16550A UART: registers, interrupt priorities, FIFO, loopback, host backends."""
from __future__ import annotations

import os
import select
import socket
from pathlib import Path

import pytest

from hw.device import NullIrq
from hw.uart import PtyBackend, SocketBackend, Uart16550
from tests.hw.conftest import FakeClock, Ports

BASE = 0x3F8
THR = RBR = DLL = BASE
IER = DLM = BASE + 1
IIR = FCR = BASE + 2
LCR, MCR, LSR, MSR, SCR = BASE + 3, BASE + 4, BASE + 5, BASE + 6, BASE + 7


@pytest.fixture
def irq() -> NullIrq:
    return NullIrq()


@pytest.fixture
def uart(irq: NullIrq, clock: FakeClock) -> Uart16550:
    return Uart16550(irq, clock)


@pytest.fixture
def ports(uart: Uart16550) -> Ports:
    return Ports(uart)


def wait_readable(fd: int) -> None:
    """Wait (with a deadline, not a sleep) until the host side has data."""
    readable, _, _ = select.select([fd], [], [], 2.0)
    assert readable, "no data within 2 s"


def read_exactly(fd: int, n: int) -> bytes:
    """A pty may hand over written bytes in pieces: collect n of them, with a deadline."""
    data = b""
    while len(data) < n:
        wait_readable(fd)
        data += os.read(fd, n - len(data))
    return data


def test_reset_values(ports: Ports) -> None:
    assert [ports.inb(p) for p in (IER, IIR, LCR, MCR, LSR, MSR, SCR)] == [
        0x00, 0x01, 0x00, 0x08, 0x60, 0xB0, 0x00]


def test_dlab_divisor_latch(uart: Uart16550, ports: Ports) -> None:
    ports.outb(LCR, 0x80)
    ports.outb(DLL, 0x03)
    ports.outb(DLM, 0x00)
    assert (ports.inb(DLL), ports.inb(DLM)) == (0x03, 0x00)
    ports.outb(LCR, 0x03)
    assert uart.baud == 38400
    assert ports.inb(IER) == 0x00  # DLAB off: the real IER again
    ports.outb(SCR, 0x5A)
    assert ports.inb(SCR) == 0x5A


def test_enabling_etbei_with_thre_set_interrupts_at_once(irq: NullIrq, ports: Ports) -> None:
    ports.outb(IER, 0x02)
    assert irq.level and irq.rises == 1
    assert ports.inb(IIR) == 0x02
    assert not irq.level  # reading IIR while it reports THRE clears it
    assert ports.inb(IIR) == 0x01
    ports.outb(IER, 0x00)
    ports.outb(IER, 0x02)  # MINIX's IER 0 -> non-zero step forces a fresh edge
    assert irq.rises == 2


def test_thr_write_sends_and_reinterrupts(irq: NullIrq, ports: Ports) -> None:
    ports.outb(IER, 0x02)
    ports.inb(IIR)
    ports.outb(THR, ord("x"))
    assert irq.rises == 2  # transmitted instantly: THRE again
    assert ports.inb(LSR) & 0x60 == 0x60


def test_iir_priority_order(uart: Uart16550, irq: NullIrq, ports: Ports) -> None:
    ports.outb(MCR, 0x18)  # loopback
    ports.outb(THR, 0x41)
    ports.outb(THR, 0x42)  # FIFO off: the second byte overruns the first
    ports.outb(IER, 0x0F)
    assert ports.inb(IIR) == 0x06  # line status first
    assert ports.inb(LSR) & 0x03 == 0x03  # DR | OE; the read clears OE
    assert ports.inb(IIR) == 0x04  # then received data
    assert ports.inb(RBR) == 0x42
    assert ports.inb(IIR) == 0x02  # then THR empty
    assert ports.inb(IIR) == 0x01
    assert not irq.level


def test_loopback_keeps_bytes_off_the_backend(uart: Uart16550, ports: Ports) -> None:
    ports.outb(MCR, 0x1B)  # loop | OUT2 | RTS | DTR
    ports.outb(THR, 0x99)
    assert ports.inb(LSR) & 0x01
    assert ports.inb(RBR) == 0x99
    assert ports.inb(MSR) == 0xB0  # DCD<-OUT2, CTS<-RTS, DSR<-DTR
    ports.outb(MCR, 0x14)  # loop | OUT1
    assert ports.inb(MSR) == 0x40  # RI<-OUT1
    assert uart.tx_dropped == 0


def test_receive_without_fifo_sets_dr_and_interrupts(uart: Uart16550, irq: NullIrq,
                                                     ports: Ports) -> None:
    ports.outb(IER, 0x01)
    uart.receive(b"ab")
    assert irq.level
    assert ports.inb(IIR) == 0x04
    assert ports.inb(RBR) == ord("a")
    assert ports.inb(LSR) & 0x03 == 0x01  # "b" landed after the read; no overrun
    assert ports.inb(RBR) == ord("b")
    assert ports.inb(LSR) & 0x01 == 0
    assert not irq.level


def test_fifo_trigger_level_and_character_timeout(uart: Uart16550, irq: NullIrq,
                                                  clock: FakeClock, ports: Ports) -> None:
    ports.outb(LCR, 0x03)  # 8N1: 10 bits per character
    ports.outb(FCR, 0x87)  # enable, clear both, trigger 8
    ports.outb(IER, 0x01)
    uart.receive(b"1234567")
    assert ports.inb(IIR) == 0xC1  # FIFO bits, nothing pending below the trigger
    uart.receive(b"8")
    assert ports.inb(IIR) == 0xC4
    assert irq.level
    ports.inb(RBR)
    assert ports.inb(IIR) == 0xC1
    deadline = uart.next_deadline()
    assert deadline is not None
    assert deadline - clock() == pytest.approx(4 * 10 * 12 / 115200)  # 4 chars at 9600 8N1
    clock.now = deadline
    uart.poll()
    assert ports.inb(IIR) == 0xCC  # character timeout
    assert bytes(ports.inb(RBR) for _ in range(7)) == b"2345678"
    assert ports.inb(IIR) == 0xC1
    assert ports.inb(LSR) & 0x01 == 0


def test_fifo_holds_16_and_host_input_waits(uart: Uart16550, ports: Ports) -> None:
    ports.outb(FCR, 0x01)
    data = bytes(range(40))
    uart.receive(data)
    assert len(uart.rx_fifo) == 16
    assert bytes(ports.inb(RBR) for _ in range(40)) == data
    assert ports.inb(LSR) & 0x03 == 0  # no overrun: the host was paced


def test_fifo_clear_and_disable(uart: Uart16550, ports: Ports) -> None:
    ports.outb(FCR, 0x01)
    uart.receive(b"xyz")
    ports.outb(FCR, 0x03)  # clear Rx
    assert ports.inb(LSR) & 0x01 == 0
    ports.outb(FCR, 0x00)
    assert ports.inb(IIR) & 0xC0 == 0


def test_wide_access_is_counted(uart: Uart16550) -> None:
    assert uart.io_read(LSR, 2) == 0xFFFF
    uart.io_write(THR, 2, 0x4141)
    assert uart.bad_accesses == 2 and uart.tx_dropped == 0


def test_pty_backend_carries_both_directions(irq: NullIrq, clock: FakeClock) -> None:
    backend = PtyBackend()
    uart = Uart16550(irq, clock, backend)
    ports = Ports(uart)
    peer = os.open(backend.path, os.O_RDWR | os.O_NOCTTY)
    try:
        for byte in b"ok\n":
            ports.outb(THR, byte)
        assert read_exactly(peer, 3) == b"ok\n"
        os.write(peer, b"hi")
        wait_readable(uart.fileno() or -1)
        uart.poll()
        assert ports.inb(RBR) == ord("h")
        assert ports.inb(RBR) == ord("i")
    finally:
        os.close(peer)
        uart.close()


def test_socket_backend_one_client_at_a_time(tmp_path: Path, irq: NullIrq,
                                             clock: FakeClock) -> None:
    backend = SocketBackend(tmp_path)
    uart = Uart16550(irq, clock, backend)
    ports = Ports(uart)
    first = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    second = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        ports.outb(THR, ord("-"))  # nobody attached: dropped
        assert uart.tx_dropped == 1
        first.connect(backend.path)
        wait_readable(backend.fileno())
        uart.poll()
        assert backend.connected
        ports.outb(THR, ord("A"))
        wait_readable(first.fileno())
        assert first.recv(16) == b"A"
        first.sendall(b"Z")
        wait_readable(backend.fileno())
        uart.poll()
        assert ports.inb(RBR) == ord("Z")
        second.connect(backend.path)
        wait_readable(backend.fileno())
        uart.poll()
        assert backend.refused == 1
        wait_readable(second.fileno())
        assert second.recv(16) == b""  # closed at once
        first.close()
        wait_readable(backend.fileno())
        uart.poll()
        assert not backend.connected
    finally:
        first.close()
        second.close()
        uart.close()
    assert not Path(backend.path).exists()


def test_host_input_beyond_the_buffer_is_dropped_not_left_readable(
        irq: NullIrq, clock: FakeClock) -> None:
    """Nobody reads RBR while a person types on: the backend is drained (so the board's
    loop does not spin on a readable fd) and the excess is counted."""
    backend = PtyBackend()
    uart = Uart16550(irq, clock, backend)
    peer = os.open(backend.path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(peer, b"x" * 3000)
        wait_readable(uart.fileno() or -1)
        uart.poll()
        os.write(peer, b"y" * 3000)
        wait_readable(uart.fileno() or -1)
        for _ in range(10):
            uart.poll()
            if not select.select([uart.fileno() or -1], [], [], 0)[0]:
                break
        assert not select.select([uart.fileno() or -1], [], [], 0.05)[0]
        assert uart.rx_dropped >= 6000 - 4096 - 16
    finally:
        os.close(peer)


def test_socket_backend_holds_output_for_a_client_that_reads_late(
        tmp_path: Path, irq: NullIrq, clock: FakeClock) -> None:
    """One-byte sends fill a Unix socket's buffer after a few hundred; the backend keeps the
    rest (up to HOST_TX_LIMIT) and sends it when the socket has room again."""
    backend = SocketBackend(tmp_path)
    uart = Uart16550(irq, clock, backend)
    ports = Ports(uart)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(backend.path)
        wait_readable(backend.fileno())
        uart.poll()
        text = bytes(range(256)) * 40  # 10 KiB, nobody reading yet
        for b in text:
            ports.outb(THR, b)
        assert uart.tx_dropped == 0
        got = bytearray()
        while len(got) < len(text):
            readable, _, _ = select.select([client, backend.fileno()], [], [], 2.0)
            assert readable, f"stalled after {len(got)} bytes"
            if backend.fileno() in readable:
                uart.poll()  # the board's turn: room in the client's socket, flush
            if client in readable:
                got += client.recv(65536)
        assert bytes(got) == text
    finally:
        client.close()
        uart.close()
