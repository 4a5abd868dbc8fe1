"""The RS client library: the operator's side of RS's protocol, one request and one answer.

Runs in whichever shell-side process calls it (bin/service, bin/crash, bin/ps, a
recovery script through them, the benchmarks).  ``request`` connects with the
run directory's operator key (so RS sees ``operator`` in its GETINFO entry),
sends one SENDREC to RS and closes; ``call`` sends one on a connection the
caller holds already.  Requests that change a service (UP, DOWN,
RESTART, REFRESH) are answered late, once the change is done, so the
caller's return means it happened.  RS's handlers, in services/rs/requests.py,
document each request's fields and refusals.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from minikern import cli, ipc
from minikern.proto import Message
from minikern.const import RS, Err, RsReq, err_name



class RsError(ipc.IpcError):
    """RS refused a request (``code`` is its Err, the message RS's reason), or RS could
    not be reached.  An ``IpcError``, so a command reports it as any refused call."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code)
        self.reason = reason

    def __str__(self) -> str:
        return f"{err_name(self.code)}: {self.reason}" if self.reason else err_name(self.code)


def request(run_dir: str | Path, req: RsReq, **fields: Any) -> dict[str, Any]:
    """Send ``req`` to RS on a connection of its own; RS's answer, as ``call``."""
    with cli.connected(run_dir, req.name.lower()) as conn:
        return call(conn, req, **fields)


def call(conn: ipc.Connection, req: RsReq, **fields: Any) -> dict[str, Any]:
    """Send ``req`` to RS on ``conn``; its fields on success, RsError (with RS's reason)
    otherwise.  ``ipc.KernelGone`` passes through: the whole system is gone, not just RS."""
    try:
        m = conn.sendrec(RS, Message(req, fields))
    except ipc.KernelGone:
        raise
    except ipc.IpcError as e:
        raise RsError(e.code, "cannot reach RS") from None
    if m.type != Err.OK:
        raise RsError(m.type, str(m.get("error", "")))
    answer: dict[str, Any] = m.fields
    return answer
