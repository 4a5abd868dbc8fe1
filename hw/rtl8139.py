"""Realtek RTL8139 10/100 NIC on PCI, "C mode" (runs in the board process).

Register-faithful to the devices sheet, section 1 (QEMU's rtl8139.c plus the
datasheet): PCI function 10ec:8139 whose BAR0 is a 256-byte I/O window; a
receive ring it fills by DMA; four transmit descriptors it reads by DMA and
hands to a wire (``hw.wire``).  Register numbers are in ``hw.rtl8139_regs``,
the accept filter and ring arithmetic in ``hw.rtl8139_rx``.

It reaches the machine only through ``irq``, ``dma`` and ``wire``.  DMA
happens only while PCI bus mastering is on; a refused one (``DmaFault``) is a
PCI master abort.  The hardware outlives its driver: ``poll`` drains the wire
every turn, so with RE set and nobody reading, the ring fills, then overflows.
An access of any width is split over the registers it covers, each register
getting the bytes it was written (``outl(IDR0)``, ``inw(CAPR)`` both work).
``ports`` follows BAR0, so the board must look it up after a config write.

Decisions where the sheet is UNCONFIRMED or silent:

* IDR0-5 and CONFIG0/1 take writes only while 9346CR = 0xC0 (datasheet; QEMU
  takes any IDR write).  EEPROM programming is not modelled (EEDO reads 0);
  EEM = 01 (auto-load) resets the chip.
* CR.RST resets at once (reads 0 after), RBSTART included, and ignores RE/TE
  in the same write.  Turning TE on restarts at descriptor 0.
* After a TSD write every ready descriptor is sent, in order from the current
  one (QEMU sends one per write).  Frames go out as-is: no padding, SIZE up
  to 8191, TSAD alignment not checked (the 1792-byte limit is UNCONFIRMED;
  the wire refuses what it cannot carry).  TCR.CLRABT is ignored as in QEMU:
  an aborted descriptor ends OWN|TABT and the chip moves on.
* A refused receive DMA drops the frame, leaves the ring as it was and sets
  ISR.SERR; any refused DMA sets PCI status "received master abort".
* Loopback (TCR LBK = 11) sends frames through the accept filter into the ring.
* TimerInt/TimeOut are not modelled; TCTR counts 33 MHz of the injected clock.
  BMCR and the other MII registers are read-only.  The link is up while a wire
  is attached; ``set_link`` changes it and raises ISR.PUN (link change).
* The board picks the I/O base (default 0xC000) and IRQ (default 11; QEMU's
  and SeaBIOS's usual choice is UNCONFIRMED).
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from hw import rtl8139_regs as regs
from hw.device import Clock, Device, DmaFault, DmaPort, IrqLine
from hw.pci import PCI_COMMAND_IO, PCI_STATUS_REC_MASTER_ABORT, PciFunction
from hw.rtl8139_rx import ETH_ZLEN, RxRing, classify
from hw.wire import Wire, WireFault


@dataclass
class Counters:
    """What happened to frames, for the board to publish and tests to check."""

    rx_frames: int = 0
    rx_dropped_filter: int = 0
    rx_dropped_overflow: int = 0
    rx_dropped_disabled: int = 0
    rx_dropped_malformed: int = 0
    rx_dropped_wire: int = 0        # drop_rx knob, or link down
    tx_frames: int = 0
    tx_aborted: int = 0             # TABT: the transmit DMA was refused
    tx_dropped_wire: int = 0        # drop_tx knob, no wire, or link down (TOK still set)
    dma_faults: int = 0


@dataclass
class _Register:
    width: int
    read: Callable[[], int]
    write: Callable[[int, int], None] | None   # (value, byte-lane mask); None = read-only


def _merge(old: int, value: int, mask: int) -> int:
    return (old & ~mask) | (value & mask)


class Rtl8139(PciFunction, Device):
    """The NIC: PCI function, register file, receive ring writer and transmit engine."""

    name = "rtl8139"

    def __init__(self, irq: IrqLine, dma: DmaPort, wire: Wire | None, clock: Clock,
                 mac: bytes = regs.DEFAULT_MAC, io_base: int = regs.DEFAULT_IO_BASE,
                 irq_line: int = regs.DEFAULT_IRQ, rng: random.Random | None = None) -> None:
        if len(mac) != 6:
            raise ValueError("a MAC address is 6 bytes")
        PciFunction.__init__(self, regs.VENDOR_ID, regs.DEVICE_ID, regs.CLASS_CODE,
                             regs.REVISION, interrupt_pin=1)
        self.irq, self.dma, self.wire, self.clock = irq, dma, wire, clock
        self.eeprom_mac = bytes(mac)
        self.counters = Counters()
        self.drop_rx = WireFault()
        self.drop_tx = WireFault()
        self._rng = rng or random.Random()
        self._irq_disabled = False
        self._irq_level = False
        self.link_up = wire is not None
        self.ring = RxRing()
        self._registers = self._register_table()
        self._lane_owner = {base + lane: base for base, reg in self._registers.items()
                            for lane in range(reg.width)}
        self._chip_reset()
        self.add_bar(0, regs.IO_WINDOW, io=True, base=io_base)
        self.set_interrupt_line(irq_line)
        self.set_command(PCI_COMMAND_IO)  # the firmware's part; bus mastering is the driver's
        self.snapshot_config()
        self.config_written(0, 0)
        irq.set_level(False)

    def _chip_reset(self) -> None:
        """The register state and its reset values (sheet 1.9); PCI configuration is untouched."""
        self.mac: bytearray = bytearray(self.eeprom_mac)  # IDR0-5
        self.mar: bytearray = bytearray(8)  # MAR0-7
        self.tsd: list[int] = [regs.TSD_OWN] * regs.NUM_TX_DESC
        self.tsad: list[int] = [0] * regs.NUM_TX_DESC
        self._tx_current: int = 0  # the one descriptor the chip looks at
        self.rbstart: int = 0
        self.cr: int = 0  # RE|TE; BUFE is computed, RST self-clears
        self.imr: int = 0
        self.isr: int = 0
        self.tcr: int = regs.TCR_RESET
        self.rcr: int = 0
        self.ring.reset(0)
        self.mpc: int = 0
        self.cr9346: int = 0
        self.config0: int = 0
        self.config1: int = regs.CONFIG1_RESET
        self._tctr_epoch: float = self.clock()
        self._update_irq()

    # -- knobs for tests and tools (not for drivers) -----------------------

    @property
    def irq_disabled(self) -> bool:
        return self._irq_disabled

    @irq_disabled.setter
    def irq_disabled(self, disabled: bool) -> None:
        self._irq_disabled = disabled
        self._update_irq()

    def set_link(self, up: bool) -> None:
        if up != self.link_up:
            self.link_up = up
            self._raise(regs.ISR_PUN)

    # -- hw.device.Device ---------------------------------------------------

    def config_written(self, offset: int, size: int) -> None:
        # The I/O window follows BAR0; INTx disable may have changed the line.  Every change
        # of configuration space comes through here, so the port accesses read the window
        # from these two fields instead of decoding the configuration space each time.
        self._io_base = self.bar_base(0)
        self._io_on = self.io_enabled
        self.ports = ((self._io_base, regs.IO_WINDOW),)
        self._update_irq()

    def io_read(self, port: int, size: int) -> int:
        offset = port - self._io_base
        if not self._io_on or offset < 0 or offset + size > regs.IO_WINDOW:
            return (1 << (8 * size)) - 1
        reg = self._registers.get(offset)
        if reg is not None and reg.width == size:  # the common case: one whole register
            return reg.read() & ((1 << (8 * size)) - 1)
        value = 0
        cache: dict[int, int] = {}
        for lane in range(size):
            base, reg = self._owner(offset + lane)
            if reg is None:
                continue
            if base not in cache:
                cache[base] = reg.read()
            value |= ((cache[base] >> (8 * (offset + lane - base))) & 0xFF) << (8 * lane)
        return value

    def io_write(self, port: int, size: int, value: int) -> None:
        offset = port - self._io_base
        if not self._io_on or offset < 0 or offset + size > regs.IO_WINDOW:
            return
        reg = self._registers.get(offset)
        if reg is not None and reg.width == size:  # one whole register: all its lanes
            if reg.write is not None:
                mask = (1 << (8 * size)) - 1
                reg.write(value & mask, mask)
            return
        lanes: dict[int, tuple[int, int]] = {}   # register base -> (value, mask) in its lanes
        for lane in range(size):
            base, reg = self._owner(offset + lane)
            if reg is None or reg.write is None:
                continue
            shift = 8 * (offset + lane - base)
            byte = (value >> (8 * lane)) & 0xFF
            old_value, old_mask = lanes.get(base, (0, 0))
            lanes[base] = (old_value | byte << shift, old_mask | 0xFF << shift)
        for base, (lane_value, mask) in lanes.items():
            write = self._registers[base].write
            if write is not None:
                write(lane_value, mask)

    def reset(self) -> None:
        self._chip_reset()
        self.reset_config()

    def poll(self) -> None:
        if self.wire is None:
            return
        for frame in self.wire.recv():
            if self.drop_rx.fires(self._rng) or not self.link_up:
                self.counters.rx_dropped_wire += 1
            else:
                self.receive(frame)

    def fileno(self) -> int | None:
        return self.wire.fileno() if self.wire is not None else None

    def close(self) -> None:
        if self.wire is not None:
            self.wire.close()

    # -- receive --------------------------------------------------------------

    def receive(self, frame: bytes) -> None:
        """A frame arrives from the wire (or from loopback)."""
        if not self.cr & regs.CR_RE:
            self.counters.rx_dropped_disabled += 1
            return
        if len(frame) < 14:
            self.counters.rx_dropped_malformed += 1
            return
        status = classify(frame[:6], self.rcr, bytes(self.mac), bytes(self.mar))
        if status is None:
            self.counters.rx_dropped_filter += 1
            return
        frame = frame.ljust(ETH_ZLEN, b"\0")
        if not self.ring.fits(len(frame)):
            self.counters.rx_dropped_overflow += 1
            self.mpc = (self.mpc + 1) & regs.MPC_MASK
            self._raise(regs.ISR_RXOVW)
            return
        pieces, next_write = self.ring.place(frame, status, bool(self.rcr & regs.RCR_WRAP))
        try:
            self._check_master()
            for offset, data in pieces:
                self.dma.write(self.rbstart + offset, data)
        except DmaFault:
            self._master_abort()
            self._raise(regs.ISR_SERR)
            return
        self.ring.write_ptr = next_write
        self.counters.rx_frames += 1
        self._raise(regs.ISR_ROK)

    # -- transmit -------------------------------------------------------------

    def _transmit_ready(self) -> None:
        """Send descriptors strictly in order, from the current one, while the driver owns none."""
        for _ in range(regs.NUM_TX_DESC):
            n = self._tx_current
            if not self.cr & regs.CR_TE or self.tsd[n] & regs.TSD_OWN:
                return
            self._transmit_one(n)
            self._tx_current = (n + 1) % regs.NUM_TX_DESC

    def _transmit_one(self, n: int) -> None:
        try:
            self._check_master()
            frame = self.dma.read(self.tsad[n], self.tsd[n] & regs.TSD_SIZE)
        except DmaFault:
            self.tsd[n] |= regs.TSD_OWN | regs.TSD_TABT
            self.counters.tx_aborted += 1
            self._master_abort()
            self._raise(regs.ISR_TER)
            return
        self.tsd[n] |= regs.TSD_OWN
        self.counters.tx_frames += 1
        if self.tcr & regs.TCR_LBK == regs.TCR_LBK:
            self.receive(frame)
        elif self.drop_tx.fires(self._rng) or self.wire is None or not self.link_up:
            self.counters.tx_dropped_wire += 1
        else:
            self.wire.send(frame)
        self.tsd[n] |= regs.TSD_TOK
        self._raise(regs.ISR_TOK)

    # -- interrupts and bus ---------------------------------------------------

    def _raise(self, bits: int) -> None:
        self.isr |= bits
        self._update_irq()

    def _update_irq(self) -> None:
        level = bool(self.isr & self.imr) and not self._irq_disabled and not self.intx_disabled
        if level != self._irq_level:
            self._irq_level = level
            self.irq.set_level(level)

    def _check_master(self) -> None:
        if not self.bus_master:
            raise DmaFault("bus mastering is disabled in the PCI command register")

    def _master_abort(self) -> None:
        self.counters.dma_faults += 1
        self.set_status(PCI_STATUS_REC_MASTER_ABORT)

    # -- reset and the register file -------------------------------------------

    def _owner(self, offset: int) -> tuple[int, _Register | None]:
        base = self._lane_owner.get(offset)
        return (0, None) if base is None else (base, self._registers[base])

    def _register_table(self) -> dict[int, _Register]:
        """Every register's width and access functions, keyed by offset (explicit, one per line)."""
        table: dict[int, _Register] = {
            regs.IDR0: _Register(6, lambda: int.from_bytes(self.mac, "little"), self._write_idr),
            regs.MAR0: _Register(8, lambda: int.from_bytes(self.mar, "little"), self._write_mar),
            regs.RBSTART: _Register(4, lambda: self.rbstart, self._write_rbstart),
            regs.CR: _Register(1, self._read_cr, self._write_cr),
            regs.CAPR: _Register(2, lambda: self.ring.capr, self._write_capr),
            regs.CBR: _Register(2, lambda: self.ring.write_ptr, None),
            regs.IMR: _Register(2, lambda: self.imr, self._write_imr),
            regs.ISR: _Register(2, lambda: self.isr, self._write_isr),
            regs.TCR: _Register(4, lambda: self.tcr, self._write_tcr),
            regs.RCR: _Register(4, lambda: self.rcr, self._write_rcr),
            regs.TCTR: _Register(4, self._read_tctr, self._write_tctr),
            regs.MPC: _Register(4, lambda: self.mpc, self._write_mpc),
            regs.CR9346: _Register(1, lambda: self.cr9346, self._write_cr9346),
            regs.CONFIG0: _Register(1, lambda: self.config0, self._write_config0),
            regs.CONFIG1: _Register(1, lambda: self.config1, self._write_config1),
            regs.MSR: _Register(1, self._read_msr, None),
            regs.REVID: _Register(1, lambda: regs.REVISION, None),
            regs.TSAD_SUMMARY: _Register(2, self._read_tsad_summary, None),
            regs.BMCR: _Register(2, lambda: regs.BMCR_RESET, None),
            regs.BMSR: _Register(2, self._read_bmsr, None),
            regs.ANAR: _Register(2, lambda: regs.ANAR_RESET, None),
            regs.ANLPAR: _Register(2, lambda: regs.ANLPAR_RESET, None),
            regs.ANER: _Register(2, lambda: regs.ANER_RESET, None),
        }
        for n in range(regs.NUM_TX_DESC):
            table[regs.TSD0 + 4 * n] = _Register(
                4, partial(self._read_tsd, n), partial(self._write_tsd, n))
            table[regs.TSAD0 + 4 * n] = _Register(
                4, partial(self._read_tsad, n), partial(self._write_tsad, n))
        return table

    def _read_cr(self) -> int:
        return self.cr | (regs.CR_BUFE if self.ring.empty else 0)

    def _read_msr(self) -> int:
        return regs.MSR_BASE | (0 if self.link_up else regs.MSR_LINKB)

    def _read_bmsr(self) -> int:
        return regs.BMSR_LINK_UP if self.link_up else regs.BMSR_LINK_DOWN

    def _read_tctr(self) -> int:
        return int((self.clock() - self._tctr_epoch) * regs.PCI_CLOCK_HZ) & 0xFFFFFFFF

    def _read_tsd(self, n: int) -> int:
        return self.tsd[n]

    def _read_tsad(self, n: int) -> int:
        return self.tsad[n]

    def _read_tsad_summary(self) -> int:
        summary = 0
        for n, tsd in enumerate(self.tsd):
            for bit, shift in ((regs.TSD_TOK, 12), (regs.TSD_TUN, 8),
                               (regs.TSD_TABT, 4), (regs.TSD_OWN, 0)):
                if tsd & bit:
                    summary |= 1 << (shift + n)
        return summary

    def _config_unlocked(self) -> bool:
        return self.cr9346 & regs.CR9346_EEM == regs.CR9346_EEM_CONFIG

    def _write_idr(self, value: int, mask: int) -> None:
        if self._config_unlocked():
            merged = _merge(int.from_bytes(self.mac, "little"), value, mask)
            self.mac = bytearray(merged.to_bytes(6, "little"))

    def _write_mar(self, value: int, mask: int) -> None:
        merged = _merge(int.from_bytes(self.mar, "little"), value, mask)
        self.mar = bytearray(merged.to_bytes(8, "little"))

    def _write_rbstart(self, value: int, mask: int) -> None:
        self.rbstart = _merge(self.rbstart, value, mask)

    def _write_cr(self, value: int, mask: int) -> None:
        if value & regs.CR_RST:
            self._chip_reset()
            return
        if value & regs.CR_TE and not self.cr & regs.CR_TE:
            self._tx_current = 0
        self.cr = value & (regs.CR_RE | regs.CR_TE)
        self._transmit_ready()

    def _write_capr(self, value: int, mask: int) -> None:
        self.ring.set_capr(_merge(self.ring.capr, value, mask))

    def _write_imr(self, value: int, mask: int) -> None:
        self.imr = _merge(self.imr, value, mask) & regs.ISR_DEFINED
        self._update_irq()

    def _write_isr(self, value: int, mask: int) -> None:
        self.isr &= ~(value & mask)
        self._update_irq()

    def _write_tcr(self, value: int, mask: int) -> None:
        if self.cr & regs.CR_TE:
            self.tcr = _merge(self.tcr, _merge(self.tcr, value, mask), regs.TCR_WRITABLE)

    def _write_rcr(self, value: int, mask: int) -> None:
        self.rcr = _merge(self.rcr, value, mask) & regs.RCR_WRITABLE
        self.ring.reset(self.rcr)

    def _write_tctr(self, value: int, mask: int) -> None:
        self._tctr_epoch = self.clock()

    def _write_mpc(self, value: int, mask: int) -> None:
        self.mpc = 0

    def _write_cr9346(self, value: int, mask: int) -> None:
        if value & regs.CR9346_EEM == regs.CR9346_EEM_AUTOLOAD:
            self._chip_reset()   # auto-load reloads from the EEPROM, then returns to normal mode
            return
        self.cr9346 = value & 0xFE   # EEDO (bit 0) comes from the EEPROM, which is not modelled

    def _write_config0(self, value: int, mask: int) -> None:
        if self._config_unlocked():
            self.config0 = value & 0xFF

    def _write_config1(self, value: int, mask: int) -> None:
        if self._config_unlocked():
            self.config1 = value & 0xFF

    def _write_tsd(self, n: int, value: int, mask: int) -> None:
        merged = _merge(self.tsd[n], value, mask) & ~regs.TSD_CLEARED_ON_WRITE
        self.tsd[n] = _merge(merged, self.tsd[n], regs.TSD_KEPT_ON_WRITE)
        self._transmit_ready()

    def _write_tsad(self, n: int, value: int, mask: int) -> None:
        self.tsad[n] = _merge(self.tsad[n], value, mask)
