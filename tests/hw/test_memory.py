"""Physical memory (shared memfd) and the IOMMU's grant checks and audit trail."""
from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import pytest

from hw.device import DmaFault
from hw.memory import Iommu, PhysicalMemory

SIZE = 1 << 20


@pytest.fixture
def memory() -> Iterator[PhysicalMemory]:
    ram = PhysicalMemory(SIZE)
    yield ram
    ram.close()


@pytest.fixture
def audit() -> list[dict[str, object]]:
    return []


@pytest.fixture
def iommu(memory: PhysicalMemory, audit: list[dict[str, object]]) -> Iommu:
    return Iommu(memory, audit.append)


def test_memory_is_zeroed_and_shared_through_its_fd(memory: PhysicalMemory) -> None:
    assert memory.read(0, 16) == bytes(16)
    memory.write(0x1000, b"board")
    other = mmap.mmap(memory.fd, SIZE, mmap.MAP_SHARED)  # what a driver would map
    try:
        assert other[0x1000:0x1005] == b"board"
        other[0x2000:0x2006] = b"driver"
        assert memory.read(0x2000, 6) == b"driver"
    finally:
        other.close()


def test_memory_cannot_be_resized_by_a_fd_holder(memory: PhysicalMemory) -> None:
    with pytest.raises(PermissionError):
        os.ftruncate(memory.fd, SIZE // 2)


def test_memory_bounds(memory: PhysicalMemory) -> None:
    with pytest.raises(DmaFault):
        memory.read(SIZE - 4, 8)
    with pytest.raises(DmaFault):
        memory.write(-1, b"x")


def test_ungranted_dma_is_refused_and_audited(iommu: Iommu,
                                              audit: list[dict[str, object]]) -> None:
    port = iommu.port_for("rtl8139")
    with pytest.raises(DmaFault):
        port.write(0x3000, b"frame")
    assert iommu.refusals == 1
    assert audit == [{"device": "rtl8139", "address": 0x3000, "length": 5, "op": "write"}]


def test_granted_dma_reaches_memory(iommu: Iommu, memory: PhysicalMemory) -> None:
    iommu.grant("rtl8139", 0x3000, 0x1000, write=True)
    port = iommu.port_for("rtl8139")
    port.write(0x3FF0, b"x" * 16)
    assert memory.read(0x3FF0, 16) == b"x" * 16
    assert port.read(0x3000, 4) == bytes(4)
    assert iommu.refusals == 0


def test_every_byte_must_be_granted(iommu: Iommu, audit: list[dict[str, object]]) -> None:
    iommu.grant("ata", 0x3000, 0x1000, write=True)
    port = iommu.port_for("ata")
    with pytest.raises(DmaFault):
        port.read(0x3FFF, 2)  # one byte past the end
    with pytest.raises(DmaFault):
        port.read(0x2FFF, 2)  # one byte before the start
    assert iommu.refusals == 2 and len(audit) == 2


def test_adjacent_grants_cover_a_straddling_transfer(iommu: Iommu) -> None:
    iommu.grant("ata", 0x3000, 0x1000, write=False)
    iommu.grant("ata", 0x4000, 0x1000, write=False)
    assert iommu.port_for("ata").read(0x3F00, 0x200) == bytes(0x200)


def test_read_only_grant_refuses_device_writes(iommu: Iommu,
                                               audit: list[dict[str, object]]) -> None:
    iommu.grant("rtl8139", 0x5000, 0x800, write=False)
    port = iommu.port_for("rtl8139")
    assert port.read(0x5000, 0x800) == bytes(0x800)
    with pytest.raises(DmaFault):
        port.write(0x5000, b"\xff")
    assert audit[-1]["op"] == "write"


def test_grants_are_per_device(iommu: Iommu) -> None:
    iommu.grant("rtl8139", 0x3000, 0x1000, write=True)
    with pytest.raises(DmaFault):
        iommu.port_for("ata").read(0x3000, 1)


def test_revoke_by_base_and_all(iommu: Iommu) -> None:
    iommu.grant("rtl8139", 0x3000, 0x1000, write=True)
    iommu.grant("rtl8139", 0x8000, 0x1000, write=True)
    port = iommu.port_for("rtl8139")
    assert iommu.revoke("rtl8139", 0x3000) == 1
    with pytest.raises(DmaFault):
        port.read(0x3000, 1)
    port.read(0x8000, 1)
    assert iommu.revoke("rtl8139") == 1
    with pytest.raises(DmaFault):
        port.read(0x8000, 1)
    assert iommu.grants("rtl8139") == []
    assert iommu.revoke("nobody") == 0


@pytest.mark.parametrize("base, length", [(SIZE - 1, 2), (0, 0), (-4, 8)])
def test_grant_outside_memory_is_rejected(iommu: Iommu, base: int, length: int) -> None:
    with pytest.raises(ValueError):
        iommu.grant("ata", base, length, write=False)


def test_revoking_one_owners_grant_leaves_anothers_over_the_same_memory(iommu: Iommu) -> None:
    """Two drivers that hold the same window may both grant it; when one dies, only its own
    grant goes, and the device still reaches the memory through the other's."""
    iommu.grant("rtl8139", 0x3000, 0x1000, write=True, owner=10)
    iommu.grant("rtl8139", 0x3000, 0x1000, write=True, owner=11)
    assert iommu.revoke("rtl8139", 0x3000, owner=10) == 1
    iommu.port_for("rtl8139").write(0x3000, b"\x01")
    assert iommu.revoke("rtl8139", 0x3000, owner=11) == 1
    with pytest.raises(DmaFault):
        iommu.port_for("rtl8139").write(0x3000, b"\x01")
