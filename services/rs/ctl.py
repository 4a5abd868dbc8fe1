"""The operator's side of the RS protocol: one request, one answer.  Runs in a bin/ command.

Every command connects with the run directory's operator key (so RS sees
``operator`` in its GETINFO entry), sends one SENDREC to RS and closes.
Requests that change a service (UP, DOWN, RESTART, REFRESH) are answered
late, once the change is done, so the command's exit means it happened.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from minikern import cli, ipc
from minikern.proto import Message
from minikern.const import RS, Err, RsReq, err_name


class RsError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


def request(run_dir: str | Path, req: RsReq, **fields: Any) -> dict[str, Any]:
    """Send ``req`` to RS; its fields on success, RsError (with RS's error text) otherwise."""
    conn = cli.operator_connection(run_dir, req.name.lower())
    try:
        m = conn.sendrec(RS, Message(req, fields))
    except ipc.IpcError as e:
        raise RsError(e.code, f"cannot reach RS: {e}") from None
    finally:
        conn.close()
    if m.type != Err.OK:
        raise RsError(m.type, f"{err_name(m.type)}: {m.get('error', '')}".rstrip(": "))
    answer: dict[str, Any] = m.fields
    return answer
