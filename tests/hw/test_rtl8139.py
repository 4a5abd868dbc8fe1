"""RTL8139 model at register level, checked against the devices sheet, section 1."""
from __future__ import annotations

import random
import socket
import struct
import zlib
from collections.abc import Iterator

import pytest

from hw import rtl8139_regs as regs
from hw.device import NullIrq
from hw.pci import PCI_COMMAND, PCI_COMMAND_IO, PCI_STATUS, PCI_STATUS_REC_MASTER_ABORT
from hw.rtl8139 import Rtl8139
from hw.rtl8139_rx import RxRing, ether_crc, mar_hash_index
from hw.wire import LoopWire, UdpWire
from tests.hw.conftest_net import (
    NIC_MAC,
    RING_PHYS,
    TXBUF_PHYS,
    Driver,
    MemoryDma,
    ethernet,
    make_nic,
    wait_for,
)

ACCEPT = regs.RCR_APM | regs.RCR_AB
BROADCAST = b"\xff" * 6


class Udp:
    """A NIC on a UdpWire, and the host socket at the other end."""

    def __init__(self) -> None:
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.peer.bind(("127.0.0.1", 0))
        self.peer.settimeout(2.0)
        self.wire = UdpWire(("127.0.0.1", 0), self.peer.getsockname())
        self.dma = MemoryDma()
        self.irq = NullIrq()
        self.nic, self.ports = make_nic(self.dma, self.wire, self.irq)
        self.drv = Driver(self.ports, 0xC000, self.dma)

    def inject(self, frame: bytes) -> None:
        self.peer.sendto(frame, self.wire.address)

    def nothing_pending_at_peer(self) -> bool:
        self.peer.setblocking(False)
        try:
            self.peer.recv(65536)
        except BlockingIOError:
            return True
        finally:
            self.peer.settimeout(2.0)
        return False


@pytest.fixture
def udp() -> Iterator[Udp]:
    rig = Udp()
    yield rig
    rig.nic.close()
    rig.peer.close()


@pytest.fixture
def loop() -> Iterator[tuple[Rtl8139, Driver, LoopWire]]:
    """A NIC on one end of a LoopWire; the test holds the other end."""
    near, far = LoopWire.pair()
    dma = MemoryDma()
    nic, ports = make_nic(dma, near)
    yield nic, Driver(ports, 0xC000, dma), far
    nic.close()
    far.close()


def test_reset_state(udp: Udp) -> None:
    drv = udp.drv
    drv.outw(regs.IMR, 0xFFFF)
    drv.outb(regs.CR, regs.CR_RST)
    assert drv.inb(regs.CR) == regs.CR_BUFE                    # RST self-cleared, RE/TE off, empty
    assert [drv.inl(regs.TSD0 + 4 * n) for n in range(4)] == [regs.TSD_OWN] * 4
    assert drv.inw(regs.CAPR) == 0xFFF0
    assert drv.inw(regs.CBR) == 0
    assert drv.inw(regs.IMR) == 0 and drv.inw(regs.ISR) == 0
    assert drv.inl(regs.TCR) == regs.TCR_RESET
    assert drv.inl(regs.RCR) == 0 and drv.inl(regs.RBSTART) == 0
    assert bytes(drv.inb(n) for n in range(6)) == NIC_MAC
    assert drv.inb(6) == 0 and drv.inb(7) == 0                 # reserved
    assert drv.inb(regs.CONFIG1) == 0x0C
    assert drv.inb(regs.MSR) == 0xD0                           # link up
    assert drv.inb(regs.REVID) == 0x20
    assert drv.inw(regs.TSAD_SUMMARY) == 0x000F                # OWN0..3
    assert (drv.inw(regs.BMCR), drv.inw(regs.BMSR)) == (0x1000, 0x782D)
    assert drv.inw(regs.ANAR) == 0x05E1


