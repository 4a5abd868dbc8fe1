"""Shared fakes for the PCI, RTL8139 and wire tests (imported explicitly; not a pytest conftest).

* ``MemoryDma``: physical memory behind an IOMMU that grants only listed ranges.
* ``PortSpace``: the board's port routing, reduced to what a driver does (inb/outl...).
* ``Driver``: a register-level RTL8139 driver following the sheet (1.5, 1.6, 1.9),
  so the tests read like the driver code they stand for.
* ``wait_for``: poll devices until a condition holds, waiting on their fds with a deadline.
"""
from __future__ import annotations

import random
import select
import struct
import time
from collections.abc import Callable, Iterable

from hw import rtl8139_regs as regs
from hw.device import Device, DmaFault, IrqLine, NullIrq
from hw.pci import PCI_COMMAND, PCI_COMMAND_IO, PCI_COMMAND_MASTER, PciBus, host_bridge
from hw.rtl8139 import Rtl8139
from hw.wire import Wire

NIC_MAC = bytes.fromhex("525400123456")
PEER_MAC = bytes.fromhex("020000000002")
RING_PHYS = 0x10000
TXBUF_PHYS = 0x40000
TXBUF_SIZE = 0x800


class MemoryDma:
    """A bytearray of physical memory; accesses outside the granted ranges raise DmaFault."""

    def __init__(self, size: int = 0x80000) -> None:
        self.memory = bytearray(size)
        self.granted: list[tuple[int, int]] = []
        self.faults = 0

    def grant(self, addr: int, length: int) -> None:
        self.granted.append((addr, length))

    def revoke_all(self) -> None:
        self.granted.clear()

    def _check(self, addr: int, length: int) -> None:
        if not any(base <= addr and addr + length <= base + size for base, size in self.granted):
            self.faults += 1
            raise DmaFault(f"DMA to {addr:#x}+{length} not granted")

    def read(self, addr: int, length: int) -> bytes:
        self._check(addr, length)
        return bytes(self.memory[addr:addr + length])

    def write(self, addr: int, data: bytes) -> None:
        self._check(addr, len(data))
        self.memory[addr:addr + len(data)] = data


class PortSpace:
    """Routes port accesses to the device whose window (read afresh each time) holds the port."""

    def __init__(self, devices: Iterable[Device]) -> None:
        self.devices = list(devices)

    def _device(self, port: int) -> Device | None:
        for device in self.devices:
            if any(base <= port < base + length for base, length in device.ports):
                return device
        return None

    def read(self, port: int, size: int) -> int:
        device = self._device(port)
        return (1 << (8 * size)) - 1 if device is None else device.io_read(port, size)

    def write(self, port: int, size: int, value: int) -> None:
        device = self._device(port)
        if device is not None:
            device.io_write(port, size, value)

    def config_read(self, dev: int, reg: int, size: int, fn: int = 0) -> int:
        self.write(0xCF8, 4, 0x80000000 | dev << 11 | fn << 8 | (reg & 0xFC))
        return self.read(0xCFC + (reg & 3), size)

    def config_write(self, dev: int, reg: int, size: int, value: int, fn: int = 0) -> None:
        self.write(0xCF8, 4, 0x80000000 | dev << 11 | fn << 8 | (reg & 0xFC))
        self.write(0xCFC + (reg & 3), size, value)


