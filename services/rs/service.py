"""One supervised service as RS sees it: its state, its live instance, and when it is next due.
Runs inside RS.

The state changes only through the lifecycle's transition table
(services/rs/lifecycle.py); this module holds the data and the one pure
function that says when a service next needs RS (``next_due``).

Whether a process is alive is not a state: ``Svc.instance`` is the running
copy (or None).  A RESTARTING service may still have a live instance (RS has
decided to kill a hung one and waits for the kernel's exit notice), and a
DOWN one too, until it has exited.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minikern import params
from minikern.proto import Message
from services.rs.policy import Policy, Tracker
from services.rs.starvation import Sched


# Who is owed a late reply: an operator tool's request (answered through the loop), or a
# recovery script's line on its channel (answered by the function, services/rs/scripts.py).
Waiter = Message | Callable[[Message], None]


class State(enum.Enum):
    STARTING = "starting"  # spawned, waiting for its SEF init-done
    UP = "up"
    RESTARTING = "restarting"  # failed; waiting for its exit, the backoff, or a script
    DOWN = "down"  # stopped by an operator (or a script), not a failure
    FAILED = "failed"  # given up (intensity limit); `bin/service up` revives it


class Event(enum.Enum):
    SPAWNED = "spawned"
    INIT_DONE = "init_done"
    FAILED = "failed"
    GIVEUP = "giveup"
    EXITED = "exited"
    OP_START = "op_start"
    OP_DOWN = "op_down"
    OP_REFRESH = "op_refresh"
    SCRIPT_DONE = "script_done"


class BadTransition(Exception):
    """An event that makes no sense in the service's state (the table has no entry)."""


class Cause(enum.Enum):
    """Why the coming start of a service happens (the recovery log's ``cause``)."""

    FRESH = "up"  # boot or an operator's up: logged as "up"
    RECOVERY = "restart"  # after a failure: logged as "restart", a recovery script runs
    REFRESH = "refresh"  # an operator replaced a live copy: no script, not a failure


class Timer(enum.Enum):
    """What falls due for a service at a time (``next_due``)."""

    RESTART = "restart"  # the backoff wait is over
    SIGKILL = "sigkill"  # a graceful stop's grace period is over
    INIT_TIMEOUT = "init-timeout"  # no init-done within params.INIT_TIMEOUT
    HUNG = "hung"  # no ping answer for HEARTBEAT_MISSES periods
    PING = "ping"  # the next heartbeat ping
    RESOURCES = "resources"  # the next memory / CPU check


@dataclass
class Instance:
    """One running copy of a service's code."""

    endpoint: int
    pid: int
    started: float  # monotonic
    started_wall: float
    last_pong: float  # monotonic time of the last sign of life (pong, init-done)
    next_ping: float = 0.0
    next_check: float = 0.0  # the next resource check
    killed: bool = False  # RS itself decided to end it: its exit is expected, not a crash
    kill_deadline: float | None = None  # SIGKILL after this (a graceful stop)
    cpu_sample: tuple[float, float] | None = None  # (monotonic, cpu seconds) last resource check
    pending_fault: str | None = None  # bin/crash: handed over with the next PING's reply
    pending_spec: dict[str, Any] | None = None  # bin/experiment: a SWIFI fault's spec, with it
    ping_sent: float | None = None  # monotonic time of the ping not yet answered, if any
    latency: float | None = None  # seconds between the last answered ping and its answer
    sched: Sched | None = None  # its CPU and run-queue times at the last sign of life
    starved: int = 0  # periods given since its last answer: it waited for a CPU (bounded)
    received: int | None = None  # the kernel's count of messages it took, when it was busy
    deferred_until: float = 0.0  # starved: the hang is not due before this (a period on)
    relied: tuple[Sched | None, ...] = ()  # the kernel's and the board's times, at the same


@dataclass
class Svc:
    label: str
    module: str
    args: list[str]
    priv: dict[str, Any]
    policy: Policy
    core: bool = False  # a boot-image server (ds): its death is fatal for the system
    uid: int | None = None  # system.conf's uid key (the kernel allocates one if None)
    state: State = State.DOWN
    since: float = 0.0  # wall time the state was last entered (bin/status's "since")
    instance: Instance | None = None
    incarnation: int = 0  # restarts so far (the next instance's SEF incarnation)
    tracker: Tracker = field(init=False)
    cause: Cause = Cause.FRESH  # why the coming (or current) start happens
    restart_at: float | None = None  # backoff: spawn at this monotonic time
    failed_at: float | None = None  # when the current outage began (for downtime_ms)
    last_reason: str | None = None
    last_detail: str = ""
    last_exit: dict[str, Any] = field(default_factory=dict)  # old pid / endpoint, status, signal
    waiters: list[Waiter] = field(default_factory=list)  # requests owed a late reply

    def __post_init__(self) -> None:
        self.tracker = Tracker(self.policy)

    @property
    def limited(self) -> bool:
        return self.policy.memory_limit is not None or self.policy.cpu_limit is not None


def next_due(svc: Svc) -> tuple[float, Timer] | None:
    """The earliest thing due for ``svc`` and when (monotonic), or None.

    The one place that knows every timer: RS keeps one loop timer per service
    at this time (``Lifecycle.rearm``) and fires what is due when it rings.  A hang is due HEARTBEAT_MISSES
    periods after the last answer (MINIX's do_period counts missed periods from
    the last answer), so a live service answering within a period is never due.
    """
    inst = svc.instance
    if inst is None:
        if svc.state is State.RESTARTING and svc.restart_at is not None:
            return svc.restart_at, Timer.RESTART
        return None
    due: list[tuple[float, Timer]] = []
    if inst.kill_deadline is not None:
        due.append((inst.kill_deadline, Timer.SIGKILL))
    if not inst.killed:
        period = svc.policy.period
        if svc.state is State.STARTING:
            due.append((inst.started + params.INIT_TIMEOUT, Timer.INIT_TIMEOUT))
        elif svc.state is State.UP:
            if period:
                hung = inst.last_pong + params.HEARTBEAT_MISSES * period
                due.append((max(hung, inst.deferred_until), Timer.HUNG))
                due.append((inst.next_ping, Timer.PING))
            if svc.limited:
                due.append((inst.next_check, Timer.RESOURCES))
    # Ties go to the list's order: a hang is noticed before another ping is sent.
    return min(due, key=lambda d: d[0]) if due else None
