"""Priorities as MINIX has them, applied through the host's scheduler.

MINIX 3 schedules from 16 queues: the kernel's tasks in queue 0, system
services in the queues below USER_Q (7) that their system.conf ``priority``
names (tty 1, memory 3, ...), user programs in USER_Q and below.  minikern's
processes are host processes, so a queue becomes a host nice value: USER_Q is
nice 0 and each queue higher is NICE_PER_QUEUE steps of nice stronger (queue 0
is nice -14).  Linux's CFS gives each nice step about 1.25 times the CPU weight
of the next, so on a busy machine a driver at queue 1 outweighs a user
program's CPU loop about sixteen to one, which is MINIX's order (the kernel and
RS first, then drivers, then servers, then user programs) as a weighted share
rather than strict preemption.

A negative nice needs CAP_SYS_NICE (root).  Without it the host refuses to
raise a priority: ``apply`` then leaves the process where it is (nice 0, the
same as a user program's) and says so, and only queues below USER_Q (a nice
above 0) are applied.  No real-time class is used: a Python server that spins
under load would, as SCHED_RR, hold a core against everything else on the host.
Nor for RS alone, though it is event-driven: traced under load (README,
"Performance"), RS's own steps in a restart take under 1 ms of the 15 to 40;
the rest is the kernel, the new instance's start, DS and the client, which a
real-time RS cannot shorten.  The template processes import in
params.TEMPLATE_QUEUE (minikern/template.py), below every service.
"""
from __future__ import annotations

import os

from minikern import params
from minikern.const import IDLE_Q, KERNEL_Q, NR_SCHED_QUEUES, USER_Q


class PriorityError(ValueError):
    pass


def parse(text: str) -> int:
    """A system.conf ``priority`` value: a queue number 0 (highest) to 15."""
    try:
        q = int(text, 10)
    except ValueError:
        raise PriorityError(f"priority wants a queue number {KERNEL_Q} to {IDLE_Q}, "
                            f"not {text!r}") from None
    if not KERNEL_Q <= q < NR_SCHED_QUEUES:
        raise PriorityError(f"priority {q} is outside the queues {KERNEL_Q} to {IDLE_Q}")
    return q


def nice_of(queue: int) -> int:
    """The host nice value of scheduling queue ``queue`` (clamped to the host's -20 to 19)."""
    return max(-20, min(19, (queue - USER_Q) * params.NICE_PER_QUEUE))


def queue_of(nice: int) -> int:
    """The scheduling queue a host nice value stands for (the inverse of ``nice_of``)."""
    q = USER_Q + (nice + params.NICE_PER_QUEUE // 2) // params.NICE_PER_QUEUE
    return max(KERNEL_Q, min(IDLE_Q, q))


def apply(pid: int, queue: int) -> str | None:
    """Put process ``pid`` in ``queue``; None when done, else why the host refused.

    A process that has gone meanwhile is no error (it is being replaced)."""
    want = nice_of(queue)
    try:
        os.setpriority(os.PRIO_PROCESS, pid, want)
    except ProcessLookupError:
        return None
    except PermissionError:
        if current(pid) == queue:  # placed already (minikern/template.py, while still root)
            return None
        return (f"the host refused nice {want} for queue {queue} (a raised priority "
                "needs CAP_SYS_NICE: boot as root)")
    return None


def current(pid: int) -> int | None:
    """The scheduling queue ``pid`` runs in now, read back from the host; None if gone."""
    try:
        return queue_of(os.getpriority(os.PRIO_PROCESS, pid))
    except (ProcessLookupError, PermissionError):
        return None
