"""RS's side of the Data Store: publish each service's label, endpoint and state.  Runs inside RS.

RS must never block on another server (a hung DS would hang recovery, and DS
itself sends INIT_DONE to RS, so a blocking SENDREC could close a cycle), so
every publication is a DsReq.PUBLISH handed to RS's loop (``Loop.asend``,
minikern/loop.py): sent at once if DS is receiving, else queued behind the
earlier ones (publications keep their order, so the last value written is
the newest) and retried at every turn of the loop, within the loop's bound
(queue size, RETRY_FOR).  A publication the loop gives up is logged on the
console and counted (``gave_up``).  DS's replies come back to RS as messages
whose type is an Err code: services/rs/requests.py logs a refusal and never
answers them.

Two entries per service, both written with OVERWRITE (services/ds, minikern/ds.py):

* the label entry (MINIX ``ds_publish_label``): key ``<label>``, type
  ``label``, value the endpoint of the instance now running; only RS may
  write these, and it rewrites one after every (re)start;
* the state entry: key system.conf's ``publish`` (default ``rs.<label>``),
  type ``str``, value ``up``, ``restarting``, ``down`` or ``failed``.  (The
  network driver's is ``drv.net.<label>`` in etc/system.conf: INET watches
  it to learn that its driver is gone and when a new instance is up.)

Dependents subscribe to either and re-resolve the endpoint on a change.

RS's lifecycle sees only ``Announcer``, so the way publications travel can
change beneath it.
"""
from __future__ import annotations

import sys
from typing import Any, Protocol

from minikern.const import DS, DsFlag, DsReq, Err, err_name
from minikern.loop import Loop
from minikern.proto import Message


class Announcer(Protocol):
    """What RS's lifecycle needs from DS publication."""

    def announce(self, label: str, key: str, state: str, endpoint: int | None) -> None: ...
    def purge(self, label: str) -> None: ...
    def refused(self, status: int, error: str) -> None: ...


class Publisher:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.dead = False  # DS is gone (or absent from this system): stop trying
        self.gave_up = 0  # publications the loop could not deliver in time
        self.refusals = 0  # publications DS answered with an error

    def announce(self, label: str, key: str, state: str, endpoint: int | None) -> None:
        """``label``'s state under ``key``; with an endpoint, also where it runs now."""
        if endpoint is not None:
            self.publish(label, "label", endpoint)
        self.publish(key, "str", state)

    def publish(self, key: str, vtype: str, value: Any) -> None:
        self.post(key, Message(DsReq.PUBLISH, {"key": key, "type": vtype, "value": value,
                                               "flags": int(DsFlag.OVERWRITE)}))

    def purge(self, label: str) -> None:
        """Drop what ``label`` left in DS: its entries, its subscription, its label entry
        (an operator stopped it: the next start is a fresh one)."""
        self.post(f"{label}'s entries (purge)", Message(DsReq.PURGE, {"label": label}))

    def post(self, key: str, m: Message) -> None:
        if self.dead:
            return
        status = self.loop.asend(DS, m, on_fail=lambda st: self.lost(key, st))
        if status in (Err.EDEADSRCDST, Err.ECALLDENIED):
            self.dead = True  # no DS in this system, or it died (then RS is shutting down)
        elif status not in (Err.OK, Err.ENOTREADY):
            self.lost(key, status)  # ENOSPC: the loop's queue is full

    def lost(self, key: str, status: int) -> None:
        self.gave_up += 1
        print(f"rs: gave up publishing {key} to DS: {err_name(status)}", file=sys.stderr,
              flush=True)

    def refused(self, status: int, error: str) -> None:
        """DS answered a publication with an error (its reply names no key: say what it says)."""
        self.refusals += 1
        print(f"rs: DS refused a publication: {err_name(status)} {error[:200]}",
              file=sys.stderr, flush=True)
