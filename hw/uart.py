"""16550A UART, COM1 at 0x3F8-0x3FF on IRQ 4 (runs in the board process).

Role: the console line.  The guest's tty driver programs the registers; the
other end of the line is a host backend a person can attach to: a pseudo
terminal (``PtyBackend``, attach with ``screen`` / ``picocom`` to its
``path``) or a Unix stream socket in a run directory (``SocketBackend``, one
client at a time, e.g. ``socat - UNIX-CONNECT:<path>``).

What is modelled (QEMU ``hw/char/serial.c`` semantics, spec sheet 3): DLAB and
the divisor latch, IER (low four bits), IIR with its four priorities and the
FIFO-enabled bits, FCR (enable, clears, trigger level 1/4/8/14, 16-byte FIFOs),
LCR, MCR with loopback, LSR (DR, OE, THRE, TEMT), MSR reporting CTS|DSR|DCD
(0xB0, so a driver with RTS/CTS flow control transmits), and SCR.  The IRQ
line is "some enabled source pending", recomputed after every access.  Writing
IER with ETBEI while THRE is set raises the THRE interrupt at once (drivers
rely on it to start output).  The character timeout (CTI) fires four
character times after the last FIFO activity, timed by the injected clock.

Choices:

* transmission is instantaneous: a byte written to THR is handed to the
  backend at once and THRE/TEMT are set again (QEMU); with no client attached,
  or a backend that cannot take more, the byte is dropped and counted, like
  a line with nothing on its other end;
* input is paced by the UART: host bytes wait in a bounded host-side buffer
  and enter RBR / the Rx FIFO only when there is room, so the host never
  overruns the guest (QEMU's ``can_receive``); OE arises in loopback;
* parity, framing and break errors never happen on this line;
* MCR OUT2 does not gate the IRQ (QEMU); on a real PC board it does.
"""
from __future__ import annotations

import os
import select
import socket
import tty
from collections import deque
from pathlib import Path
from typing import Protocol

from hw.device import Clock, Device, IrqLine
from minikern import params

COM1_BASE = 0x3F8
COM1_IRQ = 4
UART_CLOCK_DIVISOR_BASE = 115200  # 1.8432 MHz / 16
FIFO_DEPTH = 16
HOST_RX_LIMIT = 4096  # bytes buffered from the host; beyond, what arrives is dropped (counted)
HOST_TX_LIMIT = 64 * 1024  # bytes a socket backend holds for a client slower than the line

# Register offsets from the base
RBR = THR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7
# IER
IER_ERBFI = 0x01  # received data available
IER_ETBEI = 0x02  # THR empty
IER_ELSI = 0x04  # receiver line status
IER_EDSSI = 0x08  # modem status
IER_MASK = 0x0F
# IIR
IIR_NO_INT = 0x01
IIR_MSI = 0x00
IIR_THRI = 0x02
IIR_RDI = 0x04
IIR_RLSI = 0x06
IIR_CTI = 0x0C
IIR_ID_MASK = 0x0F
IIR_FIFO_ENABLED = 0xC0
# FCR
FCR_ENABLE = 0x01
FCR_CLEAR_RX = 0x02
FCR_CLEAR_TX = 0x04
FCR_DMA = 0x08
FCR_TRIGGER_SHIFT = 6
FCR_STORED = 0xC9
RX_TRIGGER_LEVELS = (1, 4, 8, 14)
# LCR
LCR_WORD_LENGTH = 0x03
LCR_STOP_BITS = 0x04
LCR_PARITY = 0x08
LCR_DLAB = 0x80
# MCR
MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08
MCR_LOOP = 0x10
MCR_MASK = 0x1F
# LSR
LSR_DR = 0x01
LSR_OE = 0x02
LSR_PE = 0x04
LSR_FE = 0x08
LSR_BI = 0x10
LSR_THRE = 0x20
LSR_TEMT = 0x40
LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI
# MSR
MSR_DELTAS = 0x0F
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80

RESET_DIVISOR = 12  # 9600 baud
RESET_MCR = MCR_OUT2
RESET_LSR = LSR_THRE | LSR_TEMT
RESET_MSR = MSR_DCD | MSR_DSR | MSR_CTS


