"""PCI configuration mechanism #1 and the functions on bus 0 (runs in the board process).

``PciBus`` is the board's host bridge.  It answers port 0xCF8 (CONFIG_ADDRESS)
and ports 0xCFC-0xCFF (CONFIG_DATA), and routes each configuration access to
the ``PciFunction`` at bus 0, device d, function f.  A device model that sits
on PCI (the RTL8139) subclasses ``PciFunction`` for its configuration space
and stays an ordinary ``hw.device.Device`` for its I/O window.

Invariants and modelling choices:

* A function's configuration space is a 256-byte image with two per-byte masks,
  as in QEMU: ``wmask`` (bits software may write) and ``w1cmask`` (status bits
  a written 1 clears).  The identity fields (vendor, device, revision, class,
  header type, interrupt pin) are read-only because their wmask is zero.
* The BAR size probe falls out of the masks: a BAR's base bits above its size
  are writable, its low bits are not, so writing 0xFFFFFFFF reads back
  ``~(size - 1) | type bits`` (0xFFFFFF01 for a 256-byte I/O BAR).
* The board plays the firmware: it chooses BAR bases and the interrupt line
  and enables I/O decoding before the OS runs; bus mastering is left off for
  the driver to enable.  ``reset_config`` returns to that firmware state.
* CONFIG_ADDRESS is decoded only on 32-bit accesses at 0xCF8 (a byte or word
  access there is not the config address on a PC); other accesses to it read
  as 1s and are ignored.  Reserved bits 30:24 and 1:0 read as 0.  Port 0xCF9
  (PIIX reset control) is not modelled.
* Only bus 0 exists.  An absent function, another bus, or a data access with
  the enable bit clear reads all 1s (vendor 0xFFFF), as a PC reports a master
  abort on a configuration read; writes to them are ignored.
* The interrupt line byte (0x3C) is a note the firmware leaves for the
  driver; writing it does not reroute the interrupt (true on PCs too).
* Expansion ROM and capabilities are not modelled (they read 0).
"""
from __future__ import annotations

from hw.device import Device

# I/O ports of configuration mechanism #1.
CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC
CONFIG_ENABLE = 0x80000000
CONFIG_ADDRESS_MASK = 0x80FFFFFC  # enable, bus, device, function, dword-aligned register

# Type-0 configuration header offsets (names as in Linux pci_regs.h).
PCI_VENDOR_ID = 0x00
PCI_DEVICE_ID = 0x02
PCI_COMMAND = 0x04
PCI_STATUS = 0x06
PCI_REVISION_ID = 0x08
PCI_CLASS_PROG = 0x09  # class code: prog-if 0x09, subclass 0x0A, base class 0x0B
PCI_CACHE_LINE_SIZE = 0x0C
PCI_LATENCY_TIMER = 0x0D
PCI_HEADER_TYPE = 0x0E
PCI_BASE_ADDRESS_0 = 0x10
PCI_INTERRUPT_LINE = 0x3C
PCI_INTERRUPT_PIN = 0x3D
CONFIG_SPACE_SIZE = 256
BAR_COUNT = 6

# Command register bits.
PCI_COMMAND_IO = 0x0001
PCI_COMMAND_MEMORY = 0x0002
PCI_COMMAND_MASTER = 0x0004
PCI_COMMAND_PARITY = 0x0040
PCI_COMMAND_SERR = 0x0100
PCI_COMMAND_INTX_DISABLE = 0x0400
COMMAND_WRITABLE = (PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER
                    | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE)

# Status register bits; the error bits are write-1-to-clear.
PCI_STATUS_REC_MASTER_ABORT = 0x2000
STATUS_W1C = 0xF900  # detected parity, signalled SERR, master/target abort, data parity

# Header type and BAR bits.
PCI_HEADER_TYPE_MULTI_FUNCTION = 0x80
PCI_BASE_ADDRESS_SPACE_IO = 0x01
PCI_BASE_ADDRESS_IO_MASK = 0xFFFFFFFC
PCI_BASE_ADDRESS_MEM_MASK = 0xFFFFFFF0

