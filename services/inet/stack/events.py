"""Readiness events a socket reports to the INET server, so it can answer callers that blocked."""
from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any


class SocketEvent(enum.Enum):
    READABLE = "readable"     # data, end of file, an error, or a connection to accept
    WRITABLE = "writable"     # connected, or room freed in the send buffer
    CLOSED = "closed"         # the connection is gone (closed, reset or timed out)


EventHook = Callable[[Any, SocketEvent], None]
