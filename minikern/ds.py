"""The DS client library (MINIX libsys ds_*): runs in whichever component calls it.

Each function is one SENDREC to DS at its fixed endpoint ``DS``; a refusal
raises ``IpcError`` with DS's Err code (EEXIST, EPERM, ESRCH, ...), as does a
failed trap (EDEADSRCDST when no DS runs).  Since DS never blocks on a
client, a call waits only for DS itself.  The request fields and replies
are documented on the handlers in services/ds/main.py; the rules (label
ownership, PRIVATE, versions, limits) in services/ds/store.py.

Subscribing: after ``subscribe``, DS sends a NOTIFY (source DS) whenever a
matching key changes; the subscriber then calls ``check`` until it returns
None.  A restarted subscriber keeps its subscription (it belongs to the
label) and should drain ``check`` in its init, for changes made while it
was down.
"""
from __future__ import annotations

from typing import Any

from minikern.proto import Message
from minikern.const import DS, DsFlag, DsReq, Err
from minikern.ipc import Connection, IpcError


def _call(conn: Connection, req: DsReq, **fields: Any) -> dict[str, Any]:
    m = conn.sendrec(DS, Message(req, fields))
    if m.type != Err.OK:
        why = m.get("error")  # DS says why it refused, e.g. "EPERM: drv.x is owned by net"
        raise IpcError(m.type, f"ds {req.name.lower()}" + (f" ({why})" if why else ""))
    return m.fields


def type_of(value: object) -> str:
    """The DS type a Python value is published as: int u32, str str, bytes mem."""
    if type(value) is int:
        return "u32"
    if type(value) is str:
        return "str"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "mem"
    raise TypeError(f"DS stores int, str or bytes, not {type(value).__name__}")


def publish(conn: Connection, key: str, value: int | str | bytes,
            flags: DsFlag = DsFlag.NONE, vtype: str | None = None) -> None:
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    _call(conn, DsReq.PUBLISH, key=key, type=vtype or type_of(value), value=value,
          flags=int(flags))


def retrieve(conn: Connection, key: str, version: int = 0, vtype: str | None = None) -> Any:
    """The value of ``key`` (``version`` 0 is the current one, 1 the one before, ...)."""
    fields: dict[str, Any] = {"key": key, "version": version}
    if vtype is not None:
        fields["type"] = vtype
    return _call(conn, DsReq.RETRIEVE, **fields)["value"]


def list_entries(conn: Connection, regex: str | None = None,
                 operator: bool = False) -> list[dict[str, Any]]:
    """Every entry the caller may see (matching ``regex``; with ``operator``, from the
    operator, the private ones too), by key, a LIST page at a time: key, type, owner,
    private, versions, serial, size and, when short, value."""
    entries: list[dict[str, Any]] = []
    while True:
        fields: dict[str, Any] = {"after": entries[-1]["key"] if entries else "",
                                  "operator": operator}
        if regex is not None:
            fields["regex"] = regex
        page = _call(conn, DsReq.LIST, **fields)
        entries += page["entries"]
        if not page["more"] or not page["entries"]:
            return entries


def delete(conn: Connection, key: str) -> None:
    _call(conn, DsReq.DELETE, key=key)


def subscribe(conn: Connection, regex: str, flags: DsFlag = DsFlag.NONE) -> None:
    """Watch keys that match ``regex`` as a whole (re.fullmatch)."""
    _call(conn, DsReq.SUBSCRIBE, regex=regex, flags=int(flags))


def check(conn: Connection) -> tuple[str, str, str] | None:
    """The next change for my subscription as (key, type, owner label), or None."""
    try:
        f = _call(conn, DsReq.CHECK)
    except IpcError as e:
        if e.code == Err.ESRCH:  # DS's answer for "nothing new"
            return None
        raise
    return f["key"], f["type"], f["owner"]


def publish_label(conn: Connection, label: str, endpoint: int) -> None:
    """RS only: record where ``label`` runs now (MINIX ds_publish_label)."""
    publish(conn, label, endpoint, DsFlag.OVERWRITE, vtype="label")


def retrieve_label(conn: Connection, label: str) -> int:
    return int(retrieve(conn, label, vtype="label"))


def purge(conn: Connection, label: str) -> dict[str, Any]:
    """RS only: forget everything ``label`` owns; returns the counts removed."""
    return _call(conn, DsReq.PURGE, label=label)


class DsClient:
    """The same calls bound to one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def publish(self, key: str, value: int | str | bytes, flags: DsFlag = DsFlag.NONE) -> None:
        publish(self.conn, key, value, flags)

    def retrieve(self, key: str, version: int = 0) -> Any:
        return retrieve(self.conn, key, version)

    def delete(self, key: str) -> None:
        delete(self.conn, key)

    def subscribe(self, regex: str, flags: DsFlag = DsFlag.NONE) -> None:
        subscribe(self.conn, regex, flags)

    def check(self) -> tuple[str, str, str] | None:
        return check(self.conn)