class SerialBackend(Protocol):
    """The host end of the line; every call is non-blocking."""

    path: str

    def fileno(self) -> int: ...

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes the host sent, b'' if none now."""

    def write(self, data: bytes) -> int:
        """Send what the host can take now; returns the number of bytes taken."""

    def close(self) -> None: ...


class PtyBackend:
    """A pseudo terminal; ``path`` is the slave side a person attaches to."""

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        # Raw mode so bytes pass unchanged; the slave stays open here so that
        # the master does not see EIO while nobody is attached.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)

    def fileno(self) -> int:
        return self._master

    def read(self, limit: int) -> bytes:
        try:
            return os.read(self._master, limit)
        except OSError:  # nothing now (EAGAIN) or a hung-up line (EIO): no input
            return b""

    def write(self, data: bytes) -> int:
        try:
            return os.write(self._master, data)
        except OSError:  # pty buffer full with nobody reading: the byte is lost
            return 0

    def close(self) -> None:
        os.close(self._master)
        os.close(self._slave)


class SocketBackend:
    """A listening Unix stream socket ``<directory>/<name>``; one client at a time.

    ``fileno()`` is an epoll descriptor watching the listener and the client,
    so the board waits on one fd whichever of the two has work.  A second
    client is accepted and closed at once (counted in ``refused``).

    Output for the client is held in a buffer of up to HOST_TX_LIMIT bytes and
    sent as the socket takes it (the epoll also watches the client for room
    while some waits, so the board comes back to flush it): the UART hands
    over one byte at a time, and a Unix socket's buffer is charged per send,
    so a client that reads a few milliseconds late would otherwise lose
    output after a few hundred bytes.  Beyond the buffer, bytes are refused
    (the UART counts them dropped).
    """

    def __init__(self, directory: str | os.PathLike[str], name: str = params.COM1_SOCKET) -> None:
        self.path = str(Path(directory) / name)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        Path(self.path).unlink(missing_ok=True)  # left behind by a board that died
        self._listener.bind(self.path)
        self._listener.listen(1)
        self._listener.setblocking(False)
        self._epoll = select.epoll()
        self._epoll.register(self._listener.fileno(), select.EPOLLIN)
        self._client: socket.socket | None = None
        self._out = bytearray()  # output the client's socket has not taken yet
        self._watching_room = False
        self.refused = 0

    def fileno(self) -> int:
        return self._epoll.fileno()

    @property
    def connected(self) -> bool:
        return self._client is not None

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if self._client is not None:
            client.close()
            self.refused += 1
            return
        client.setblocking(False)
        self._client = client
        self._epoll.register(client.fileno(), select.EPOLLIN)

    def _drop_client(self) -> None:
        if self._client is not None:
            self._epoll.unregister(self._client.fileno())
            self._client.close()
            self._client = None
        self._out.clear()
        self._watching_room = False

    def _flush(self) -> None:
        """Send what the client's socket takes now; watch it for room while output waits."""
        if self._client is None:
            return
        if self._out:
            try:
                del self._out[:self._client.send(self._out)]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._drop_client()
                return
        if bool(self._out) != self._watching_room:
            self._watching_room = bool(self._out)
            self._epoll.modify(self._client.fileno(),
                               select.EPOLLIN | (select.EPOLLOUT if self._out else 0))

    def read(self, limit: int) -> bytes:
        self._accept()
        self._flush()
        if self._client is None:
            return b""
        try:
            data = self._client.recv(limit)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            data = b""
        if not data:
            self._drop_client()
        return data

    def write(self, data: bytes) -> int:
        self._accept()
        if self._client is None:
            return 0
        taken = data[:HOST_TX_LIMIT - len(self._out)]
        self._out += taken
        self._flush()
        return len(taken)

    def close(self) -> None:
        self._drop_client()
        self._epoll.close()
        self._listener.close()
        Path(self.path).unlink(missing_ok=True)


