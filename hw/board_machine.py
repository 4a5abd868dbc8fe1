"""The machine inside the board process: devices, port map, physical memory, IOMMU, firmware.

Runs only in the board (hw.board).  ``Machine`` owns every device model and
routes each port access to the device whose window holds the first byte of
the access; ports no device decodes read as all 1s and swallow writes, as on
an ISA bus.  The NIC's window follows its BAR0 and the IDE bus master's
(hw.ata_dma) its BAR4, so the map is rebuilt after every write to the PCI
configuration ports.  The machine checks nothing
about *who* accesses a port: the kernel (DEVIO) and the fast path
(hw.board_fastpath) check the caller's windows before calling ``read`` /
``write``; ``who`` is only recorded, so a refused DMA can be blamed on the
driver that last programmed the bus master (``dma_masters``).

Physical memory is not one big segment but one ``PhysicalMemory`` (memfd)
per memory window named in some driver's privileges, created at that
window's physical base the first time a driver maps it and kept for the
life of the board (the hardware outlives its driver: a restarted driver gets
the same pages back).  A driver is handed the memfds of exactly its own
windows, so it can never map memory outside them.  Windows must be equal or
disjoint: a window that partly overlaps an existing one is refused, since
two memfds cannot alias the same physical bytes.

Interrupt lines reach the 8259 pair through ``GatedLine``, the hook for the
"device stops raising interrupts" fault knob.  ``firmware`` programs the
PIC and PIT as a BIOS and MINIX's early kernel do (ICW1-4, all lines masked
but the cascade; counter 0 in mode 3 at ``hz``).  The clock's line stays
masked until someone asks for IRQ 0 (the kernel keeps its ``ticks`` from its
own clock): a masked PIT needs no timer on the board's loop, and the edges it
would have raised are caught up, into the IRR, before anything looks at the
PIC (``catch_up``), so what a program can observe is the same.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hw import pic as pic_regs
from hw import pit as pit_regs
from hw.ata import ATA_PRIMARY_IRQ, AtaChannel
from hw.ata_dma import PiixIde, isa_bridge
from hw.device import Clock, Device, IrqLine
from hw.lpt import LPT1_IRQ, ParallelPrinter
from hw.memory import Iommu, PhysicalMemory
from hw.pci import CONFIG_ADDRESS, PciBus, host_bridge
from hw.pic import PicPair
from hw.pit import Pit8254
from hw.rtl8139 import Rtl8139
from hw.rtl8139_regs import DEFAULT_MAC
from hw.uart import COM1_IRQ, SerialBackend, Uart16550
from hw.wire import Wire
from minikern import audit, params
from minikern.events import EventLog

PIIX_PCI_SLOT = 1  # 00:01.0 the PIIX3's ISA bridge, 00:01.1 its IDE function (as on a PC)
NIC_PCI_SLOT = 3
MAX_WINDOW = 64 * 1024 * 1024  # largest physical memory window the board backs
MAX_MEMORY = 256 * 1024 * 1024  # all windows together
PIC_EOI = 0x60  # OCW2 specific EOI, level in bits 2:0
DMA_DEVICES = ("rtl8139", "ata")  # devices a driver may grant memory to


class Audit:
    """The board's refusals as ``denied`` events (source hw), rate-limited as the kernel's
    are (minikern/audit.py)."""

    def __init__(self, run_dir: Path, clock: Clock = time.monotonic) -> None:
        self.events = EventLog(run_dir, "hw")
        self.limit = audit.Audit(self.events, clock)

    def write(self, caller: int, label: str, call: str, target: int, error: str,
              **extra: Any) -> None:
        self.limit.denied(label, caller=caller, call=call, target=target, error=error, **extra)

    def close(self) -> None:
        self.limit.flush()
        self.events.close()


class GatedLine:
    """An IRQ line with a fault knob: while ``disabled`` the device's raises never arrive."""

    def __init__(self, line: IrqLine) -> None:
        self.line, self.level, self.disabled = line, False, False

    def set_level(self, level: bool) -> None:
        self.level = bool(level)
        if not self.disabled:
            self.line.set_level(self.level)

    def set_disabled(self, disabled: bool) -> None:
        self.disabled = disabled
        self.line.set_level(False if disabled else self.level)