def test_mac_writes_need_config_write_enable(udp: Udp) -> None:
    drv, new = udp.drv, bytes.fromhex("021122334455")
    drv.outl(regs.IDR0, int.from_bytes(new[:4], "little"))
    assert bytes(drv.inb(n) for n in range(6)) == NIC_MAC
    drv.outb(regs.CR9346, 0xC0)                                # MINIX: outb 0x50,0xC0; outl; outl; outb
    drv.outl(regs.IDR0, int.from_bytes(new[:4], "little"))
    drv.outl(regs.IDR0 + 4, int.from_bytes(new[4:], "little"))
    drv.outb(regs.CR9346, 0x00)
    assert bytes(drv.inb(n) for n in range(6)) == new
    drv.outb(regs.CONFIG1, 0x00)                               # locked again: ignored
    assert drv.inb(regs.CONFIG1) == 0x0C


def test_udp_frame_lands_in_ring_with_header_and_crc(udp: Udp) -> None:
    udp.drv.init(ACCEPT)
    short = ethernet(NIC_MAC, b"hello")                        # 19 bytes: padded to 60
    udp.inject(short)
    assert wait_for(lambda: udp.nic.isr & regs.ISR_ROK != 0, [udp.nic])
    header = struct.unpack_from("<I", udp.dma.memory, RING_PHYS)[0]
    padded = short.ljust(60, b"\0")
    assert header >> 16 == 64                                  # padded length + 4-byte CRC
    assert header & 0xFFFF == regs.RXHDR_ROK | regs.RXHDR_PAM
    assert bytes(udp.dma.memory[RING_PHYS + 4:RING_PHYS + 64]) == padded
    crc = struct.unpack_from("<I", udp.dma.memory, RING_PHYS + 64)[0]
    assert crc == zlib.crc32(padded)
    assert udp.drv.inw(regs.CBR) == 68
    assert udp.drv.inw(regs.ISR) & regs.ISR_ROK and udp.irq.level
    packets = udp.drv.receive_all()
    assert packets == [(regs.RXHDR_ROK | regs.RXHDR_PAM, padded + crc.to_bytes(4, "little"))]
    assert udp.drv.inb(regs.CR) & regs.CR_BUFE
    assert udp.drv.inw(regs.CAPR) == (68 - 16)


def test_many_frames_through_an_8k_ring_read_like_a_driver(loop: tuple[Rtl8139, Driver, LoopWire]) -> None:
    nic, drv, far = loop
    drv.init(ACCEPT)
    rng = random.Random(8139)
    sent: list[bytes] = []
    got: list[bytes] = []
    write_ptr_wraps, last_cbr = 0, 0
    for i in range(300):
        payload = i.to_bytes(2, "big") + rng.randbytes(rng.randrange(30, 1500))
        frame = ethernet(NIC_MAC, payload)
        sent.append(frame)
        far.send(frame)
        assert wait_for(lambda: nic.counters.rx_frames == len(sent), [nic])
        cbr = drv.inw(regs.CBR)
        write_ptr_wraps += cbr < last_cbr
        last_cbr = cbr
        if i % 3 == 2:                                         # let a few frames queue up
            got += [data[:-4] for _, data in drv.receive_all()]
    got += [data[:-4] for _, data in drv.receive_all()]
    assert got == [frame.ljust(60, b"\0") for frame in sent]
    assert write_ptr_wraps >= 20
    assert nic.counters.rx_dropped_overflow == 0


def test_wrap_bit_spills_past_the_ring_end(loop: tuple[Rtl8139, Driver, LoopWire]) -> None:
    nic, drv, far = loop
    drv.init(ACCEPT | regs.RCR_WRAP, slack=16 + 1536)
    for _ in range(5):                                          # five 1524-byte records: CBR 7620
        nic.receive(ethernet(NIC_MAC, bytes(1500)))
        drv.receive_all()
    start = drv.inw(regs.CBR)
    frame = ethernet(NIC_MAC, bytes(range(256)) * 5)
    far.send(frame)
    assert wait_for(lambda: nic.counters.rx_frames == 6, [nic])
    assert start + 4 + len(frame) + 4 > 8192                    # this record crosses the end ...
    contiguous = bytes(drv.dma.memory[RING_PHYS + start + 4:RING_PHYS + start + 4 + len(frame)])
    assert contiguous == frame                                  # ... and was written straight on
    assert drv.inw(regs.CBR) == ((start + 8 + len(frame) + 3) & ~3) % 8192


