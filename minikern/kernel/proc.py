"""The process table: slots, endpoints with generations, and each process's IPC state.

Invariants (the kernel loop keeps them; nothing else writes these fields):
* a live Proc is in exactly one slot, and ``table.by_endpoint`` and
  ``table.by_ident`` name it;
* ``wait`` says what the process is blocked in and ``peer`` on whom; a
  process in SEND or SENDREC_SEND is queued in exactly its peer's ``callers``;
* every blocked process owes exactly one reply frame, sent when it unblocks.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from minikern.const import FIRST_DYNAMIC_SLOT, GENERATION_SIZE, NR_PROCS, Wait, make_endpoint
from minikern.kernel.priv import Priv


@dataclass(eq=False)
class Proc:
    slot: int
    endpoint: int
    label: str
    pid: int
    priv: Priv
    manager: int  # endpoint told when this process dies (RS), or NONE: the kernel only logs it
    ident: bytes | None = None  # ZeroMQ routing id, bound at HELLO
    credential: bytes | None = None  # one-time admission token, cleared at HELLO
    pidfd: int = -1
    started: float = 0.0
    incarnation: int = 0
    wait: Wait = Wait.READY
    peer: int = 0  # endpoint (or ANY) that ``wait`` refers to
    msg: bytes | None = None  # the body held while blocked in SEND / SENDREC_SEND
    send_status: int = 0  # result of REPLYRECV's send half, returned with the received message
    callers: deque[Proc] = field(default_factory=deque)  # blocked senders, FIFO
    notify_pending: OrderedDict[int, int] = field(default_factory=OrderedDict)  # src -> ms
    irq_pending: int = 0  # bitmap delivered with the next HARDWARE notification
    kqueue: deque[bytes] = field(default_factory=deque)  # encoded kernel messages
    alarm: float | None = None
    memory: object | None = None  # the process's memory segment (kernel.memory.Segment)
    grants: dict[int, tuple[int, int, int, int, int]] = field(default_factory=dict)
    grant_seq: int = 0
    ready: bool = False  # has entered RECEIVE at least once: its initialization is done
    child: bool = False  # started by the kernel (else an operator tool admitted by key)
    received: int = 0  # messages delivered to it: requests, replies, notifications, kernel's

    @property
    def blocked_on(self) -> int | None:
        """MINIX's P_BLOCKEDON: the endpoint this process waits for, or None."""
        return None if self.wait is Wait.READY else self.peer


class ProcTable:
    def __init__(self) -> None:
        self.slots: list[Proc | None] = [None] * NR_PROCS
        self.generation = [0] * NR_PROCS
        self.used = [False] * NR_PROCS  # slot held a process before (next one bumps generation)
        self.by_endpoint: dict[int, Proc] = {}
        self.by_ident: dict[bytes, Proc] = {}

    def free_slot(self, wanted: int | None = None) -> int | None:
        if wanted is not None:
            return wanted if 0 <= wanted < NR_PROCS and self.slots[wanted] is None else None
        return next((s for s in range(FIRST_DYNAMIC_SLOT, NR_PROCS) if self.slots[s] is None), None)

    def add(self, slot: int, label: str, pid: int, priv: Priv, manager: int) -> Proc:
        """Occupy ``slot``; a reused slot gets the next generation (wrapping to 1)."""
        gen = self.generation[slot]
        if self.used[slot]:
            gen = gen + 1 if gen + 1 < GENERATION_SIZE else 1
        self.generation[slot] = gen
        p = Proc(slot=slot, endpoint=make_endpoint(gen, slot), label=label, pid=pid,
                 priv=priv, manager=manager)
        self.slots[slot] = p
        self.by_endpoint[p.endpoint] = p
        return p

    def remove(self, p: Proc) -> None:
        self.used[p.slot] = True
        self.slots[p.slot] = None
        self.by_endpoint.pop(p.endpoint, None)
        if p.ident is not None:
            self.by_ident.pop(p.ident, None)

    def lookup(self, endpoint: int) -> Proc | None:
        """The live process with exactly this endpoint (a stale generation finds nothing)."""
        return self.by_endpoint.get(endpoint)

    def live(self) -> list[Proc]:
        return [p for p in self.slots if p is not None]