class Driver:
    """What a minimal RTL8139 driver does, written against ports only."""

    def __init__(self, ports: PortSpace, base: int, dma: MemoryDma, ring_size: int = 8192) -> None:
        self.ports, self.base, self.dma, self.ring_size = ports, base, dma, ring_size
        self.tx_next = 0

    def inb(self, reg: int) -> int:
        return self.ports.read(self.base + reg, 1)

    def inw(self, reg: int) -> int:
        return self.ports.read(self.base + reg, 2)

    def inl(self, reg: int) -> int:
        return self.ports.read(self.base + reg, 4)

    def outb(self, reg: int, value: int) -> None:
        self.ports.write(self.base + reg, 1, value)

    def outw(self, reg: int, value: int) -> None:
        self.ports.write(self.base + reg, 2, value)

    def outl(self, reg: int, value: int) -> None:
        self.ports.write(self.base + reg, 4, value)

    def init(self, rcr: int, imr: int = regs.ISR_ROK | regs.ISR_TOK, slack: int = 0) -> None:
        """Sheet 1.9: bus master, reset, ring, descriptors, IMR, RE|TE, RCR, TCR."""
        rblen = {8192: 0, 16384: 1, 32768: 2, 65536: 3}[self.ring_size]
        self.dma.grant(RING_PHYS, self.ring_size + slack)
        self.dma.grant(TXBUF_PHYS, 4 * TXBUF_SIZE)
        self.ports.config_write(3, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MASTER)
        self.outb(regs.CR, regs.CR_RST)
        deadline = time.monotonic() + 1.0
        while self.inb(regs.CR) & regs.CR_RST and time.monotonic() < deadline:
            pass
        self.outl(regs.RBSTART, RING_PHYS)
        for n in range(4):
            self.outl(regs.TSAD0 + 4 * n, TXBUF_PHYS + n * TXBUF_SIZE)
        self.outw(regs.IMR, imr)
        self.outb(regs.CR, regs.CR_RE | regs.CR_TE)
        self.outl(regs.RCR, rcr | rblen << regs.RCR_RBLEN_SHIFT)
        self.outl(regs.TCR, self.inl(regs.TCR) | regs.TCR_IFG)
        self.tx_next = 0

    def send(self, frame: bytes) -> int:
        """Copy ``frame`` into the next descriptor's buffer and start it; returns the descriptor."""
        n = self.tx_next
        buffer = TXBUF_PHYS + n * TXBUF_SIZE
        self.dma.memory[buffer:buffer + len(frame)] = frame
        self.outl(regs.TSD0 + 4 * n, len(frame))
        self.tx_next = (n + 1) % 4
        return n

    def receive_all(self) -> list[tuple[int, bytes]]:
        """The sheet's driver loop (MINIX rl_recv): (header status, frame with CRC) per packet."""
        ring = self.dma.memory
        size = self.ring_size
        packets: list[tuple[int, bytes]] = []
        while not self.inb(regs.CR) & regs.CR_BUFE:
            off = (self.inw(regs.CAPR) + 16) % size
            header = struct.unpack_from("<I", ring, RING_PHYS + off)[0]
            status, length = header & 0xFFFF, header >> 16
            if not status & regs.RXHDR_ROK or length < 8 or length > 2 * 1518:
                raise AssertionError(f"bad ring header {header:#010x} at {off}")
            start = (off + 4) % size
            if start + length <= size:
                data = bytes(ring[RING_PHYS + start:RING_PHYS + start + length])
            else:
                first = size - start
                data = bytes(ring[RING_PHYS + start:RING_PHYS + size]
                             + ring[RING_PHYS:RING_PHYS + length - first])
            packets.append((status, data))
            off = ((off + 4 + length + 3) & ~3) % size
            self.outw(regs.CAPR, (off - 16) & 0xFFFF)
        return packets


def make_nic(dma: MemoryDma, wire: Wire | None = None, irq: IrqLine | None = None,
             io_base: int = regs.DEFAULT_IO_BASE, rng: random.Random | None = None,
             ) -> tuple[Rtl8139, PortSpace]:
    """A board with a host bridge at 00:00.0 and the NIC at 00:03.0."""
    nic = Rtl8139(irq=irq or NullIrq(), dma=dma, wire=wire, clock=time.monotonic,
                  mac=NIC_MAC, io_base=io_base, rng=rng)
    bus = PciBus()
    bus.attach(0, 0, host_bridge())
    bus.attach(3, 0, nic)
    return nic, PortSpace([bus, nic])


def ethernet(dest: bytes, payload: bytes, source: bytes = PEER_MAC, ethertype: int = 0x88B5) -> bytes:
    """An Ethernet frame (no FCS); 0x88B5 is the IEEE 'local experimental' ethertype."""
    return dest + source + ethertype.to_bytes(2, "big") + payload


def wait_for(condition: Callable[[], bool], devices: Iterable[Device], timeout: float = 2.0) -> bool:
    """Poll ``devices`` until ``condition()`` holds; wait on their fds, never a bare sleep."""
    devices = list(devices)
    deadline = time.monotonic() + timeout
    while True:
        for device in devices:
            device.poll()
        if condition():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        fds = [fd for fd in (device.fileno() for device in devices) if fd is not None]
        select.select(fds, [], [], min(remaining, 0.05))
