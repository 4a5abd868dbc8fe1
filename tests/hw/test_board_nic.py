"""The board's NIC through the IOMMU, the hardware outliving its driver, and the fault knobs."""
from __future__ import annotations

import pytest

from minikern import devio
from hw import rtl8139_regs as regs
from minikern.boardctl import CtlError
from minikern.const import Err, IrqOp, KCall, Kind
from tests.conftest import wait_for
from tests.hw.test_board import UART_IER, Machine, inp, machine_fixture, outp  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(60)

NIC = 0xC000
WINDOW = 0x100000  # the nic service's memory window (64 KiB)
RING = WINDOW
RING_GRANT = 8192 + 16 + 1536  # an 8 KiB ring with WRAP spills up to one frame past its end
TXBUF = WINDOW + 0x9000
FRAME = bytes.fromhex("525400123456" "020000000002" "88b5") + bytes(range(46))


def pci_enable_master(ch: devio.Channel) -> None:
    for dev in range(32):
        ch.outl(0xCF8, 0x80000000 | dev << 11)
        if ch.inl(0xCFC) == 0x8139 << 16 | 0x10EC:
            ch.outl(0xCF8, 0x80000000 | dev << 11 | 0x04)
            ch.outw(0xCFC, 0x0005)  # I/O decoding and bus mastering
            return
    raise AssertionError("no RTL8139 on the bus")


def nic_start_receiving(ch: devio.Channel) -> None:
    """Sheet 1.9, receive side: reset, ring, grant, RE, accept everything."""
    pci_enable_master(ch)
    ch.outb(NIC + regs.CR, regs.CR_RST)
    ch.outl(NIC + regs.RBSTART, RING)
    ch.dma_grant("rtl8139", RING, RING_GRANT, True)
    ch.outw(NIC + regs.IMR, regs.ISR_ROK)
    ch.outb(NIC + regs.CR, regs.CR_RE | regs.CR_TE)
    ch.outl(NIC + regs.RCR, regs.RCR_AAP | regs.RCR_AB | regs.RCR_APM | regs.RCR_WRAP)


def test_dma_outside_the_grants_is_refused(machine: Machine) -> None:
    nic = machine.driver("nic")
    ch = devio.open_channel(nic)
    try:
        assert list(ch.windows) == [WINDOW] and len(ch.windows[WINDOW]) == 0x10000
        pci_enable_master(ch)
        ch.outb(NIC + regs.CR, regs.CR_TE)
        ch.memory(TXBUF, len(FRAME))[:] = FRAME  # in my window, but not granted to the NIC
        ch.outl(NIC + regs.TSAD0, TXBUF)
        ch.outl(NIC + regs.TSD0, len(FRAME))
        assert ch.inl(NIC + regs.TSD0) & regs.TSD_TABT
        ch.outl(NIC + regs.TSAD0 + 4, 0x5000)  # nobody's memory at all
        ch.outl(NIC + regs.TSD0 + 4, len(FRAME))
        assert ch.inl(NIC + regs.TSD0 + 4) & regs.TSD_TABT
        refused = machine.audit("DMA")
        assert [(r["label"], r["target"], r["op"]) for r in refused] == [
            ("nic", TXBUF, "read"), ("nic", 0x5000, "read")]
        assert all(r["caller"] == nic.endpoint and r["error"] == "EPERM" for r in refused)
        stats = machine.stats()
        assert stats["iommu"]["refusals"] == 2 and stats["nic"]["tx_aborted"] == 2
        assert stats["nic"]["wire"]["frames_sent"] == 0
        with pytest.raises(devio.ChannelError) as e:
            ch.dma_grant("rtl8139", 0x200000, 0x100, False)  # outside my windows
        assert e.value.code == Err.EPERM
        with pytest.raises(devio.ChannelError):
            ch.dma_grant("uart", TXBUF, 0x100, False)  # not a DMA device
        ch.dma_grant("rtl8139", TXBUF, 0x800, False)  # now the same frame may go
        ch.outl(NIC + regs.TSAD0 + 8, TXBUF)
        ch.outl(NIC + regs.TSD0 + 8, len(FRAME))
        assert ch.inl(NIC + regs.TSD0 + 8) & regs.TSD_TOK
    finally:
        ch.close()
    machine.peer.settimeout(10)
    assert machine.peer.recv(2048) == FRAME  # the first datagram is the granted frame
    assert machine.stats()["nic"]["wire"]["frames_sent"] == 1


