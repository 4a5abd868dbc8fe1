"""Who a caller is, as the kernel knows it (runs in INET).

A message's fields say what its sender claims; only the kernel knows who
sent it.  It stamps every message with the sender's endpoint, and GETINFO
(in INET's kernel-call mask, etc/system.conf) lists each live endpoint with
the label it recorded.  A component's label is the one it was started with
(by RS, through the kernel); a process admitted with the operator key (a
tool, a user program) names its own label, so it is flagged ``operator`` and
never passes for a component.
"""
from __future__ import annotations

from typing import Any

from minikern.const import KCall
from minikern.ipc import Connection, IpcError, KernelGone

Proc = dict[str, Any]


def live(conn: Connection) -> dict[int, Proc] | None:
    """Every live process by endpoint, or None when the kernel does not say (refused, malformed)."""
    try:
        procs = conn.kcall(KCall.GETINFO).get("procs")
    except KernelGone:
        raise
    except IpcError:
        return None
    if type(procs) is not list:
        return None
    return {p["endpoint"]: p for p in procs
            if type(p) is dict and type(p.get("endpoint")) is int}


def is_component(proc: Proc | None, label: str) -> bool:
    """True if ``proc`` is the component ``label``, started by the kernel (not an operator tool)."""
    return proc is not None and proc.get("label") == label and proc.get("operator") is False
