"""Finding a driver's successor: the wait every client of a restartable driver does.

When a driver dies under a request (EDEADSRCDST) or a restarted driver never
saw the client open the device (ERESTART), the client waits until DS says the
driver is ``up`` again at an endpoint other than the dead one, then reopens
and resends (MINIX's libbdev; the block client minikern/bdev.py and the
console client userland/terminal.py do it this way).  Two DS entries say it:
a state key (RS's ``rs.<label>``, or a driver's own ``drv.blk.<label>``:
``up``, ``restarting``, ``failed``) and the label entry naming the endpoint.

``wait_up`` is the loop; the client passes its own ``pause`` (how it receives
meanwhile: answering RS's heartbeat, handing other requests back to its
loop, ending early on DS's notification).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from minikern import ds
from minikern.const import Err
from minikern.ipc import Connection, IpcError, KernelGone
from minikern.proto import Message


def sendrec(conn: Connection, driver: int, m: Message) -> tuple[Message, bool]:
    """SENDREC ``m`` to a driver: its answer, and whether it died under the call.  Only the
    kernel says a driver died (the SENDREC fails EDEADSRCDST); a driver's own *answer*
    EDEADSRCDST (a kernel call of its that failed, the code passed on) comes from one alive,
    whose successor would never come.  Another failure of the call comes back as an answer
    of its code; KernelGone passes through."""
    try:
        return conn.sendrec(driver, m), False
    except KernelGone:
        raise
    except IpcError as e:
        return Message(e.code), e.code == Err.EDEADSRCDST


def locate(conn: Connection, label: str, state_key: str) -> tuple[str | None, int | None]:
    """The driver's state and endpoint as DS has them (None where DS has nothing, or DS
    cannot answer now: the caller keeps waiting, bounded by its own deadline)."""
    try:
        state: Any = ds.retrieve(conn, state_key, vtype="str")
        endpoint: int | None = ds.retrieve_label(conn, label) if state == "up" else None
    except KernelGone:
        raise
    except IpcError:
        return None, None
    return (state if type(state) is str else None), endpoint


def wait_up(conn: Connection, label: str, state_key: str, dead: int | None, within: float,
            check: float, pause: Callable[[float], None],
            error: type[IpcError] = IpcError) -> int:
    """Block until ``label`` is up at an endpoint other than ``dead``; that endpoint.

    Looks every ``check`` seconds (``pause`` returns sooner when DS notifies).
    ``error`` (EIO) if RS gave up on the driver or it is not back ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        state, endpoint = locate(conn, label, state_key)
        if state == "failed":
            raise error(Err.EIO, f"{label} has failed (RS gave up on it)")
        if state == "up" and endpoint is not None and endpoint != dead:
            return endpoint
        if time.monotonic() > deadline:
            raise error(Err.EIO, f"{label} not back within {within:g} s")
        pause(check)