def test_the_nic_outlives_its_driver(machine: Machine) -> None:
    nic = machine.driver("nic")
    ch = devio.open_channel(nic)
    nic_start_receiving(ch)
    ch.close()  # the channel goes; the driver and its grants stay
    machine.peer.sendto(FRAME, ("127.0.0.1", machine.nic_port))
    wait_for(lambda: machine.stats()["nic"]["rx_frames"] == 1, what="a frame in the ring")
    ch = devio.open_channel(nic)  # IOMAP again: the same memory window, the same device
    header = int.from_bytes(ch.memory(RING, 4), "little")
    assert header & 0xFFFF == regs.RXHDR_ROK | regs.RXHDR_PAM
    assert header >> 16 == len(FRAME) + 4 and bytes(ch.memory(RING + 4, len(FRAME))) == FRAME
    assert ch.inw(NIC + regs.CBR) == (len(FRAME) + 8 + 3) & ~3
    nic.close()  # the driver dies: the board drops its channel and DMA grants
    machine.system.conns.remove(nic)
    wait_for(lambda: machine.stats()["channels"] == 0, what="the channel dropped")
    ch.close()
    machine.peer.sendto(FRAME, ("127.0.0.1", machine.nic_port))
    wait_for(lambda: machine.stats()["nic"]["dma_faults"] == 1, what="a refused receive DMA")
    assert machine.stats()["nic"]["rx_frames"] == 1
    assert [r["target"] for r in machine.audit("DMA")] == [RING + (len(FRAME) + 8 + 3 & ~3)]
    successor = machine.driver("nic", "nic2")  # a fresh driver finds the device as it was left
    assert inp(successor, NIC + regs.CR) & (regs.CR_RE | regs.CR_TE) == regs.CR_RE | regs.CR_TE
    assert inp(successor, NIC + regs.RCR, 4) & regs.RCR_AAP
    ch = devio.open_channel(successor)
    try:
        assert bytes(ch.memory(RING + 4, len(FRAME))) == FRAME  # the pages outlived it too
        ch.outb(NIC + regs.CR, regs.CR_RST)  # the documented reset sequence starts over
        assert ch.inb(NIC + regs.CR) & (regs.CR_RE | regs.CR_TE) == 0
    finally:
        ch.close()


def test_knob_bad_sector(machine: Machine) -> None:
    disk = machine.driver("disk")
    with machine.ctl() as ctl:
        assert ctl.set("ata.bad_sectors", [5]) == [5]

    def read_sector(lba: int) -> tuple[int, int]:
        for port, value in ((0x1F2, 1), (0x1F3, lba), (0x1F4, 0), (0x1F5, 0), (0x1F6, 0xE0),
                            (0x1F7, 0x20)):
            outp(disk, port, value)
        return inp(disk, 0x1F7), inp(disk, 0x1F1)

    assert read_sector(5) == (0x41, 0x40)  # ERR, UNC
    assert read_sector(6)[0] == 0x58  # DRQ: a good sector


def test_knob_irq_disabled(machine: Machine) -> None:
    tty = machine.driver("tty")
    tty.kcall(KCall.IRQCTL, op=IrqOp.SETPOLICY, irq=4)
    with machine.ctl() as ctl:
        ctl.set("uart.irq_disabled", True)
        outp(tty, UART_IER, 0x02)  # would interrupt at once
        stats = ctl.stats()
        assert "4" not in stats["irq_sent"] and not stats["pic"]["irr"] & 1 << 4
        assert stats["irq_disabled"] == ["uart"]
        ctl.set("uart.irq_disabled", False)  # the line is still high: the edge arrives now
    m = tty.receive()
    assert (m.kind, m.source, m.aux) == (Kind.NOTIFY, -1, 1 << 4)


def test_knobs_for_the_wire_and_printer_and_bad_requests(machine: Machine) -> None:
    with machine.ctl() as ctl:
        ctl.set("nic.drop_rx", 1)
        machine.peer.sendto(FRAME, ("127.0.0.1", machine.nic_port))
        wait_for(lambda: ctl.stats()["nic"]["rx_dropped_wire"] == 1, what="a dropped frame")
        ctl.set("lpt.paper_out", True)
        ctl.set("lpt.offline", True)
        assert ctl.stats()["lpt"]["paper_out"] and ctl.stats()["lpt"]["offline"]
        for knob, value in (("no.such", 1), ("lpt.offline", "yes"), ("ata.bad_sectors", [-1]),
                            ("nic.drop_rx", {"rate": 2})):
            with pytest.raises(CtlError):
                ctl.set(knob, value)
        assert ctl.stats()["board"] is not None  # the socket survives refused requests