class Uart16550(Device):
    """COM1.  ``backend`` may be None: output is then dropped, input only via ``receive``."""

    name = "uart"
    ports = ((COM1_BASE, 8),)

    def __init__(self, irq: IrqLine, clock: Clock, backend: SerialBackend | None = None,
                 base: int = COM1_BASE) -> None:
        self._irq = irq
        self._clock = clock
        self.backend = backend
        self.base = base
        self.ports = ((base, 8),)
        self._host_rx = bytearray()
        self.rx_fifo: deque[int] = deque()
        self.tx_dropped = 0  # bytes sent with nothing taking them on the host side
        self.rx_dropped = 0  # host bytes beyond HOST_RX_LIMIT
        self.bad_accesses = 0
        self.reset()

    def reset(self) -> None:
        self.rbr = 0
        self.ier = 0
        self.iir = IIR_NO_INT
        self.fcr = 0
        self.lcr = 0
        self.mcr = RESET_MCR
        self.lsr = RESET_LSR
        self.msr = RESET_MSR
        self.scr = 0
        self.divisor = RESET_DIVISOR
        self.rx_fifo.clear()
        self._rx_trigger = 1
        self._thr_pending = False
        self._timeout_pending = False
        self._timeout_at: float | None = None
        self._char_time = self._compute_char_time()
        self._update_irq()

    @property
    def fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_ENABLE)

    def _compute_char_time(self) -> float:
        """Seconds per character: start + data + parity + stop bits at the divisor's rate."""
        bits = 1 + 5 + (self.lcr & LCR_WORD_LENGTH) + (1 if self.lcr & LCR_PARITY else 0)
        bits += 2 if self.lcr & LCR_STOP_BITS else 1
        return bits * self.divisor / UART_CLOCK_DIVISOR_BASE

    def _update_irq(self) -> None:
        """Recompute IIR from the pending sources in priority order, and the IRQ level."""
        source = IIR_NO_INT
        if self.ier & IER_ELSI and self.lsr & LSR_ERRORS:
            source = IIR_RLSI
        elif self.ier & IER_ERBFI and self._timeout_pending:
            source = IIR_CTI
        elif self.ier & IER_ERBFI and self.lsr & LSR_DR and (
                not self.fifo_enabled or len(self.rx_fifo) >= self._rx_trigger):
            source = IIR_RDI
        elif self.ier & IER_ETBEI and self._thr_pending:
            source = IIR_THRI
        elif self.ier & IER_EDSSI and self.msr & MSR_DELTAS:
            source = IIR_MSI
        self.iir = source | (IIR_FIFO_ENABLED if self.fifo_enabled else 0)
        self._irq.set_level(source != IIR_NO_INT)

    # Receive path
    def receive(self, data: bytes) -> None:
        """Bytes arriving on the line from the host side (also used by loopback)."""
        room = max(0, HOST_RX_LIMIT - len(self._host_rx))
        self.rx_dropped += max(0, len(data) - room)
        self._host_rx += data[:room]
        self._pump_rx()

    def _pump_rx(self) -> None:
        """Move host bytes into RBR / the Rx FIFO while the UART has room.

        In loopback the receiver hears only the transmitter, so host bytes wait.
        """
        if self.mcr & MCR_LOOP:
            return
        moved = False
        while self._host_rx and (len(self.rx_fifo) < FIFO_DEPTH if self.fifo_enabled
                                 else not self.lsr & LSR_DR):
            self._line_in(self._host_rx.pop(0))
            moved = True
        if moved:
            self._update_irq()

    def _line_in(self, byte: int) -> None:
        """One character completes in the receiver shift register."""
        if self.fifo_enabled:
            if len(self.rx_fifo) >= FIFO_DEPTH:
                self.lsr |= LSR_OE
            else:
                self.rx_fifo.append(byte)
            self._timeout_at = self._clock() + 4 * self._char_time
        else:
            if self.lsr & LSR_DR:
                self.lsr |= LSR_OE
            self.rbr = byte
        self.lsr |= LSR_DR

    def _read_rbr(self) -> int:
        if self.fifo_enabled:
            value = self.rx_fifo.popleft() if self.rx_fifo else 0
            if self.rx_fifo:
                self._timeout_at = self._clock() + 4 * self._char_time
            else:
                self.lsr &= ~(LSR_DR | LSR_BI)
                self._timeout_at = None
            self._timeout_pending = False
        else:
            value = self.rbr
            self.lsr &= ~(LSR_DR | LSR_BI)
        self._update_irq()
        self._pump_rx()
        return value

    # Transmit path
    def _write_thr(self, byte: int) -> None:
        self._thr_pending = False
        self.lsr &= ~(LSR_THRE | LSR_TEMT)
        self._update_irq()
        if self.mcr & MCR_LOOP:
            self._line_in(byte)
        elif self.backend is None or self.backend.write(bytes([byte])) != 1:
            self.tx_dropped += 1
        self.lsr |= LSR_THRE | LSR_TEMT
        self._thr_pending = True
        self._update_irq()

    def _write_fcr(self, value: int) -> None:
        if (value ^ self.fcr) & FCR_ENABLE:
            value |= FCR_CLEAR_RX | FCR_CLEAR_TX
        if value & FCR_CLEAR_RX:
            self.lsr &= ~(LSR_DR | LSR_BI)
            self.rx_fifo.clear()
            self._timeout_pending = False
            self._timeout_at = None
        if value & FCR_CLEAR_TX:
            self.lsr |= LSR_THRE
            self._thr_pending = True
        self.fcr = value & FCR_STORED
        self._rx_trigger = RX_TRIGGER_LEVELS[value >> FCR_TRIGGER_SHIFT]
        self._update_irq()
        self._pump_rx()

    def _write_ier(self, value: int) -> None:
        changed = (self.ier ^ value) & IER_MASK
        self.ier = value & IER_MASK
        if changed & IER_ETBEI:
            # QEMU / Bochs: enabling ETBEI re-samples THRE, so it interrupts at once.
            self._thr_pending = bool(self.ier & IER_ETBEI and self.lsr & LSR_THRE)
        self._update_irq()

    def _read_msr(self) -> int:
        if self.mcr & MCR_LOOP:
            return ((self.mcr & (MCR_OUT1 | MCR_OUT2)) << 4 | (self.mcr & MCR_RTS) << 3
                    | (self.mcr & MCR_DTR) << 5)
        value = self.msr
        self.msr &= ~MSR_DELTAS
        self._update_irq()
        return value

    def io_read(self, port: int, size: int) -> int:
        offset = port - self.base
        if size != 1 or not 0 <= offset < 8:
            self.bad_accesses += 1
            return (1 << (8 * size)) - 1
        dlab = self.lcr & LCR_DLAB
        if offset == RBR:
            return self.divisor & 0xFF if dlab else self._read_rbr()
        if offset == IER:
            return self.divisor >> 8 if dlab else self.ier
        if offset == IIR:
            value = self.iir
            if value & IIR_ID_MASK == IIR_THRI:
                self._thr_pending = False
                self._update_irq()
            return value
        if offset == LCR:
            return self.lcr
        if offset == MCR:
            return self.mcr
        if offset == LSR:
            value = self.lsr
            if self.lsr & (LSR_OE | LSR_BI):
                self.lsr &= ~(LSR_OE | LSR_BI)
                self._update_irq()
            return value
        if offset == MSR:
            return self._read_msr()
        return self.scr

    def io_write(self, port: int, size: int, value: int) -> None:
        offset = port - self.base
        if size != 1 or not 0 <= offset < 8:
            self.bad_accesses += 1
            return
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if offset == THR and dlab:
            self._set_divisor(self.divisor & 0xFF00 | value)
        elif offset == THR:
            self._write_thr(value)
        elif offset == IER and dlab:
            self._set_divisor(self.divisor & 0x00FF | value << 8)
        elif offset == IER:
            self._write_ier(value)
        elif offset == FCR:
            self._write_fcr(value)
        elif offset == LCR:
            self.lcr = value
            self._char_time = self._compute_char_time()
        elif offset == MCR:
            self.mcr = value & MCR_MASK
            self._pump_rx()
        elif offset == SCR:
            self.scr = value
        # LSR and MSR writes are ignored

    def _set_divisor(self, divisor: int) -> None:
        self.divisor = divisor
        if divisor:  # divisor 0 stops the baud generator; keep the last character time
            self._char_time = self._compute_char_time()

    @property
    def baud(self) -> float:
        return UART_CLOCK_DIVISOR_BASE / self.divisor if self.divisor else 0.0

    # Board side
    def next_deadline(self) -> float | None:
        return None if self._timeout_pending else self._timeout_at

    def poll(self) -> None:
        if self.backend is not None:
            room = HOST_RX_LIMIT - len(self._host_rx)
            if room > 0:
                self._host_rx += self.backend.read(room)
            else:  # full: drop what the line brings, as one without flow control would
                self.rx_dropped += len(self.backend.read(HOST_RX_LIMIT))
            self._pump_rx()
        if (self._timeout_at is not None and not self._timeout_pending
                and self._clock() >= self._timeout_at and self.rx_fifo):
            self._timeout_pending = True
            self._timeout_at = None
            self._update_irq()

    def fileno(self) -> int | None:
        return self.backend.fileno() if self.backend is not None else None

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
