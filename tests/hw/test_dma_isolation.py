"""DMA isolation between components: the NIC's driver cannot aim the NIC at another
component's memory window, for reading (transmit) or writing (receive).

The vault is a second driver holding its own memory window in the conf.  The NIC's
driver may program every NIC register, but the IOMMU only lets the NIC reach memory its
driver granted, and a driver may only grant inside its own windows.
"""
from __future__ import annotations

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