def test_overflow_sets_rxovw_and_counts_missed_packets(loop: tuple[Rtl8139, Driver, LoopWire]) -> None:
    nic, drv, far = loop
    drv.init(ACCEPT, imr=regs.ISR_ROK | regs.ISR_RXOVW)
    frames = [ethernet(NIC_MAC, bytes([i]) * 1010) for i in range(12)]   # 1024-byte records
    for frame in frames:
        far.send(frame)
    assert wait_for(lambda: nic.counters.rx_frames + nic.counters.rx_dropped_overflow == 12, [nic])
    stored = nic.counters.rx_frames
    assert stored == 7                                          # a ring is never completely full
    assert drv.inw(regs.ISR) & regs.ISR_RXOVW
    assert drv.inl(regs.MPC) == 12 - stored == nic.counters.rx_dropped_overflow
    assert [data[:-4] for _, data in drv.receive_all()] == frames[:stored]
    drv.outl(regs.MPC, 0)
    assert drv.inl(regs.MPC) == 0


def test_space_check_rounds_the_record_up_to_a_dword() -> None:
    ring = RxRing()
    ring.read_ptr, ring.write_ptr = 72, 0                       # 72 bytes free
    assert ring.fits(60)                                        # 68-byte record leaves a gap
    assert not ring.fits(61)                                    # 72 after alignment: would look empty
    ring.read_ptr = 0
    assert not ring.fits(8192)                                  # longer than the whole ring


@pytest.mark.parametrize("rcr, dest, accepted", [
    (regs.RCR_APM, NIC_MAC, True),
    (regs.RCR_APM, bytes.fromhex("525400123457"), False),
    (regs.RCR_AB, NIC_MAC, False),
    (regs.RCR_APM, BROADCAST, False),
    (regs.RCR_AB, BROADCAST, True),
    (regs.RCR_AAP, bytes.fromhex("0a0b0c0d0e0f"), True),
])
def test_accept_logic(loop: tuple[Rtl8139, Driver, LoopWire], rcr: int, dest: bytes, accepted: bool) -> None:
    nic, drv, far = loop
    drv.init(rcr)
    far.send(ethernet(dest, b"x" * 50))
    assert wait_for(lambda: nic.counters.rx_frames + nic.counters.rx_dropped_filter == 1, [nic])
    assert (nic.counters.rx_frames == 1) is accepted
    assert bool(drv.inw(regs.ISR) & regs.ISR_ROK) is accepted


def reference_hash_index(mac: bytes) -> int:
    """MAR index from zlib: the MSB-first Ethernet CRC is the bit-reversed ~crc32."""
    reflected = zlib.crc32(mac) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2) >> 26


def test_ether_crc_matches_zlib_reference() -> None:
    rng = random.Random(1)
    for _ in range(50):
        mac = rng.randbytes(6)
        assert mar_hash_index(mac) == reference_hash_index(mac)
    assert ether_crc(b"") == 0xFFFFFFFF


def test_multicast_needs_am_and_its_mar_hash_bit(loop: tuple[Rtl8139, Driver, LoopWire]) -> None:
    nic, drv, far = loop
    drv.init(regs.RCR_APM | regs.RCR_AM)
    wanted = bytes.fromhex("01005e000001")                      # 224.0.0.1
    other = next(bytes.fromhex("01005e0000") + bytes([i]) for i in range(2, 256)
                 if reference_hash_index(bytes.fromhex("01005e0000") + bytes([i]))
                 != reference_hash_index(wanted))
    far.send(ethernet(wanted, b"m" * 50))                       # MAR all zero: dropped
    assert wait_for(lambda: nic.counters.rx_dropped_filter == 1, [nic])
    index = reference_hash_index(wanted)
    mar = 1 << index
    drv.outl(regs.MAR0, mar & 0xFFFFFFFF)
    drv.outl(regs.MAR0 + 4, mar >> 32)
    far.send(ethernet(other, b"o" * 50))
    far.send(ethernet(wanted, b"m" * 50))
    assert wait_for(lambda: nic.counters.rx_frames == 1 and nic.counters.rx_dropped_filter == 2, [nic])
    [(status, data)] = drv.receive_all()
    assert status == regs.RXHDR_ROK | regs.RXHDR_MAR and data[:6] == wanted


