"""PCI configuration mechanism #1 and config space, driven through ports 0xCF8/0xCFC only."""
from __future__ import annotations

import pytest

from hw import rtl8139_regs as regs
from hw.pci import (
    PCI_BASE_ADDRESS_0,
    PCI_COMMAND,
    PCI_COMMAND_IO,
    PCI_COMMAND_MASTER,
    PCI_HEADER_TYPE,
    PCI_INTERRUPT_LINE,
    PCI_STATUS,
    PCI_STATUS_REC_MASTER_ABORT,
    PciBus,
    PciFunction,
    host_bridge,
)
from tests.hw.conftest_net import MemoryDma, PortSpace, make_nic


def scan(ports: PortSpace) -> dict[tuple[int, int], tuple[int, int, int]]:
    """What an OS does at boot: (device, function) -> (vendor, device id, class code)."""
    found = {}
    for dev in range(32):
        for fn in range(8):
            ids = ports.config_read(dev, 0x00, 4, fn)
            if ids == 0xFFFFFFFF:
                if fn == 0:
                    break
                continue
            class_code = ports.config_read(dev, 0x08, 4, fn) >> 8
            found[(dev, fn)] = (ids & 0xFFFF, ids >> 16, class_code)
            if fn == 0 and not ports.config_read(dev, PCI_HEADER_TYPE, 1) & 0x80:
                break
    return found


def test_scan_finds_host_bridge_and_nic() -> None:
    _, ports = make_nic(MemoryDma())
    assert scan(ports) == {
        (0, 0): (0x8086, 0x1237, 0x060000),
        (3, 0): (0x10EC, 0x8139, 0x020000),
    }


def test_nic_identity_fields_at_their_offsets() -> None:
    _, ports = make_nic(MemoryDma())
    assert ports.config_read(3, 0x00, 2) == 0x10EC
    assert ports.config_read(3, 0x02, 2) == 0x8139
    assert ports.config_read(3, 0x08, 1) == 0x20           # revision
    assert ports.config_read(3, 0x0B, 1) == 0x02           # base class: network (lane 3)
    assert ports.config_read(3, 0x0A, 1) == 0x00           # subclass: Ethernet
    assert ports.config_read(3, PCI_HEADER_TYPE, 1) == 0x00
    assert ports.config_read(3, PCI_INTERRUPT_LINE, 1) == 11
    assert ports.config_read(3, 0x3D, 1) == 1              # INTA#
    assert ports.config_read(3, PCI_BASE_ADDRESS_0, 4) == 0xC001
    assert ports.config_read(3, PCI_COMMAND, 2) == PCI_COMMAND_IO   # firmware: I/O on, no bus master


def test_identity_fields_are_read_only() -> None:
    _, ports = make_nic(MemoryDma())
    ports.config_write(3, 0x00, 4, 0x12345678)
    ports.config_write(3, 0x08, 4, 0xFFFFFFFF)
    ports.config_write(3, 0x3D, 1, 7)
    assert ports.config_read(3, 0x00, 4) == 0x813910EC
    assert ports.config_read(3, 0x08, 4) == 0x02000020
    assert ports.config_read(3, 0x3D, 1) == 1


def test_absent_functions_and_other_buses_read_all_ones() -> None:
    _, ports = make_nic(MemoryDma())
    assert ports.config_read(5, 0x00, 4) == 0xFFFFFFFF
    assert ports.config_read(3, 0x00, 4, fn=1) == 0xFFFFFFFF
    assert ports.config_read(3, 0x00, 2) == 0x10EC
    ports.write(0xCF8, 4, 0x80000000 | 1 << 16 | 3 << 11)      # bus 1
    assert ports.read(0xCFC, 4) == 0xFFFFFFFF
    ports.write(0xCF8, 4, 3 << 11)                             # enable bit clear
    assert ports.read(0xCFC, 4) == 0xFFFFFFFF
    ports.write(0xCFC, 4, 0)                                   # ignored
    assert ports.config_read(3, 0x00, 2) == 0x10EC


def test_config_address_register() -> None:
    bus = PciBus()
    bus.io_write(0xCF8, 4, 0xFFFFFFFF)
    assert bus.io_read(0xCF8, 4) == 0x80FFFFFC                 # reserved bits 30:24 and 1:0 read 0
    bus.io_write(0xCF8, 1, 0x00)                               # not a dword: not the address register
    assert bus.io_read(0xCF8, 4) == 0x80FFFFFC
    assert bus.io_read(0xCF8, 2) == 0xFFFF


