"""The driver table: what the campaign injects into, and how it watches each driver work.

One entry per driver in etc/system.conf; adding a driver (printer, tty, memory)
is one entry here and, if it needs a new kind of application, one workload
class in experiment/workload.py (WORKLOADS).  An entry says:

    label      the service's label (RS injects into it)
    module     its own code, the package whose lines code faults may hit
    workload   the key in workload.WORKLOADS of the application that uses it
    needs      what the rig must build: "net" (a peer system on the UDP wire),
               "disk" (a MINIX v3 image, checked with fsck.minix -f at the end)
    dma_area   (start, end) bytes of its lowest memory window that its device reads
               by DMA (descriptors and buffers): where a "dma" fault flips a byte
    no_kinds   fault kinds that cannot reach it (hello has no ports, no DMA)
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    label: str
    module: str
    workload: str
    needs: frozenset[str] = frozenset()
    dma_area: tuple[int, int] = (0, 0)
    no_kinds: frozenset[str] = field(default_factory=frozenset)


TARGETS: dict[str, Target] = {
    "hello": Target("hello", "drivers.hello", "hello",
                    no_kinds=frozenset({"port", "register", "dma"})),
    # rtl8139: its four transmit buffers follow the 64 KiB receive ring and its 2 KiB slack
    "rtl8139": Target("rtl8139", "drivers.rtl8139", "net", frozenset({"net"}),
                      dma_area=(0x10800, 0x10800 + 4 * 2048)),
    # at_wini: the PRD table (two 8-byte entries) opens its window
    "at_wini": Target("at_wini", "drivers.at_wini", "disk", frozenset({"disk"}),
                      dma_area=(0, 16)),
}