def test_transmit_four_descriptors_in_order_over_udp(udp: Udp) -> None:
    udp.drv.init(ACCEPT, imr=regs.ISR_TOK)
    frames = [ethernet(bytes.fromhex("020000000002"), bytes([n]) * (60 + 100 * n), NIC_MAC)
              for n in range(6)]
    for n, frame in enumerate(frames):
        assert udp.drv.send(frame) == n % 4
        assert udp.peer.recv(65536) == frame                    # exact bytes, no header, no CRC
        tsd = udp.drv.inl(regs.TSD0 + 4 * (n % 4))
        assert tsd & (regs.TSD_OWN | regs.TSD_TOK) == regs.TSD_OWN | regs.TSD_TOK
        assert tsd & regs.TSD_SIZE == len(frame)
    assert udp.drv.inw(regs.ISR) & regs.ISR_TOK and udp.irq.level
    assert udp.drv.inw(regs.TSAD_SUMMARY) == 0xF00F             # TOK3..0, OWN3..0
    assert udp.nic.counters.tx_frames == 6


def test_descriptors_are_strictly_in_order(udp: Udp) -> None:
    drv = udp.drv
    drv.init(ACCEPT)
    one = ethernet(bytes(6), b"one" * 20, NIC_MAC)
    zero = ethernet(bytes(6), b"zero" * 20, NIC_MAC)
    drv.dma.memory[TXBUF_PHYS + 0x800:TXBUF_PHYS + 0x800 + len(one)] = one
    drv.outl(regs.TSD0 + 4, len(one))                           # descriptor 1 before 0: the chip waits
    assert drv.inl(regs.TSD0 + 4) & regs.TSD_OWN == 0
    assert udp.nothing_pending_at_peer()
    drv.send(zero)                                              # descriptor 0 ...
    assert udp.peer.recv(65536) == zero                         # ... goes first, then 1 follows
    assert udp.peer.recv(65536) == one
    assert drv.inl(regs.TSD0) & regs.TSD_TOK
    drv.outl(regs.TSD0, 60)                                     # a TSD write clears TOK and OWN;
    assert drv.inl(regs.TSD0) == 60                             # the chip looks at descriptor 2 now
    assert udp.nothing_pending_at_peer()


def test_isr_is_write_one_to_clear_and_drives_the_irq_level(udp: Udp) -> None:
    drv, irq = udp.drv, udp.irq
    drv.init(ACCEPT, imr=regs.ISR_ROK | regs.ISR_TOK)
    assert not irq.level
    drv.send(ethernet(bytes(6), b"t" * 50, NIC_MAC))
    udp.inject(ethernet(NIC_MAC, b"r" * 50))
    assert wait_for(lambda: drv.inw(regs.ISR) & regs.ISR_ROK != 0, [udp.nic])
    assert drv.inw(regs.ISR) == regs.ISR_ROK | regs.ISR_TOK == drv.inw(regs.ISR)   # reading keeps it
    assert irq.level and irq.rises == 1
    drv.outw(regs.IMR, regs.ISR_TOK)
    drv.outw(regs.ISR, regs.ISR_TOK)
    assert drv.inw(regs.ISR) == regs.ISR_ROK and not irq.level   # ROK pending but masked
    drv.outw(regs.IMR, regs.ISR_ROK)
    assert irq.level and irq.rises == 2
    udp.nic.irq_disabled = True
    assert not irq.level
    udp.nic.irq_disabled = False
    assert irq.level
    drv.outw(regs.ISR, drv.inw(regs.ISR))                       # MINIX: isr = inw; outw(isr)
    assert drv.inw(regs.ISR) == 0 and not irq.level


