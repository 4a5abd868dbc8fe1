"""The machine's physical memory and the IOMMU in front of it (runs in the board process).

``PhysicalMemory`` is one anonymous shared-memory file (``memfd_create``),
mapped into the board.  Its descriptor is what the board later hands to
drivers over a Unix socket, so a driver maps the very same pages and DMA
buffers need no copying.  The file is sealed against growing and shrinking:
a driver holding the fd could otherwise truncate it and make the board's
mapping fault (SIGBUS) on the next device access.

``Iommu`` stands between devices and that memory.  Each device has a grant
table of (base, length, write) ranges that its driver has granted to it; a
device reaches memory only through the ``DmaPort`` from ``port_for(device)``,
which checks that every byte of a transfer lies in the union of the device's
grants (any grant allows reading memory, i.e. device-bound DMA; writing
memory needs a grant with ``write=True``).  A refused transfer is counted,
reported to the ``audit`` callback as a record with the device, address,
length and operation, and raised as ``DmaFault``, which the device treats as
a bus error.
"""
from __future__ import annotations

import fcntl
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hw.device import DmaFault

AuditHook = Callable[[dict[str, object]], None]


class Memory(Protocol):
    """What the IOMMU needs of physical memory: one ``PhysicalMemory``, or the board's
    address space of several windows (``hw.board_machine.AddressSpace``)."""

    def contains(self, addr: int, length: int) -> bool: ...
    def read(self, addr: int, length: int) -> bytes: ...
    def write(self, addr: int, data: bytes) -> None: ...


class PhysicalMemory:
    """``size`` bytes of shared, zero-filled RAM backed by a memfd."""

    def __init__(self, size: int, name: str = "minikern-ram") -> None:
        if size <= 0:
            raise ValueError("memory size must be positive")
        self.size = size
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(self.fd, size)
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        self._map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def contains(self, addr: int, length: int) -> bool:
        return addr >= 0 and length >= 0 and addr + length <= self.size

    def read(self, addr: int, length: int) -> bytes:
        if not self.contains(addr, length):
            raise DmaFault(f"read of {length} bytes at {addr:#x} is outside memory")
        return self._map[addr:addr + length]

    def write(self, addr: int, data: bytes) -> None:
        if not self.contains(addr, len(data)):
            raise DmaFault(f"write of {len(data)} bytes at {addr:#x} is outside memory")
        self._map[addr:addr + len(data)] = data

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)


@dataclass(frozen=True)
class Grant:
    base: int
    length: int
    write: bool
    owner: int = 0  # who made it (a driver's endpoint): only its own grants go when it goes

    @property
    def end(self) -> int:
        return self.base + self.length


class Iommu:
    """Per-device grant tables in front of ``memory``."""

    def __init__(self, memory: Memory, audit: AuditHook | None = None) -> None:
        self.memory = memory
        self._audit = audit
        self._grants: dict[str, list[Grant]] = {}
        self.refusals = 0

    def grant(self, device: str, base: int, length: int, write: bool, owner: int = 0) -> None:
        """Let ``device`` reach [base, base+length); ``write`` also lets it write there."""
        if length <= 0 or not self.memory.contains(base, length):
            raise ValueError(f"grant {base:#x}+{length:#x} is not inside memory")
        self._grants.setdefault(device, []).append(Grant(base, length, write, owner))

    def revoke(self, device: str, base: int | None = None, owner: int | None = None) -> int:
        """Drop the grants of ``device`` starting at ``base`` (all if None) made by ``owner``
        (anyone's if None); returns how many."""
        grants = self._grants.get(device, [])
        kept = [g for g in grants if (base is not None and g.base != base)
                or (owner is not None and g.owner != owner)]
        if kept:
            self._grants[device] = kept
        else:
            self._grants.pop(device, None)
        return len(grants) - len(kept)

    def grants(self, device: str) -> list[Grant]:
        return list(self._grants.get(device, []))

    def allows(self, device: str, addr: int, length: int, write: bool) -> bool:
        """True if every byte of [addr, addr+length) is covered by suitable grants."""
        if length <= 0:
            return length == 0
        covering = sorted((g for g in self._grants.get(device, [])
                           if (g.write or not write) and g.base < addr + length and g.end > addr),
                          key=lambda g: g.base)
        reached = addr  # everything below this is covered
        for g in covering:
            if g.base > reached:
                return False
            reached = max(reached, g.end)
            if reached >= addr + length:
                return True
        return False

    def check(self, device: str, addr: int, length: int, write: bool) -> None:
        """Raise DmaFault (counted and audited) unless the transfer is granted."""
        if self.allows(device, addr, length, write):
            return
        self.refusals += 1
        if self._audit is not None:
            self._audit({"device": device, "address": addr, "length": length,
                         "op": "write" if write else "read"})
        raise DmaFault(f"{device}: DMA {'write' if write else 'read'} of {length} bytes "
                       f"at {addr:#x} not granted")

    def port_for(self, device: str) -> IommuPort:
        return IommuPort(self, device)


class IommuPort:
    """A device's ``DmaPort``: memory as seen through its grant table."""

    def __init__(self, iommu: Iommu, device: str) -> None:
        self._iommu = iommu
        self.device = device

    def read(self, addr: int, length: int) -> bytes:
        self._iommu.check(self.device, addr, length, write=False)
        return self._iommu.memory.read(addr, length)

    def write(self, addr: int, data: bytes) -> None:
        self._iommu.check(self.device, addr, len(data), write=True)
        self._iommu.memory.write(addr, data)