class AddressSpace:
    """Physical memory as a set of disjoint windows, each its own memfd segment."""

    def __init__(self) -> None:
        self.segments: dict[int, PhysicalMemory] = {}  # base -> segment
        self.total = 0

    def window(self, base: int, length: int) -> PhysicalMemory | None:
        """The segment backing [base, base+length), created if new; None if it cannot be."""
        seg = self.segments.get(base)
        if seg is not None:
            return seg if seg.size == length else None
        if not 0 < length <= MAX_WINDOW or self.total + length > MAX_MEMORY:
            return None
        if any(b < base + length and base < b + s.size for b, s in self.segments.items()):
            return None
        seg = PhysicalMemory(length, f"minikern-ram-{base:#x}")
        self.segments[base] = seg
        self.total += length
        return seg

    def _find(self, addr: int, length: int) -> tuple[int, PhysicalMemory] | None:
        for base, seg in self.segments.items():
            if base <= addr and addr + length <= base + seg.size:
                return base, seg
        return None

    def contains(self, addr: int, length: int) -> bool:
        return length >= 0 and self._find(addr, length) is not None

    def read(self, addr: int, length: int) -> bytes:
        found = self._find(addr, length)
        if found is None:
            return b"\xff" * length  # the IOMMU has already refused anything ungranted
        return found[1].read(addr - found[0], length)

    def write(self, addr: int, data: bytes) -> None:
        found = self._find(addr, len(data))
        if found is not None:
            found[1].write(addr - found[0], data)

    def close(self) -> None:
        for seg in self.segments.values():
            seg.close()
        self.segments.clear()


