"""RS's side of the Data Store: publish each service's label, endpoint and state.  Runs inside RS.

RS must never block on another server (a hung DS would hang recovery, and DS
itself sends INIT_DONE to RS, so a blocking SENDREC could close a cycle), so
every publication is a SENDNB of DsReq.PUBLISH; when DS is busy the
publication stays queued (newest value per key) and is retried on RS's next
tick.  DS's replies come back to RS as messages whose type is an Err code;
RS drops them unanswered.

Two entries per service, both written with OVERWRITE (services/ds, minikern/ds.py):

* the label entry (MINIX ``ds_publish_label``): key ``<label>``, type
  ``label``, value the endpoint of the instance now running; only RS may
  write these, and it rewrites one after every (re)start;
* the state entry: key system.conf's ``publish`` (default ``rs.<label>``),
  type ``str``, value ``up``, ``restarting``, ``down`` or ``failed``.  (The
  network driver's is ``drv.net.<label>`` in etc/system.conf: INET watches
  it to learn that its driver is gone and when a new instance is up.)

Dependents subscribe to either and re-resolve the endpoint on a change.

RS's lifecycle sees only ``Announcer`` (announce, retry, pending), so the way
publications travel (today SENDNB and a retry on the tick) can change beneath it.
"""
from __future__ import annotations

from typing import Any, Protocol

from minikern.proto import Message
from minikern.const import DS, DsFlag, DsReq, Err


class Sender(Protocol):
    def sendnb(self, dst: int, m: Message) -> int: ...


class Announcer(Protocol):
    """What RS's lifecycle needs from DS publication."""

    def announce(self, label: str, key: str, state: str, endpoint: int | None) -> None: ...
    def retry(self) -> None: ...
    @property
    def pending(self) -> bool: ...


class Publisher:
    def __init__(self, conn: Sender) -> None:
        self.conn = conn
        self.queue: dict[str, tuple[str, Any]] = {}  # key -> (type, value), oldest first
        self.dead = False  # DS is gone (or absent from this system): stop trying

    def announce(self, label: str, key: str, state: str, endpoint: int | None) -> None:
        """``label``'s state under ``key``; with an endpoint, also where it runs now."""
        if endpoint is not None:
            self.publish(label, "label", endpoint)
        self.publish(key, "str", state)

    def retry(self) -> None:
        if self.queue:
            self.flush()

    def publish(self, key: str, vtype: str, value: Any) -> None:
        if self.dead:
            return
        self.queue.pop(key, None)
        self.queue[key] = (vtype, value)
        self.flush()

    def flush(self) -> bool:
        """Try every queued publication; True if some remain (retry later)."""
        for key in list(self.queue):
            vtype, value = self.queue[key]
            status = self.conn.sendnb(DS, Message(DsReq.PUBLISH, {
                "key": key, "type": vtype, "value": value, "flags": int(DsFlag.OVERWRITE)}))
            if status == Err.ENOTREADY:
                return True
            del self.queue[key]
            if status in (Err.EDEADSRCDST, Err.ECALLDENIED):
                self.dead = True
                self.queue.clear()
                return False
        return False

    @property
    def pending(self) -> bool:
        return bool(self.queue)
