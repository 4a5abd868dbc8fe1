"""Who is this endpoint?  The kernel's answer, cached by endpoint (MINIX's getsysinfo proc table).

A message's fields say what its sender claims; only the kernel knows who
sent it: it stamps the sender's endpoint, and GETINFO lists every live
endpoint with the label, incarnation and privileges it recorded.  A process
admitted with the operator key (a tool, a user program) names its own label,
so ``operator`` is True and it never passes for a component.

The cache is keyed by endpoint = generation << 15 | slot.  A slot reused by
a new process gets a new generation, hence a new endpoint, so an entry can
never answer for a dead endpoint's successor: the successor is a miss.  A
miss costs one GETINFO, which replaces the whole cache (entries the kernel no
longer lists are dropped); a message from a newer generation of a cached slot
drops the old entry at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minikern.const import NONE, KCall, endpoint_slot
from minikern.ipc import Connection, IpcError, KernelGone


@dataclass(frozen=True)
class Who:
    endpoint: int
    label: str
    incarnation: int
    priv: dict[str, Any]
    operator: bool  # admitted with the operator key: its label is its own claim
    pid: int
    uptime: float
    manager: int = NONE  # the endpoint told of its death (RS for a service it manages)
    ready: bool = True  # it has reported its init done to the kernel
    wait: str = "ready"  # the trap it is blocked in (the kernel's Wait: recv, send, ...)
    peer: int = NONE  # on whom it waits (an endpoint, or ANY)
    received: int = 0  # messages the kernel has delivered to it so far

    def is_component(self, label: str) -> bool:
        """True if this is the component ``label`` started by the kernel (no operator tool)."""
        return self.label == label and not self.operator


def _parse(p: object) -> Who | None:
    """One GETINFO row, checked field by field (the kernel is trusted, a bad row is not)."""
    if type(p) is not dict:
        return None
    ep, label, operator = p.get("endpoint"), p.get("label"), p.get("operator")
    inc, priv, pid, up = p.get("incarnation", 0), p.get("priv", {}), p.get("pid", 0), \
        p.get("uptime", 0.0)
    manager, ready = p.get("manager", NONE), p.get("ready", True)
    wait, peer, received = p.get("wait", "ready"), p.get("peer", NONE), p.get("received", 0)
    if type(ep) is not int or type(label) is not str or not label or type(operator) is not bool:
        return None
    return Who(ep, label, inc if type(inc) is int else 0, priv if type(priv) is dict else {},
               operator, pid if type(pid) is int else 0,
               float(up) if type(up) in (int, float) else 0.0,
               manager if type(manager) is int else NONE, ready if type(ready) is bool else True,
               wait if type(wait) is str else "ready", peer if type(peer) is int else NONE,
               received if type(received) is int and received >= 0 else 0)


class Identity:
    """``who(endpoint)`` and ``endpoint_of(label)``, from the kernel's process table."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.by_endpoint: dict[int, Who] = {}
        self.by_slot: dict[int, int] = {}  # slot -> the endpoint cached for it
        self.refreshes = 0
        self.failures = 0
        self.kernel_pid: int | None = None  # the kernel's host pid, as the last GETINFO said
        self.ok = True  # the last GETINFO answered (False: a miss may be the kernel's silence)

    def refresh(self) -> bool:
        """Replace the cache with the live table (one GETINFO); False if the kernel did not say."""
        self.refreshes += 1
        try:
            info = self.conn.kcall(KCall.GETINFO)
        except KernelGone:
            raise
        except IpcError:
            info = {}
        procs, kernel_pid = info.get("procs"), info.get("kernel_pid")
        if type(kernel_pid) is int:
            self.kernel_pid = kernel_pid
        self.ok = type(procs) is list
        if type(procs) is not list:
            self.failures += 1
            return False
        rows = [w for w in map(_parse, procs) if w is not None]
        self.by_endpoint = {w.endpoint: w for w in rows}
        self.by_slot = {endpoint_slot(w.endpoint): w.endpoint for w in rows}
        return True

    def who(self, endpoint: int) -> Who | None:
        """The process at ``endpoint`` now, or None if the kernel does not list it."""
        old = self.by_slot.get(endpoint_slot(endpoint))
        if old is not None and old != endpoint:  # the slot has a new generation: old is dead
            self.by_endpoint.pop(old, None)
            del self.by_slot[endpoint_slot(endpoint)]
        hit = self.by_endpoint.get(endpoint)
        if hit is None and self.refresh():
            hit = self.by_endpoint.get(endpoint)
        return hit

    def label_of(self, endpoint: int) -> str | None:
        w = self.who(endpoint)
        return None if w is None else w.label

    def endpoint_of(self, label: str, fresh: bool = False) -> int | None:
        """The newest live holder of ``label`` (two holders: the younger one)."""
        if fresh or not any(w.label == label for w in self.by_endpoint.values()):
            self.refresh()
        holders = [w for w in self.by_endpoint.values() if w.label == label]
        return min(holders, key=lambda w: w.uptime).endpoint if holders else None

    def live(self) -> dict[int, Who] | None:
        """Every live process by endpoint, fresh from the kernel; None if it did not say."""
        return dict(self.by_endpoint) if self.refresh() else None
