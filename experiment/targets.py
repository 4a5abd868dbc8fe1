"""The driver table: what the campaign injects into, and how it watches each driver work.

One entry per driver in etc/system.conf (all of them are here: hello, rtl8139,
at_wini, memory, printer, tty); a new driver is one entry here and, if it
needs a new kind of application, one workload class in experiment/workload.py
(WORKLOADS).  An entry says:

    label      the service's label (RS injects into it)
    module     its own code, the package whose lines code faults may hit
    workload   the key in workload.WORKLOADS of the application that uses it
    needs      what the rig must build: "net" (a peer system on the UDP wire),
               "disk" (a MINIX v3 image, checked with fsck.minix -f at the end),
               "ram" (VFS mounts the RAM disk on /ram; its image is checked the same way)
    boots      the services of etc/system.conf it needs besides the board, RS and DS:
               the rig boots only these (RS's args), in system.conf's order
    dma_area   (start, end) bytes of its lowest memory window that its device reads
               by DMA (descriptors and buffers): where a "dma" fault flips a byte
    no_kinds   fault kinds that cannot reach it (hello and memory have no ports and no
               DMA; the printer and the UART have ports and an IRQ but no DMA)
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    label: str
    module: str
    workload: str
    needs: frozenset[str] = frozenset()
    boots: tuple[str, ...] = ()
    dma_area: tuple[int, int] = (0, 0)
    no_kinds: frozenset[str] = field(default_factory=frozenset)


NO_DEVICE = frozenset({"port", "register", "dma"})
NO_DMA = frozenset({"dma"})
DISK_STACK = ("at_wini", "mfs", "vfs")

TARGETS: dict[str, Target] = {
    "hello": Target("hello", "drivers.hello", "hello", boots=("hello",), no_kinds=NO_DEVICE),
    # rtl8139: its four transmit buffers follow the 64 KiB receive ring and its 2 KiB slack
    "rtl8139": Target("rtl8139", "drivers.rtl8139", "net", frozenset({"net"}),
                      ("inet", "rtl8139"), dma_area=(0x10800, 0x10800 + 4 * 2048)),
    # at_wini: the PRD table (two 8-byte entries) opens its window
    "at_wini": Target("at_wini", "drivers.at_wini", "disk", frozenset({"disk"}), DISK_STACK,
                      dma_area=(0, 16)),
    # memory: the RAM disk is a shared memory segment, no device; VFS mounts it on /ram of
    # the root file system, so the disk stack boots too (at_wini is not injected then)
    "memory": Target("memory", "drivers.memory", "ram", frozenset({"disk", "ram"}),
                     (*DISK_STACK, "memory", "mfs_ram"), no_kinds=NO_DEVICE),
    # printer: LPT1's three ports and IRQ 7; jobs come through the spooler lpd
    "printer": Target("printer", "drivers.printer", "print", boots=("printer", "lpd"),
                      no_kinds=NO_DMA),
    # tty: COM1's 16550A (eight ports, IRQ 4); no shell (it would read the console's lines)
    "tty": Target("tty", "drivers.tty", "console", boots=("tty",), no_kinds=NO_DMA),
}
