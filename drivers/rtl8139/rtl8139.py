"""rtl8139: the driver for the Realtek RTL8139 (runs in its own process, label rtl8139).

What it does, in MINIX rtl8139.c's order: find the card through PCI
configuration space (0xCF8/0xCFC), read BAR0 and the interrupt line, enable
bus mastering; reset (CR.RST, wait for it to clear); give the chip its
receive ring and four transmit buffers, all in this driver's own physical
memory window, granted to the NIC through the IOMMU; unmask interrupts;
enable RE|TE; program RCR and TCR; read the MAC.  The network driver
framework (drivers/net/framework.py) does the rest: the loop, INET.

Every port access goes through the board's fast-path channel, which reaches
exactly the windows system.conf gives this driver.  Receive handling follows
the sheet's driver loop: header check, CAPR written 16 bytes behind the read
pointer, wrap in software (WRAP=0); a bad header or RXOVW resets the receiver
rather than panicking.  Transmit uses the four descriptors strictly in order;
``transmit`` copies a frame into its buffer and ``kick`` writes the TSDs of
all frames placed since, then reads the four TSDs back, in one vector: one
bus round trip starts up to four frames and retires those the chip finished.
The interrupt handler likewise acknowledges, reads CBR, the TSDs (when frames
are in flight) and ISR again in one vector.
"""
from __future__ import annotations

import struct
from typing import Any

from drivers import pci
from drivers.net import framework
from hw import rtl8139_regs as R
from minikern.devio import Channel, ChannelError, open_channel
from minikern import sef
from minikern.ipc import IpcError

RING_SIZE = 64 * 1024  # RBLEN = 11: the largest ring, fewest overflows
RCR_RBLEN = 0x1800  # 64 KiB
RCR_ACCEPT = R.RCR_APM | R.RCR_AB | R.RCR_AM
RCR_MXDMA_UNLIMITED = 0x700
IMR_MASK = (R.ISR_ROK | R.ISR_RER | R.ISR_TOK | R.ISR_TER | R.ISR_RXOVW | R.ISR_FOVW | R.ISR_SERR
            | R.ISR_PUN)  # PUN/LinkChg: the link went up or down (MSR.LINKB says which)
RING_SLACK = 2048  # past the ring's end, as the sheet advises (WRAP=0 never spills into it)
TX_BUF = 2048
DMA_SPAN = RING_SIZE + RING_SLACK + 4 * TX_BUF
MAX_FRAME = 1514
RESET_POLLS = 1000
MAX_ISR_ROUNDS = 16  # interrupt causes handled in one go before giving the loop back