MAX_DEVICE = 31
MAX_FUNCTION = 7


class PciFunction:
    """One PCI function: its 256-byte configuration space and the masks that govern writes."""

    def __init__(self, vendor_id: int, device_id: int, class_code: int,
                 revision: int, interrupt_pin: int = 0) -> None:
        self.config = bytearray(CONFIG_SPACE_SIZE)
        self._wmask = bytearray(CONFIG_SPACE_SIZE)
        self._w1cmask = bytearray(CONFIG_SPACE_SIZE)
        self._bar_sizes = [0] * BAR_COUNT
        self._put(PCI_VENDOR_ID, 2, vendor_id)
        self._put(PCI_DEVICE_ID, 2, device_id)
        self._put(PCI_REVISION_ID, 1, revision)
        self._put(PCI_CLASS_PROG, 3, class_code)
        self._put(PCI_INTERRUPT_PIN, 1, interrupt_pin)
        self._put_mask(self._wmask, PCI_COMMAND, 2, COMMAND_WRITABLE)
        self._put_mask(self._w1cmask, PCI_STATUS, 2, STATUS_W1C)
        for offset in (PCI_CACHE_LINE_SIZE, PCI_LATENCY_TIMER, PCI_INTERRUPT_LINE):
            self._wmask[offset] = 0xFF
        self._firmware_image = bytes(self.config)

    # -- set-up by the board (the firmware's role) -------------------------

    def add_bar(self, index: int, size: int, io: bool, base: int) -> None:
        """Declare BAR ``index`` decoding ``size`` bytes (a power of two) and place it at ``base``."""
        if not 0 <= index < BAR_COUNT:
            raise ValueError(f"BAR index {index} out of range")
        if size < (4 if io else 16) or size & (size - 1):
            raise ValueError(f"BAR size {size} is not a power of two large enough")
        if base % size:
            raise ValueError(f"BAR base {base:#x} is not aligned to its size {size:#x}")
        offset = PCI_BASE_ADDRESS_0 + 4 * index
        self._bar_sizes[index] = size
        self._put_mask(self._wmask, offset, 4, ~(size - 1) & 0xFFFFFFFF)
        self._put(offset, 4, base | (PCI_BASE_ADDRESS_SPACE_IO if io else 0))

    def set_interrupt_line(self, irq: int) -> None:
        """Record the ISA IRQ the board wired INTA# to (what a driver reads at 0x3C)."""
        self._put(PCI_INTERRUPT_LINE, 1, irq)

    def set_command(self, bits: int) -> None:
        """Set command register bits, as firmware does to enable I/O decoding."""
        self._put(PCI_COMMAND, 2, self.command | (bits & COMMAND_WRITABLE))

    def snapshot_config(self) -> None:
        """Remember the current configuration as the state ``reset_config`` restores."""
        self._firmware_image = bytes(self.config)

    def reset_config(self) -> None:
        """Power-on reset of the configuration space: back to what the firmware set up."""
        self.config[:] = self._firmware_image
        self.config_written(0, CONFIG_SPACE_SIZE)

    # -- what the device model asks ----------------------------------------

    @property
    def command(self) -> int:
        return self._get(PCI_COMMAND, 2)

    @property
    def io_enabled(self) -> bool:
        return bool(self.command & PCI_COMMAND_IO)

    @property
    def bus_master(self) -> bool:
        return bool(self.command & PCI_COMMAND_MASTER)

    @property
    def intx_disabled(self) -> bool:
        return bool(self.command & PCI_COMMAND_INTX_DISABLE)

    def bar_base(self, index: int) -> int:
        """The address BAR ``index`` currently decodes (type bits stripped)."""
        raw = self._get(PCI_BASE_ADDRESS_0 + 4 * index, 4)
        if raw & PCI_BASE_ADDRESS_SPACE_IO:
            return raw & PCI_BASE_ADDRESS_IO_MASK
        return raw & PCI_BASE_ADDRESS_MEM_MASK

    def set_status(self, bits: int) -> None:
        """Latch status bits (e.g. received master abort); software clears them by writing 1."""
        self._put(PCI_STATUS, 2, self._get(PCI_STATUS, 2) | bits)

    def config_written(self, offset: int, size: int) -> None:
        """Hook for subclasses: configuration bytes [offset, offset+size) may have changed."""

    # -- configuration cycles from the bus ---------------------------------

    def read_config(self, offset: int, size: int) -> int:
        """Read ``size`` bytes of configuration space at ``offset``."""
        if offset < 0 or size not in (1, 2, 4) or offset + size > CONFIG_SPACE_SIZE:
            return (1 << (8 * size)) - 1
        return self._get(offset, size)

    def write_config(self, offset: int, size: int, value: int) -> None:
        """Write ``size`` bytes at ``offset`` through the write and W1C masks."""
        if offset < 0 or size not in (1, 2, 4) or offset + size > CONFIG_SPACE_SIZE:
            return
        for i in range(size):
            byte = (value >> (8 * i)) & 0xFF
            at = offset + i
            wmask, w1c = self._wmask[at], self._w1cmask[at]
            self.config[at] = ((self.config[at] & ~wmask) | (byte & wmask)) & ~(byte & w1c) & 0xFF
        self.config_written(offset, size)

    def _get(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset:offset + size], "little")

    def _put(self, offset: int, size: int, value: int) -> None:
        self.config[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    @staticmethod
    def _put_mask(mask: bytearray, offset: int, size: int, value: int) -> None:
        mask[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def host_bridge() -> PciFunction:
    """An Intel 440FX host bridge (8086:1237) for 00:00.0, so scans see a PC-like bus."""
    return PciFunction(vendor_id=0x8086, device_id=0x1237, class_code=0x060000, revision=0x02)


class PciBus(Device):
    """Bus 0 behind configuration mechanism #1."""

    name = "pci"
    ports = ((CONFIG_ADDRESS, 4), (CONFIG_DATA, 4))

    def __init__(self) -> None:
        self.address = 0
        self._functions: dict[tuple[int, int], PciFunction] = {}

    def attach(self, device: int, function: int, target: PciFunction) -> None:
        """Plug ``target`` in as 00:device.function (function 0 must come first)."""
        if not (0 <= device <= MAX_DEVICE and 0 <= function <= MAX_FUNCTION):
            raise ValueError(f"no PCI slot {device}.{function}")
        if (device, function) in self._functions:
            raise ValueError(f"PCI slot {device}.{function} is taken")
        if function:
            first = self._functions.get((device, 0))
            if first is None:
                raise ValueError(f"device {device} needs function 0 before function {function}")
            first.config[PCI_HEADER_TYPE] |= PCI_HEADER_TYPE_MULTI_FUNCTION
            first.snapshot_config()
        self._functions[(device, function)] = target

    def function_at(self, bus: int, device: int, function: int) -> PciFunction | None:
        if bus != 0:
            return None
        return self._functions.get((device, function))

    def io_read(self, port: int, size: int) -> int:
        ones = (1 << (8 * size)) - 1
        if port == CONFIG_ADDRESS:
            return self.address if size == 4 else ones
        target, offset = self._decode(port, size)
        if target is None:
            return ones
        return target.read_config(offset, size)

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == CONFIG_ADDRESS:
            if size == 4:
                self.address = value & CONFIG_ADDRESS_MASK
            return
        target, offset = self._decode(port, size)
        if target is not None:
            target.write_config(offset, size, value)

    def reset(self) -> None:
        self.address = 0
        for target in self._functions.values():
            target.reset_config()

    def _decode(self, port: int, size: int) -> tuple[PciFunction | None, int]:
        """The function and register offset a CONFIG_DATA access at ``port`` reaches."""
        lane = port - CONFIG_DATA
        if not (self.address & CONFIG_ENABLE) or lane < 0 or lane + size > 4:
            return None, 0
        bus = (self.address >> 16) & 0xFF
        device = (self.address >> 11) & 0x1F
        function = (self.address >> 8) & 0x07
        return self.function_at(bus, device, function), (self.address & 0xFC) + lane
