"""The printer spooler's client (runs in a user program: bin/lp, bin/lpq, the shell).

Each call is one SENDREC to lpd (found through DS's label entry), as
docs/PROTOCOL.md section 23 says; a refusal raises ``IpcError`` with lpd's
Err and its reason.
"""
from __future__ import annotations

from typing import Any

from minikern import ds
from minikern.const import CDEV_MAX_IO, Err, LpReq
from minikern.ipc import Connection, IpcError
from minikern.proto import Message

SPOOLER = "lpd"


def call(conn: Connection, req: LpReq, **fields: Any) -> dict[str, Any]:
    answer = conn.sendrec(ds.retrieve_label(conn, SPOOLER), Message(req, fields))
    if answer.type != Err.OK:
        raise IpcError(answer.type, str(answer.get("error") or req.name))
    return dict(answer.fields)


def submit(conn: Connection, name: str, data: bytes) -> int:
    """Queue ``data`` as one job; its number."""
    job = int(call(conn, LpReq.SUBMIT, name=name, size=len(data))["job"])
    for offset in range(0, len(data), CDEV_MAX_IO):
        call(conn, LpReq.DATA, job=job, offset=offset, data=data[offset:offset + CDEV_MAX_IO])
    return job


def status(conn: Connection) -> dict[str, Any]:
    """The printer's state, the jobs held, and the last ones done."""
    return call(conn, LpReq.STATUS)


def cancel(conn: Connection, job: int) -> None:
    call(conn, LpReq.CANCEL, job=job)
