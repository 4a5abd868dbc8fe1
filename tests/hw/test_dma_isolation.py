"""DMA isolation between components: the NIC's driver cannot aim the NIC, nor the disk's
driver the IDE bus master, at another component's memory window, for reading (transmit,
WRITE DMA) or writing (receive, READ DMA).

The vault is a second driver holding its own memory window in the conf.  The NIC's
driver may program every NIC register, but the IOMMU only lets the NIC reach memory its
driver granted, and a driver may only grant inside its own windows.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import pytest

from minikern import devio
from hw import rtl8139_regs as regs
from minikern.const import Err
from tests.conftest import SystemUnderTest, wait_for
from tests.hw.test_board import BOARD_CONF, Machine, booted
from tests.hw.test_board_nic import FRAME, NIC, RING, RING_GRANT, TXBUF, pci_enable_master

pytestmark = pytest.mark.timeout(60)

VAULT = 0x200000  # the vault's memory window (4 KiB), disjoint from the nic's
VAULT_CONF = BOARD_CONF + """
service vault {{ system IOMAP; ipc SYSTEM; io 0x378:3; mem 0x200000:0x1000; }};
"""
# what the vault keeps: shaped like a frame, so a NIC that read it would put it on the wire
SECRET = bytes.fromhex("525400123456" "0200000000ff" "88b5") + b"vault secret" * 300


def handled(machine: Machine) -> int:
    """Transfers the NIC has finished, refused or not (the TX descriptor and the frame)."""
    nic = machine.stats()["nic"]
    return int(nic["dma_faults"] + nic["rx_frames"] + nic["tx_frames"])


@pytest.fixture(name="machine")
def vault_machine(make_system: Callable[..., SystemUnderTest]) -> Iterator[Machine]:
    with booted(make_system, VAULT_CONF) as m:
        yield m


def test_the_nic_cannot_reach_another_components_memory(machine: Machine) -> None:
    nic, vault = machine.driver("nic"), machine.driver("vault")
    vch = devio.open_channel(vault)
    nch = devio.open_channel(nic)
    try:
        assert list(vch.windows) == [VAULT] and VAULT not in nch.windows
        vch.memory(VAULT, len(SECRET))[:] = SECRET
        with pytest.raises(devio.ChannelError) as e:
            nch.memory(VAULT, 16)  # the nic's driver cannot map the vault's pages
        assert e.value.code == Err.EFAULT
        with pytest.raises(devio.ChannelError) as e:
            nch.dma_grant("rtl8139", VAULT, 0x1000, True)  # nor grant them to the NIC
        assert e.value.code == Err.EPERM

        pci_enable_master(nch)
        nch.outb(NIC + regs.CR, regs.CR_RST)
        nch.outl(NIC + regs.RBSTART, VAULT)  # receive into the vault ...
        nch.dma_grant("rtl8139", RING, RING_GRANT, True)  # ... while its own ring is granted
        nch.outb(NIC + regs.CR, regs.CR_RE | regs.CR_TE)
        nch.outl(NIC + regs.RCR, regs.RCR_AAP | regs.RCR_AB | regs.RCR_APM | regs.RCR_WRAP)
        nch.outl(NIC + regs.TSAD0, VAULT)  # and transmit the vault's bytes
        nch.outl(NIC + regs.TSD0, 200)
        assert nch.inl(NIC + regs.TSD0) & regs.TSD_TABT
        machine.peer.sendto(FRAME, ("127.0.0.1", machine.nic_port))
        wait_for(lambda: handled(machine) == 2, what="the frame refused or received")

        assert bytes(vch.memory(VAULT, len(SECRET))) == SECRET  # untouched
        assert bytes(vch.memory(VAULT + len(SECRET), 0x1000 - len(SECRET))) == bytes(
            0x1000 - len(SECRET))
        assert [(r["label"], r["target"], r["error"]) for r in machine.audit("DMAGRANT")] == [
            ("nic", VAULT, "EPERM")]
        refused = machine.audit("DMA")
        assert [(r["label"], r["target"], r["op"]) for r in refused] == [
            ("nic", VAULT, "read"), ("nic", VAULT, "write")]
        assert all(r["caller"] == nic.endpoint and r["error"] == "EPERM" for r in refused)
        stats = machine.stats()
        assert stats["iommu"]["refusals"] == 2
        assert stats["nic"]["tx_aborted"] == 1 and stats["nic"]["rx_frames"] == 0
        assert stats["nic"]["wire"]["frames_sent"] == 0

        nch.memory(TXBUF, len(FRAME))[:] = FRAME  # the nic's own memory, granted, does go
        nch.dma_grant("rtl8139", TXBUF, 0x800, False)
        nch.outl(NIC + regs.TSAD0 + 4, TXBUF)
        nch.outl(NIC + regs.TSD0 + 4, len(FRAME))
        assert nch.inl(NIC + regs.TSD0 + 4) & regs.TSD_TOK
    finally:
        nch.close()
        vch.close()
    machine.peer.settimeout(10)
    assert machine.peer.recv(2048) == FRAME  # the first datagram out: never the vault's bytes


# The disk: a driver granted only part of its window cannot aim the IDE bus master elsewhere.
WINI = 0x300000  # the disk driver's memory window (64 KiB)
PRDT, BUF = WINI, WINI + 0x1000  # granted: the PRD table (read) and one page (read/write)
UNGRANTED = WINI + 0x8000  # in its window, never granted
BMIDE = 0xC100  # hw.ata_dma.DEFAULT_BM_BASE
DISK_CONF = VAULT_CONF + """
service wini {{ system DEVIO SDEVIO IRQCTL IOMAP; ipc SYSTEM; irq 14;
               io 0x1f0:8 0x3f6 0xcf8:8 0xc100:16; mem 0x300000:0x10000; }};
