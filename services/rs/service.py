"""One supervised service as RS sees it: a state machine and its live instance.  Runs inside RS.

The state is one ``State`` and changes only through ``transition`` (STYLE
rule 8); RS's handlers call it with an ``Event`` and act on the result.

    STARTING --init_done--> UP
    STARTING / UP --failed--> RESTARTING      (crash seen, kill decided, or refresh)
    RESTARTING --spawned--> STARTING          (a fresh copy is started)
    any --giveup--> FAILED                    (intensity limit; also a core service)
    any --op_down--> DOWN                     (operator; the instance is stopped, not restarted)
    DOWN / FAILED / RESTARTING --op_up--> STARTING
    RESTARTING --script_done--> DOWN          (the recovery script decided nothing)

Whether a process is alive is not a state: ``Svc.instance`` is the running
copy (or None).  A RESTARTING service may still have a live instance (RS has
decided to kill a hung one and waits for the kernel's exit notice), and a
DOWN one too, until it has exited.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from services.rs.policy import Policy, Tracker


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
    OP_DOWN = "op_down"
    OP_UP = "op_up"
    SCRIPT_DONE = "script_done"


_S, _E = State, Event
_TABLE: dict[tuple[State, Event], State] = {
    (_S.STARTING, _E.INIT_DONE): _S.UP,
    (_S.STARTING, _E.FAILED): _S.RESTARTING,
    (_S.UP, _E.FAILED): _S.RESTARTING,
    (_S.RESTARTING, _E.FAILED): _S.RESTARTING,
    (_S.RESTARTING, _E.SPAWNED): _S.STARTING,
    (_S.RESTARTING, _E.SCRIPT_DONE): _S.DOWN,
    (_S.DOWN, _E.SPAWNED): _S.STARTING,
    (_S.FAILED, _E.SPAWNED): _S.STARTING,
    (_S.DOWN, _E.OP_UP): _S.DOWN,  # the spawn that follows makes it STARTING
    (_S.FAILED, _E.OP_UP): _S.FAILED,
    (_S.RESTARTING, _E.OP_UP): _S.RESTARTING,
}


class BadTransition(Exception):
    pass


def transition(state: State, event: Event) -> State:
    """The next state, or BadTransition if ``event`` makes no sense in ``state``."""
    if event is Event.OP_DOWN:
        return State.DOWN
    if event is Event.GIVEUP:
        return State.FAILED
    nxt = _TABLE.get((state, event))
    if nxt is None:
        raise BadTransition(f"{event.value} in state {state.value}")
    return nxt


@dataclass
class Instance:
    """One running copy of a service's code."""

    endpoint: int
    pid: int
    started: float  # monotonic
    started_wall: float
    last_pong: float  # monotonic time of the last sign of life (pong, init-done)
    next_ping: float = 0.0
    kill_reason: str | None = None  # set when RS itself decided to end it
    kill_deadline: float | None = None  # SIGKILL after this (a graceful stop)
    cpu_sample: tuple[float, float] | None = None  # (monotonic, cpu seconds) last resource check
    pending_fault: str | None = None  # bin/crash: handed over with the next PING's reply


@dataclass
class Svc:
    label: str
    module: str
    args: list[str]
    priv: dict[str, Any]
    policy: Policy
    core: bool = False  # a boot-image server (ds): its death is fatal for the system
    state: State = State.DOWN
    instance: Instance | None = None
    incarnation: int = 0  # restarts so far (the next instance's SEF incarnation)
    tracker: Tracker = field(init=False)
    restart_at: float | None = None  # backoff: spawn at this monotonic time
    failed_at: float | None = None  # when the current outage began (for downtime_ms)
    last_reason: str | None = None
    last_detail: str = ""
    last_exit: dict[str, Any] = field(default_factory=dict)  # old pid / endpoint, status, signal
    restart_cause: str | None = None  # why the coming spawn happens: restart, refresh, up
    waiters: list[int] = field(default_factory=list)  # operator endpoints owed a late reply

    def __post_init__(self) -> None:
        self.tracker = Tracker(self.policy)

    def to(self, event: Event) -> State:
        self.state = transition(self.state, event)
        return self.state
