"""Privilege checks (MINIX's struct priv), made by the kernel on every call.

The structure and its validation are the wire format's (minikern.proto.priv,
docs/PROTOCOL.md, "Privileges"): it comes from system.conf through bin/boot
(boot image) or through RS (PRIVCTL), and ``Priv.from_wire`` refuses any map
that is not complete and well-formed.  What the kernel adds is the checks.
"""
from __future__ import annotations

from dataclasses import dataclass

from minikern.proto.priv import Privileges


@dataclass(frozen=True)
class Priv(Privileges):
    def may_send_to(self, label: str, target_sys: bool) -> bool:
        if self.ipc_all or label in self.ipc_labels:
            return True
        return self.ipc_sys if target_sys else self.ipc_user

    def holds_io(self, port: int, size: int) -> bool:
        return any(b <= port and port + size <= b + n for b, n in self.io)
