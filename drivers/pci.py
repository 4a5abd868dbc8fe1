"""PCI configuration space by mechanism #1 (ports 0xCF8 and 0xCFC), for drivers.

The configuration address register is one for the whole machine, and every
driver that probes the bus writes it.  Written as two port accesses, an
address set by one driver can be replaced by another's before the first
reads or writes the data port: the first then reads someone else's register,
or writes its value into it (at_wini's COMMAND value landing in the NIC's
interrupt line left rtl8139 asking for the wrong IRQ at every restart).
MINIX serializes configuration accesses in its PCI server, Linux under
``pci_lock``; here each access is one batch of port operations, the address
and then the data, which the board carries out as one request, so no other
driver's access falls between them.
"""
from __future__ import annotations

from minikern.devio import Channel

CONFIG_ADDRESS, CONFIG_DATA = 0xCF8, 0xCFC
ENABLE = 0x80000000  # bit 31 of the address: a configuration cycle

# Registers of the type 0 header (dword offsets)
ID = 0x00  # vendor (low 16 bits), device (high)
COMMAND = 0x04  # command (low 16 bits), status (high; write one to clear)
CLASS = 0x08  # revision, prog-if, subclass, class
HEADER = 0x0C  # byte 2: header type (bit 7: multi-function)
BAR0, BAR4 = 0x10, 0x20
INTERRUPT = 0x3C  # byte 0: the interrupt line the firmware assigned
CMD_IO, CMD_MEMORY, CMD_MASTER = 0x0001, 0x0002, 0x0004


def address(dev: int, reg: int, fn: int = 0) -> int:
    """The configuration address of bus 0, device ``dev``, function ``fn``, dword ``reg``."""
    return ENABLE | (dev & 0x1F) << 11 | (fn & 0x7) << 8 | (reg & 0xFC)


def read(ch: Channel, dev: int, reg: int, fn: int = 0) -> int:
    """The dword at ``reg`` (all ones where no function answers)."""
    values = ch.vec([(CONFIG_ADDRESS, 4, address(dev, reg, fn)), (CONFIG_DATA, 4, None)])
    value = values[1]
    return value if type(value) is int else 0xFFFFFFFF


def write(ch: Channel, dev: int, reg: int, value: int, fn: int = 0) -> None:
    ch.vec([(CONFIG_ADDRESS, 4, address(dev, reg, fn)), (CONFIG_DATA, 4, value)])