def test_refused_transmit_dma_aborts_and_sends_nothing(udp: Udp) -> None:
    drv = udp.drv
    drv.init(ACCEPT, imr=regs.ISR_TER)
    drv.outl(regs.TSAD0, 0x70000)                               # never granted
    drv.outl(regs.TSD0, 100)
    tsd = drv.inl(regs.TSD0)
    assert tsd & regs.TSD_TABT and tsd & regs.TSD_OWN and not tsd & regs.TSD_TOK
    assert drv.inw(regs.ISR) & regs.ISR_TER and udp.irq.level
    assert udp.nic.counters.dma_faults == 1
    assert udp.ports.config_read(3, PCI_STATUS, 2) & PCI_STATUS_REC_MASTER_ABORT
    good = ethernet(bytes(6), b"g" * 60, NIC_MAC)
    drv.tx_next = 1                                             # the chip moved on to descriptor 1
    drv.send(good)
    assert udp.peer.recv(65536) == good                         # the first datagram ...
    assert udp.nothing_pending_at_peer()                        # ... and the only one


def test_no_dma_without_bus_master(udp: Udp) -> None:
    drv = udp.drv
    drv.init(ACCEPT)
    udp.ports.config_write(3, PCI_COMMAND, 2, PCI_COMMAND_IO)
    drv.send(ethernet(bytes(6), b"x" * 60, NIC_MAC))
    assert drv.inl(regs.TSD0) & regs.TSD_TABT
    udp.inject(ethernet(NIC_MAC, b"y" * 60))
    assert wait_for(lambda: udp.nic.counters.dma_faults == 2, [udp.nic])
    assert drv.inw(regs.ISR) & regs.ISR_SERR
    assert drv.inb(regs.CR) & regs.CR_BUFE and drv.inw(regs.CBR) == 0
    assert udp.nothing_pending_at_peer()


def test_refused_receive_dma_leaves_ring_untouched(loop: tuple[Rtl8139, Driver, LoopWire]) -> None:
    nic, drv, far = loop
    drv.init(ACCEPT)
    drv.dma.revoke_all()
    far.send(ethernet(NIC_MAC, b"z" * 60))
    assert wait_for(lambda: nic.counters.dma_faults == 1, [nic])
    assert drv.inw(regs.CBR) == 0 and drv.inb(regs.CR) & regs.CR_BUFE
    assert drv.inw(regs.ISR) & regs.ISR_SERR and not drv.inw(regs.ISR) & regs.ISR_ROK


def test_tcr_loopback_feeds_the_receive_ring(udp: Udp) -> None:
    drv = udp.drv
    drv.init(ACCEPT)
    drv.outb(regs.CR, regs.CR_RE)                               # TE off: TCR writes are ignored
    drv.outl(regs.TCR, regs.TCR_RESET | regs.TCR_LBK)
    assert drv.inl(regs.TCR) & regs.TCR_LBK == 0
    drv.outb(regs.CR, regs.CR_RE | regs.CR_TE)
    drv.outl(regs.TCR, drv.inl(regs.TCR) | regs.TCR_LBK)
    assert drv.inl(regs.TCR) & 0xFCC00000 == regs.TCR_RESET     # hardware version bits kept
    frame = ethernet(NIC_MAC, b"loop" * 20, NIC_MAC)
    drv.send(frame)
    assert drv.inw(regs.ISR) & (regs.ISR_TOK | regs.ISR_ROK) == regs.ISR_TOK | regs.ISR_ROK
    [(_, data)] = drv.receive_all()
    assert data[:-4] == frame
    assert udp.nothing_pending_at_peer()