"""


@pytest.fixture(name="disk_machine")
def disk_machine_fixture(make_system: Callable[..., SystemUnderTest]) -> Iterator[Machine]:
    with booted(make_system, DISK_CONF) as m:
        yield m


def ide_dma(ch: devio.Channel, command: int, lba: int, regions: list[tuple[int, int]]) -> int:
    """Sheet 2.8: PRD table at PRDT, the command, Start; the bus-master status after it."""
    table = b"".join(struct.pack("<IHH", base, n, 0x8000 if i == len(regions) - 1 else 0)
                     for i, (base, n) in enumerate(regions))
    ch.memory(PRDT, len(table))[:] = table
    ch.outl(BMIDE + 4, PRDT)
    ch.outb(BMIDE + 2, 0x06)  # clear Error and Interrupt
    direction = 0x08 if command == 0xC8 else 0x00
    ch.outb(BMIDE, direction)
    for port, value in ((0x1F6, 0xE0), (0x1F2, sum(n for _, n in regions) // 512),
                        (0x1F3, lba), (0x1F4, 0), (0x1F5, 0), (0x1F7, command)):
        ch.outb(port, value)
    ch.outb(BMIDE, direction | 0x01)
    status = ch.inb(BMIDE + 2)
    ch.outb(BMIDE, direction)
    return status


def test_the_disk_cannot_reach_another_components_memory(disk_machine: Machine) -> None:
    machine = disk_machine
    wini, vault = machine.driver("wini"), machine.driver("vault")
    vch, wch = devio.open_channel(vault), devio.open_channel(wini)
    image = machine.system.run_dir / "disk.img"
    try:
        vch.memory(VAULT, len(SECRET))[:] = SECRET
        wch.memory(UNGRANTED, 0x1000)[:] = bytes([0xEE]) * 0x1000
        with pytest.raises(devio.ChannelError) as e:
            wch.dma_grant("ata", VAULT, 0x1000, True)
        assert e.value.code == Err.EPERM
        wch.dma_grant("ata", PRDT, 0x100, False)
        wch.dma_grant("ata", BUF, 0x1000, True)
        wch.outl(0xCF8, 0x80000000 | 1 << 11 | 1 << 8 | 0x04)  # 00:01.1, the PIIX3 IDE
        wch.outw(0xCFC, 0x0005)  # I/O decoding and bus mastering

        assert ide_dma(wch, 0xC8, 0, [(BUF, 512), (VAULT, 512)]) & 0x07 == 0x06  # Error
        assert (wch.inb(0x1F7), wch.inb(0x1F1)) == (0x41, 0x04)  # ERR, ABRT
        assert ide_dma(wch, 0xC8, 0, [(UNGRANTED, 512)]) & 0x07 == 0x06
        assert ide_dma(wch, 0xCA, 3, [(VAULT, 512)]) & 0x07 == 0x06  # the vault to the disk
        assert bytes(vch.memory(VAULT, len(SECRET))) == SECRET  # untouched
        assert bytes(wch.memory(UNGRANTED, 0x1000)) == bytes([0xEE]) * 0x1000
        with image.open("rb") as f:
            f.seek(3 * 512)
            assert f.read(512) == bytes(512)  # nothing of the vault reached the disk
        refused = machine.audit("DMA")
        assert [(r["label"], r["target"], r["op"], r["device"]) for r in refused] == [
            ("wini", VAULT, "write", "ata"), ("wini", UNGRANTED, "write", "ata"),
            ("wini", VAULT, "read", "ata")]
        assert all(r["caller"] == wini.endpoint for r in refused)

        wch.memory(BUF, 1024)[:] = SECRET[:1024]  # its own granted page does go, both ways
        assert ide_dma(wch, 0xCA, 8, [(BUF, 1024)]) & 0x07 == 0x04
        wch.memory(BUF + 0x800, 1024)[:] = bytes(1024)
        assert ide_dma(wch, 0xC8, 8, [(BUF + 0x800, 1024)]) & 0x07 == 0x04
        assert bytes(wch.memory(BUF + 0x800, 1024)) == SECRET[:1024]
        stats = machine.stats()
        assert stats["iommu"]["refusals"] == 3 and stats["ata"]["dma"]["bus_errors"] == 3
    finally:
        wch.close()
        vch.close()