class Rtl8139:
    def __init__(self) -> None:
        self.irq = R.DEFAULT_IRQ
        self.ch: Channel | None = None
        self.base = 0
        self.tx_next = 0  # next descriptor to fill
        self.tx_tail = 0  # oldest descriptor in flight
        self.in_flight = 0
        self.completed = 0
        self.rx_frames: list[bytes] = []
        self.tx_kicks: list[tuple[int, int, int | None]] = []  # TSD writes waiting for kick
        self.link_up = False  # MSR.LINKB as last read: at reset and at each LinkChg
        self.counters = {"rx": 0, "tx": 0, "rx_errors": 0, "rx_resets": 0, "tx_errors": 0}

    # -- initialization --------------------------------------------------------------

    @property
    def chan(self) -> Channel:
        if self.ch is None:
            raise RuntimeError("no channel to the board")
        return self.ch

    def find_card(self) -> int:
        for dev in range(32):
            ident = pci.read(self.chan, dev, pci.ID)
            if ident == (R.DEVICE_ID << 16 | R.VENDOR_ID):
                return dev
        sef.panic("no RTL8139 on the PCI bus")

    def init(self, ctx: sef.Context) -> bytes:
        try:
            self.ch = open_channel(ctx.conn)
        except (IpcError, ChannelError) as e:
            sef.panic(f"cannot reach the hardware: {e}")
        if not self.ch.windows:
            sef.panic("no physical memory window for DMA buffers (system.conf: mem)")
        self.mem_base = min(self.ch.windows)
        dev = self.find_card()
        self.base = pci.read(self.chan, dev, pci.BAR0) & 0xFFFFFFFC
        self.irq = pci.read(self.chan, dev, pci.INTERRUPT) & 0xFF
        cmd = pci.read(self.chan, dev, pci.COMMAND)
        pci.write(self.chan, dev, pci.COMMAND, (cmd & 0xFFFF) | pci.CMD_IO | pci.CMD_MASTER)
        self.ring = self.chan.memory(self.mem_base, RING_SIZE)
        self.tx_addr = [self.mem_base + RING_SIZE + RING_SLACK + i * TX_BUF
                        for i in range(R.NUM_TX_DESC)]
        self.chan.dma_grant("rtl8139", self.mem_base, DMA_SPAN, True)
        self.reset()
        return bytes(self.chan.inb(self.base + R.IDR0 + i) for i in range(6))

    def reset(self) -> None:
        """The documented reset and bring-up sequence (sheet 1.9)."""
        ch, b = self.chan, self.base
        ch.outb(b + R.CONFIG1, 0x00)
        ch.outb(b + R.CR, R.CR_RST)
        for _ in range(RESET_POLLS):
            if not ch.inb(b + R.CR) & R.CR_RST:
                break
        else:
            sef.panic("RTL8139 did not come out of reset")
        ops: list[tuple[int, int, int | None]] = [(b + R.RBSTART, 4, self.mem_base)]
        ops += [(b + R.TSAD0 + 4 * i, 4, a) for i, a in enumerate(self.tx_addr)]
        ops += [(b + R.IMR, 2, IMR_MASK), (b + R.CR, 1, R.CR_RE | R.CR_TE),
                (b + R.RCR, 4, RCR_RBLEN | RCR_MXDMA_UNLIMITED | RCR_ACCEPT),
                (b + R.TCR, 4, R.TCR_IFG | 0x600)]
        ch.vec(ops)
        self.read_off = 0
        self.tx_next = self.tx_tail = self.in_flight = 0
        self.tx_kicks = []
        self.read_link()

    def set_mode(self, mode: dict[str, Any]) -> None:
        rcr = RCR_RBLEN | RCR_MXDMA_UNLIMITED | RCR_ACCEPT
        if mode.get("promiscuous"):
            rcr |= R.RCR_AAP
        if rcr != RCR_RBLEN | RCR_MXDMA_UNLIMITED | RCR_ACCEPT:
            self.chan.outl(self.base + R.RCR, rcr)

    # -- interrupts, receive, transmit ----------------------------------------------

    def interrupt(self) -> None:
        """Acknowledge and handle until ISR reads 0.

        The chip holds its interrupt line high while ISR & IMR is not 0, and the
        8259 only latches rising edges: a cause left set would keep the line
        high and no interrupt would ever come again.
        """
        ch, b = self.chan, self.base
        isr = ch.inw(b + R.ISR)
        for _ in range(MAX_ISR_ROUNDS):
            if not isr:
                return
            # Acknowledge first, then read CBR: a frame that lands after the acknowledgement
            # raises ROK again (a new interrupt) instead of waiting, unseen, for the next one.
            # The TSDs and ISR are read in the same vector: no round trip of their own.
            tsd_reads = self.tsd_reads() if isr & (R.ISR_TOK | R.ISR_TER) else []
            got = ch.vec([(b + R.ISR, 2, isr), (b + R.CBR, 2, None), *tsd_reads,
                          (b + R.ISR, 2, None)])
            cbr, next_isr = got[1], got[-1]
            if isr & (R.ISR_RXOVW | R.ISR_FOVW | R.ISR_RER):
                self.reset_receiver()
            elif isr & R.ISR_ROK:
                self.rx_ring(cbr or 0)
            if tsd_reads:
                self.retire(got[2:2 + len(tsd_reads)])
            if isr & R.ISR_PUN:
                self.read_link()
            isr = next_isr or 0

    def rx_ring(self, cbr: int) -> None:
        """Take every complete frame between the read pointer and CBR, then move CAPR once."""
        ring, off = self.ring, self.read_off
        while off != cbr % RING_SIZE:
            hdr, length = struct.unpack_from("<HH", ring, off)
            if not hdr & R.RXHDR_ROK or length < 64 or length > MAX_FRAME + 4 + 4:
                self.counters["rx_errors"] += 1
                return self.reset_receiver()
            start, n = (off + 4) % RING_SIZE, length - 4
            end = start + n
            if end <= RING_SIZE:
                frame = bytes(ring[start:end])
            else:
                frame = bytes(ring[start:RING_SIZE]) + bytes(ring[:end - RING_SIZE])
            self.rx_frames.append(frame)
            self.counters["rx"] += 1
            off = (off + 4 + length + 3) & ~3 & (RING_SIZE - 1)
        if off != self.read_off:
            self.read_off = off
            self.chan.outw(self.base + R.CAPR, (off - 16) & 0xFFFF)

    def reset_receiver(self) -> None:
        """MINIX: on overflow or a bad header, turn RE off and on and rewrite RCR (resets the ring)."""
        ch, b = self.chan, self.base
        self.counters["rx_resets"] += 1
        ch.vec([(b + R.CR, 1, R.CR_TE), (b + R.CR, 1, R.CR_RE | R.CR_TE),
                (b + R.RCR, 4, RCR_RBLEN | RCR_MXDMA_UNLIMITED | RCR_ACCEPT)])
        self.read_off = 0

    def tsd_reads(self) -> list[tuple[int, int, int | None]]:
        return [(self.base + R.TSD0 + 4 * i, 4, None) for i in range(R.NUM_TX_DESC)]

    def tx_reap(self) -> None:
        """Retire finished descriptors, oldest first (one round trip for all four)."""
        if self.in_flight:
            self.retire(self.chan.vec(self.tsd_reads()))

    def retire(self, tsds: list[int | None]) -> None:
        """Retire the descriptors ``tsds`` (TSD0..3 as read) show finished, oldest first."""
        while self.in_flight:
            tsd = tsds[self.tx_tail] or 0
            if not tsd & (R.TSD_TOK | R.TSD_TUN | R.TSD_TABT):
                break
            if tsd & R.TSD_TABT:
                self.counters["tx_errors"] += 1
            self.tx_tail = (self.tx_tail + 1) % R.NUM_TX_DESC
            self.in_flight -= 1
            self.completed += 1

    def receive(self) -> list[bytes]:
        frames, self.rx_frames = self.rx_frames, []
        return frames

    def transmit(self, frame: bytes) -> None:
        frame = frame[:MAX_FRAME].ljust(60, b"\0")  # the chip does not pad short frames
        i = self.tx_next
        addr = self.tx_addr[i]
        self.chan.memory(addr, len(frame))[:] = frame
        self.tx_kicks.append((self.base + R.TSD0 + 4 * i, 4, len(frame)))
        self.tx_next = (i + 1) % R.NUM_TX_DESC
        self.in_flight += 1
        self.counters["tx"] += 1

    def kick(self) -> None:
        """Write the TSDs of the frames placed since the last kick, in order, and read all
        four back: the chip sends at each TSD write, so most come back finished at once."""
        if not self.tx_kicks:
            return
        ops, self.tx_kicks = self.tx_kicks, []
        got = self.chan.vec(ops + self.tsd_reads())
        self.retire(got[len(ops):])

    def tx_free(self) -> int:
        return R.NUM_TX_DESC - self.in_flight

    def tx_done(self) -> int:
        if self.in_flight == R.NUM_TX_DESC:
            self.tx_reap()  # all slots busy: look, rather than wait for the interrupt
        done, self.completed = self.completed, 0
        return done

    def read_link(self) -> None:
        self.link_up = not self.chan.inb(self.base + R.MSR) & R.MSR_LINKB

    def link(self) -> bool:
        return self.link_up

    def stats(self) -> dict[str, int]:
        return dict(self.counters)


def main() -> None:
    framework.run(Rtl8139())