class Machine:
    """Every device of the PC, wired to the PIC and the IOMMU, behind one port map."""

    def __init__(self, run_dir: Path, disk: Path, wire: Wire | None,
                 serial: SerialBackend | None, audit: Audit, clock: Clock = time.monotonic,
                 mac: bytes = DEFAULT_MAC) -> None:
        self.audit = audit
        self.memory = AddressSpace()
        self.iommu = Iommu(self.memory, audit=self._dma_refused)
        self.pic = PicPair()
        self.gates: dict[str, GatedLine] = {}
        self.pit = Pit8254(self._gate("pit", 0), clock)
        self.uart = Uart16550(self._gate("uart", COM1_IRQ), clock, serial)
        self.lpt = ParallelPrinter(self._gate("lpt", LPT1_IRQ), run_dir / params.LPT1_PAPER)
        self.ata = AtaChannel(self._gate("ata", ATA_PRIMARY_IRQ), disk)
        self.nic = Rtl8139(self._gate("nic", 11), self.iommu.port_for("rtl8139"), wire, clock,
                           mac=mac)
        self.ide = PiixIde(self.ata, self.iommu.port_for("ata"))
        self.pci = PciBus()
        self.pci.attach(0, 0, host_bridge())
        self.pci.attach(PIIX_PCI_SLOT, 0, isa_bridge())
        self.pci.attach(PIIX_PCI_SLOT, 1, self.ide)
        self.pci.attach(NIC_PCI_SLOT, 0, self.nic)
        self.devices: list[Device] = [self.pic, self.pit, self.uart, self.lpt, self.ata,
                                      self.pci, self.nic, self.ide]
        self.dma_masters: dict[str, Device] = {"rtl8139": self.nic, "ata": self.ide}
        self.users: dict[str, tuple[int, str]] = {}  # device name -> last (endpoint, label)
        self.faults: dict[str, int] = {}  # device name -> exceptions its model raised
        self.port_map: dict[int, Device] = {}
        self.remap()

    def _gate(self, name: str, irq: int) -> GatedLine:
        self.gates[name] = GatedLine(self.pic.line(irq))
        return self.gates[name]

    def remap(self) -> None:
        """Rebuild port -> device; fixed ISA devices win over a BAR moved onto them."""
        ports: dict[int, Device] = {}
        moving: tuple[Device, ...] = (self.nic, self.ide)  # their windows follow a BAR
        for dev in (*moving, *(d for d in self.devices if d not in moving)):
            for base, length in dev.ports:
                for port in range(base, min(base + length, 1 << 16)):
                    ports[port] = dev
        self.port_map = ports

    # -- port access (already checked against the caller's windows) -----------------

    def read(self, port: int, size: int, who: tuple[int, str]) -> int:
        dev = self.port_map.get(port)
        if dev is None:
            return (1 << (8 * size)) - 1
        if dev is self.pic:
            self.catch_up()
        self.users[dev.name] = who
        try:
            return dev.io_read(port, size)
        except Exception:  # a model bug must not take the machine down: float the bus
            self.device_fault(dev)
            return (1 << (8 * size)) - 1

    def write(self, port: int, size: int, value: int, who: tuple[int, str]) -> None:
        dev = self.port_map.get(port)
        if dev is None:
            return
        if dev is self.pic:
            self.catch_up()
        self.users[dev.name] = who
        try:
            dev.io_write(port, size, value & ((1 << (8 * size)) - 1))
        except Exception:  # as in read: the write is lost, the machine runs on
            self.device_fault(dev)
        if dev is self.pci and port != CONFIG_ADDRESS:
            self.remap()  # a BAR may have moved

    def device_fault(self, dev: Device) -> None:
        """A device model raised: count it, and show the first traceback per device."""
        self.faults[dev.name] = self.faults.get(dev.name, 0) + 1
        if self.faults[dev.name] == 1:
            print(f"hw: BUG in the {dev.name} model (later ones only counted):\n"
                  + traceback.format_exc(), flush=True)

    # -- firmware, interrupts ----------------------------------------------------------

    def firmware(self, hz: int) -> None:
        """What the BIOS and MINIX's intr_init / init_8253A_timer leave behind."""
        w = self.pic.io_write
        for cmd, data, vector, icw3 in ((pic_regs.MASTER_CMD, pic_regs.MASTER_DATA, 0x20, 0x04),
                                        (pic_regs.SLAVE_CMD, pic_regs.SLAVE_DATA, 0x28, 0x02)):
            w(cmd, 1, 0x11)  # ICW1: edge, cascade, ICW4 follows
            w(data, 1, vector)  # ICW2
            w(data, 1, icw3)  # ICW3: slave on IR2 / slave id 2
            w(data, 1, 0x01)  # ICW4: 8086 mode
        w(pic_regs.MASTER_DATA, 1, 0xFF & ~(1 << pic_regs.CASCADE_IRQ))  # MINIX's 0xFB
        w(pic_regs.SLAVE_DATA, 1, 0xFF)
        count = max(1, min(0x10000, round(pit_regs.PIT_FREQ / max(1, hz))))
        self.pit.io_write(pit_regs.MODE_PORT, 1, 0x36)  # counter 0, LSB then MSB, mode 3
        self.pit.io_write(pit_regs.COUNTER0, 1, count & 0xFF)
        self.pit.io_write(pit_regs.COUNTER0, 1, (count >> 8) & 0xFF)

    def catch_up(self) -> None:
        """Raise the PIT's edges that fell due while nothing woke the board for them (its
        line masked): the PIC latches them in the IRR as it would have."""
        try:
            self.pit.poll()
        except Exception:  # as in read: a model bug is counted, the machine runs on
            self.device_fault(self.pit)

    def set_masked(self, irq: int, masked: bool) -> None:
        self.catch_up()
        port = pic_regs.MASTER_DATA if irq < 8 else pic_regs.SLAVE_DATA
        imr, bit = self.pic.io_read(port, 1), 1 << (irq & 7)
        self.pic.io_write(port, 1, imr | bit if masked else imr & ~bit)

    def end_of_interrupt(self, irq: int) -> None:
        if irq >= 8:
            self.pic.io_write(pic_regs.SLAVE_CMD, 1, PIC_EOI | (irq - 8))
            irq = pic_regs.CASCADE_IRQ
        self.pic.io_write(pic_regs.MASTER_CMD, 1, PIC_EOI | irq)

    # -- DMA ------------------------------------------------------------------------

    def _dma_refused(self, record: dict[str, object]) -> None:
        device = str(record.get("device"))
        master = self.dma_masters.get(device)  # whose registers aim the transfer
        endpoint, label = self.users.get(master.name if master else device, (0, "?"))
        address = record.get("address")
        self.audit.write(endpoint, label, "DMA", address if isinstance(address, int) else -1,
                         "EPERM", device=device, length=record.get("length"),
                         op=record.get("op"))

    # -- knobs and statistics ---------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        self.catch_up()
        wire = getattr(self.nic.wire, "counters", None)
        return {
            "pic": {"imr": self.pic.master.imr | self.pic.slave.imr << 8,
                    "irr": self.pic.master.irr | self.pic.slave.irr << 8,
                    "isr": self.pic.master.isr | self.pic.slave.isr << 8,
                    "spurious": self.pic.spurious},
            "pit": {"ticks": self.pit.ticks, "missed_ticks": self.pit.missed_ticks},
            "uart": {"tx_dropped": self.uart.tx_dropped, "rx_dropped": self.uart.rx_dropped,
                     "path": getattr(self.uart.backend, "path", None)},
            "lpt": {"printed": self.lpt.printed, "refused": self.lpt.refused,
                    "paper_out": self.lpt.paper_out, "offline": self.lpt.offline},
            "ata": {"sectors": self.ata.sectors, "bad_sectors": sorted(self.ata.bad_sectors),
                    "bm_base": self.ide.bar_base(4), "bm_status": self.ide.primary.status,
                    "dma": asdict(self.ide.primary.counters)},
            "nic": {**asdict(self.nic.counters), "link_up": self.nic.link_up,
                    "io_base": self.nic.bar_base(0),
                    "wire": asdict(wire) if wire is not None else None},
            "iommu": {"refusals": self.iommu.refusals,
                      "windows": [[b, s.size] for b, s in self.memory.segments.items()]},
            "irq_disabled": sorted(n for n, g in self.gates.items() if g.disabled),
            "model_faults": dict(self.faults),
        }

    def close(self) -> None:
        for dev in self.devices:
            try:
                dev.close()
            except OSError:
                pass
        self.memory.close()