def test_bar0_size_probe_reports_256_byte_io_window() -> None:
    _, ports = make_nic(MemoryDma())
    original = ports.config_read(3, PCI_BASE_ADDRESS_0, 4)
    ports.config_write(3, PCI_BASE_ADDRESS_0, 4, 0xFFFFFFFF)
    probe = ports.config_read(3, PCI_BASE_ADDRESS_0, 4)
    assert probe & 1 == 1                                      # I/O space
    assert probe == 0xFFFFFF01
    assert (~(probe & 0xFFFFFFFC) & 0xFFFFFFFF) + 1 == 256
    ports.config_write(3, PCI_BASE_ADDRESS_0, 4, original)
    assert ports.config_read(3, PCI_BASE_ADDRESS_0, 4) == 0xC001
    assert ports.config_read(3, PCI_BASE_ADDRESS_0 + 4, 4) == 0   # unimplemented BAR1: probe reads 0
    ports.config_write(3, PCI_BASE_ADDRESS_0 + 4, 4, 0xFFFFFFFF)
    assert ports.config_read(3, PCI_BASE_ADDRESS_0 + 4, 4) == 0


def test_moving_bar0_moves_the_register_window() -> None:
    _, ports = make_nic(MemoryDma())
    assert ports.read(0xC000 + regs.REVID, 1) == 0x20
    ports.config_write(3, PCI_BASE_ADDRESS_0, 4, 0xD000)
    assert ports.config_read(3, PCI_BASE_ADDRESS_0, 4) == 0xD001
    assert ports.read(0xD000 + regs.REVID, 1) == 0x20
    assert ports.read(0xC000 + regs.REVID, 1) == 0xFF


def test_io_decoding_follows_command_register() -> None:
    _, ports = make_nic(MemoryDma())
    ports.config_write(3, PCI_COMMAND, 2, 0)
    assert ports.read(0xC000 + regs.TCR, 4) == 0xFFFFFFFF
    ports.config_write(3, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MASTER)
    assert ports.config_read(3, PCI_COMMAND, 2) == PCI_COMMAND_IO | PCI_COMMAND_MASTER
    assert ports.read(0xC000 + regs.TCR, 4) == regs.TCR_RESET


def test_status_error_bits_are_write_one_to_clear() -> None:
    nic, ports = make_nic(MemoryDma())
    nic.set_status(PCI_STATUS_REC_MASTER_ABORT)
    ports.config_write(3, PCI_STATUS, 2, 0)
    assert ports.config_read(3, PCI_STATUS, 2) & PCI_STATUS_REC_MASTER_ABORT
    ports.config_write(3, PCI_STATUS, 2, PCI_STATUS_REC_MASTER_ABORT)
    assert not ports.config_read(3, PCI_STATUS, 2) & PCI_STATUS_REC_MASTER_ABORT


def test_interrupt_line_is_a_writable_note() -> None:
    _, ports = make_nic(MemoryDma())
    ports.config_write(3, PCI_INTERRUPT_LINE, 1, 10)
    assert ports.config_read(3, PCI_INTERRUPT_LINE, 1) == 10
    assert ports.config_read(3, 0x3C, 2) == 0x010A             # line and pin in one word


def test_reset_restores_firmware_configuration() -> None:
    nic, ports = make_nic(MemoryDma())
    ports.config_write(3, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MASTER)
    ports.config_write(3, PCI_BASE_ADDRESS_0, 4, 0xD000)
    nic.reset()
    assert ports.config_read(3, PCI_COMMAND, 2) == PCI_COMMAND_IO
    assert ports.config_read(3, PCI_BASE_ADDRESS_0, 4) == 0xC001
    assert nic.ports == ((0xC000, 256),)


def test_multifunction_and_slot_rules() -> None:
    bus = PciBus()
    with pytest.raises(ValueError):
        bus.attach(2, 1, host_bridge())                        # function 1 before function 0
    bus.attach(2, 0, PciFunction(0x1234, 0x0001, 0x0C0300, 1))
    bus.attach(2, 1, PciFunction(0x1234, 0x0002, 0x0C0300, 1))
    with pytest.raises(ValueError):
        bus.attach(2, 1, host_bridge())
    with pytest.raises(ValueError):
        bus.attach(32, 0, host_bridge())
    ports = PortSpace([bus])
    assert ports.config_read(2, PCI_HEADER_TYPE, 1) == 0x80
    assert scan(ports) == {(2, 0): (0x1234, 1, 0x0C0300), (2, 1): (0x1234, 2, 0x0C0300)}


def test_bar_declaration_is_validated() -> None:
    function = PciFunction(0x1234, 0x5678, 0, 0)
    with pytest.raises(ValueError):
        function.add_bar(0, 100, io=True, base=0)
    with pytest.raises(ValueError):
        function.add_bar(0, 256, io=True, base=0xC010)
    function.add_bar(1, 4096, io=False, base=0xFEB00000)
    function.write_config(0x14, 4, 0xFFFFFFFF)
    assert function.read_config(0x14, 4) == 0xFFFFF000
    assert function.read_config(0xFE, 4) == 0xFFFFFFFF          # past the end: no exception
