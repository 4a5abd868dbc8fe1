"""INET's guard (minikern/guard.py): every refusal counted and the first of a kind logged;
an exception no check foresaw fails the one request, never INET and the connections it
carries."""
from __future__ import annotations

from minikern import guard
from minikern.const import NetReq, SockReq


class Guard(guard.Guard):
    def __init__(self) -> None:
        super().__init__("inet", (SockReq, NetReq))