def test_rcr_write_resets_the_ring_and_re_gates_reception(loop: tuple[Rtl8139, Driver, LoopWire]) -> None:
    nic, drv, far = loop
    drv.init(ACCEPT)
    far.send(ethernet(NIC_MAC, b"a" * 60))
    assert wait_for(lambda: nic.counters.rx_frames == 1, [nic])
    drv.outl(regs.RCR, ACCEPT | 1 << regs.RCR_RBLEN_SHIFT)
    assert (drv.inw(regs.CBR), drv.inw(regs.CAPR)) == (0, 0xFFF0)
    assert nic.ring.size == 16384
    drv.outb(regs.CR, regs.CR_TE)                               # receiver off
    far.send(ethernet(NIC_MAC, b"b" * 60))
    assert wait_for(lambda: nic.counters.rx_dropped_disabled == 1, [nic])


def test_hardware_outlives_its_driver(loop: tuple[Rtl8139, Driver, LoopWire]) -> None:
    nic, drv, far = loop
    drv.init(ACCEPT)
    del drv                                                     # the driver is gone; the wire is not
    for i in range(40):
        far.send(ethernet(NIC_MAC, bytes([i]) * 500))
    assert wait_for(lambda: nic.counters.rx_frames + nic.counters.rx_dropped_overflow == 40, [nic])
    assert nic.counters.rx_frames == 15 and nic.counters.rx_dropped_overflow == 25
    assert nic.mpc == 25 and nic.isr & regs.ISR_RXOVW


def test_wire_fault_knobs(udp: Udp) -> None:
    drv, nic = udp.drv, udp.nic
    drv.init(ACCEPT)
    nic.drop_rx.count = 2
    for i in range(3):
        udp.inject(ethernet(NIC_MAC, bytes([i]) * 60))
    assert wait_for(lambda: nic.counters.rx_frames == 1, [nic])
    assert nic.counters.rx_dropped_wire == 2
    assert drv.receive_all()[0][1][14] == 2                     # only the third frame arrived
    nic.drop_tx.count = 1
    lost, kept = (ethernet(bytes(6), bytes([n]) * 60, NIC_MAC) for n in (1, 2))
    drv.send(lost)
    assert drv.inl(regs.TSD0) & regs.TSD_TOK                    # the NIC cannot tell
    drv.send(kept)
    assert udp.peer.recv(65536) == kept
    assert nic.counters.tx_dropped_wire == 1


def test_link_state_registers() -> None:
    nic = Rtl8139(irq=NullIrq(), dma=MemoryDma(), wire=None, clock=lambda: 0.0)
    assert nic.io_read(0xC000 + regs.MSR, 1) & regs.MSR_LINKB     # no wire: link down
    nic.set_link(True)
    assert not nic.io_read(0xC000 + regs.MSR, 1) & regs.MSR_LINKB
    assert nic.io_read(0xC000 + regs.BMSR, 2) == 0x782D
    assert nic.isr & regs.ISR_PUN


def test_access_widths_split_over_registers_and_tctr() -> None:
    now = [100.0]
    nic = Rtl8139(irq=NullIrq(), dma=MemoryDma(), wire=None, clock=lambda: now[0])
    base = 0xC000
    assert nic.io_read(base + regs.CAPR, 1) | nic.io_read(base + regs.CAPR + 1, 1) << 8 == 0xFFF0
    assert nic.io_read(base + regs.CAPR, 4) == 0x0000FFF0     # CAPR then CBR in one dword
    assert nic.io_read(base + regs.IDR0, 4) == int.from_bytes(NIC_MAC[:4], "little")
    now[0] += 0.5
    assert nic.io_read(base + regs.TCTR, 4) == 16_500_000        # 33 MHz PCI clock
    nic.io_write(base + regs.TCTR, 4, 0)
    assert nic.io_read(base + regs.TCTR, 4) == 0
    assert nic.io_read(base + 0x100, 1) == 0xFF                 # outside the window
    nic.io_write(base + regs.CR9346, 1, 0x40)                   # auto-load: chip reset
    assert nic.io_read(base + regs.CR9346, 1) == 0
