"""The privilege map (docs/PROTOCOL.md, "Privileges"): MINIX's struct priv on the wire.

It travels in three frames: a boot image entry (bin/boot builds it from
system.conf, minikern.sysconf), a PRIVCTL kernel call (RS) and an operator
tool's HELLO.  It is not a channel of its own but a field of all three, so it
is defined once here.
``Privileges.from_wire`` validates a map completely, or refuses it; the
kernel never acts on a structure it has not validated, and adds the checks it
makes on every call (minikern.kernel.priv).  ``summary`` is its readable form
in GETINFO's answer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self, TypeGuard

from minikern.const import IPC_ALL, IPC_ALL_SYS, IPC_NONE, IPC_SYSTEM, IPC_USER, Call, KCall

MAX_RANGES = 64  # io / mem windows per process (MINIX: s_io_tab[64])
MAX_LABELS = 256
_FIELDS = ("sys_proc", "traps", "ipc", "kcalls", "irq", "io", "mem")  # all required


def _list_of(value: object, valid: Callable[[Any], bool], limit: int | None = None
             ) -> TypeGuard[list[Any]]:
    return (type(value) is list and (limit is None or len(value) <= limit)
            and all(valid(x) for x in value))


def _ranges(value: object, limit: int) -> tuple[tuple[int, int], ...] | None:
    """Windows of (base, length) inside [0, limit)."""
    if not _list_of(value, lambda r: type(r) is list and len(r) == 2 and type(r[0]) is int
                    and type(r[1]) is int and r[0] >= 0 and r[1] > 0 and r[0] + r[1] <= limit,
                    MAX_RANGES):
        return None
    return tuple((r[0], r[1]) for r in value)


@dataclass(frozen=True)
class Privileges:
    sys_proc: bool  # a system process (server or driver) rather than a user process
    traps: frozenset[int]  # allowed IPC traps (s_trap_mask)
    ipc_all: bool  # send mask: everyone
    ipc_sys: bool  # ... every system process (ALL_SYS)
    ipc_user: bool  # ... every user process (USER)
    ipc_kernel: bool  # ... the kernel's endpoints (SYSTEM)
    ipc_labels: frozenset[str]  # ... these labels
    kcalls: frozenset[int]  # allowed kernel calls (s_k_call_mask)
    io: tuple[tuple[int, int], ...]  # port windows (base, length)
    irq: frozenset[int]  # IRQ lines
    mem: tuple[tuple[int, int], ...]  # physical memory windows (base, length)

    @classmethod
    def from_wire(cls, w: object) -> Self | None:
        if type(w) is not dict or any(f not in w for f in _FIELDS):
            return None
        sys_proc, traps, ipc, kcalls, irq = w["sys_proc"], w["traps"], w["ipc"], w["kcalls"], w["irq"]
        io_r, mem_r = _ranges(w["io"], 1 << 16), _ranges(w["mem"], 1 << 32)
        if (type(sys_proc) is not bool or io_r is None or mem_r is None
                or not _list_of(traps, lambda t: type(t) is int and t in Call._value2member_map_)
                or not _list_of(ipc, lambda x: type(x) is str, MAX_LABELS)
                or not _list_of(kcalls, lambda c: type(c) is int and c in KCall._value2member_map_)
                or not _list_of(irq, lambda i: type(i) is int and 0 <= i < 16)):
            return None
        groups = {IPC_ALL, IPC_ALL_SYS, IPC_USER, IPC_SYSTEM, IPC_NONE}
        return cls(sys_proc=sys_proc, traps=frozenset(traps),
                   ipc_all=IPC_ALL in ipc, ipc_sys=IPC_ALL_SYS in ipc,
                   ipc_user=IPC_USER in ipc, ipc_kernel=IPC_SYSTEM in ipc or IPC_ALL in ipc,
                   ipc_labels=frozenset(x for x in ipc if x not in groups),
                   kcalls=frozenset(kcalls), io=io_r, irq=frozenset(irq), mem=mem_r)

    def summary(self) -> dict[str, Any]:
        """For GETINFO: what this process may do, readably."""
        return {"sys_proc": self.sys_proc, "traps": sorted(Call(t).name for t in self.traps),
                "kcalls": sorted(KCall(k).name for k in self.kcalls),
                "io": [list(r) for r in self.io], "irq": sorted(self.irq)}
