"""Two drivers probing PCI configuration space at once (drivers/pci.py): each access is one
board request, so neither reads nor writes a register the other addressed."""
from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from drivers import pci
from hw import rtl8139_regs as regs
from minikern import devio
from tests.conftest import SystemUnderTest
from tests.hw.test_board import BOARD_CONF, booted

pytestmark = pytest.mark.timeout(120)

# a second driver with the configuration ports in its windows, as at_wini has them
CONF = BOARD_CONF + "service ide {{ system DEVIO IOMAP; ipc SYSTEM; io 0xcf8:8 0x1f0:8; }};\n"
ROUNDS = 300
IDE_CLASS = 0x0101  # mass storage, IDE (drivers/at_wini/regs.py's PCI_CLASS_IDE)


def find(ch: devio.Channel, match: Callable[[int, int], bool]) -> tuple[int, int]:
    for dev in range(32):
        for fn in range(8):
            if match(pci.read(ch, dev, pci.ID, fn), pci.read(ch, dev, pci.CLASS, fn)):
                return dev, fn
    raise AssertionError("no such function on the bus")


def test_two_drivers_probing_at_once_each_reach_their_own_registers(
        make_system: Callable[..., SystemUnderTest]) -> None:
    with booted(make_system, CONF) as machine:
        nic_ch = devio.open_channel(machine.driver("nic"))
        ide_ch = devio.open_channel(machine.driver("ide"))
        nic = find(nic_ch, lambda ident, _: ident == regs.DEVICE_ID << 16 | regs.VENDOR_ID)
        ide = find(ide_ch, lambda _, cls: cls >> 16 == IDE_CLASS)
        nic_id, nic_irq = pci.read(nic_ch, nic[0], pci.ID), pci.read(nic_ch, nic[0], pci.INTERRUPT)
        ide_id = pci.read(ide_ch, ide[0], pci.ID, ide[1])
        ide_cmd = pci.read(ide_ch, ide[0], pci.COMMAND, ide[1]) & 0xFFFF
        seen: dict[str, set[int]] = {"nic": set(), "ide": set()}
        failures: list[BaseException] = []

        def nic_driver() -> None:  # rtl8139's probe: identity and interrupt line, again and again
            try:
                for _ in range(ROUNDS):
                    seen["nic"].add(pci.read(nic_ch, nic[0], pci.ID))
                    seen["nic"].add(pci.read(nic_ch, nic[0], pci.INTERRUPT) & 0xFF)
            except BaseException as e:  # noqa: BLE001 (reported by the test thread)
                failures.append(e)

        def ide_driver() -> None:  # at_wini's: read the class, write COMMAND back
            try:
                for _ in range(ROUNDS):
                    seen["ide"].add(pci.read(ide_ch, ide[0], pci.ID, ide[1]))
                    pci.write(ide_ch, ide[0], pci.COMMAND, ide_cmd, ide[1])
            except BaseException as e:  # noqa: BLE001
                failures.append(e)

        threads = [threading.Thread(target=f) for f in (nic_driver, ide_driver)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(100)
        assert not failures and not any(t.is_alive() for t in threads), failures
        assert seen == {"nic": {nic_id, nic_irq & 0xFF}, "ide": {ide_id}}
        # nothing the IDE driver wrote landed in the NIC's registers
        assert pci.read(nic_ch, nic[0], pci.INTERRUPT) == nic_irq and nic_irq & 0xFF == 11
        nic_ch.close()
        ide_ch.close()
