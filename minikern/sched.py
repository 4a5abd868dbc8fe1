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

A weight decides who gets the CPU over time, not how soon a woken process
runs: with Linux's EEVDF scheduler (6.6 and later) that is its time slice, its
virtual deadline being its eligible time plus the slice over its weight.  So a
process in a queue above USER_Q also gets a short slice
(params.SYSTEM_SLICE_US, MINIX's per-service ``quantum`` in spirit: the
scheduler's unit of turn), through sched_setattr's ``sched_runtime`` for a
SCHED_OTHER process (Linux 6.12 and later; no privilege needed): woken by a
message, a driver is due before a CPU loop whose default slice (0.7 to 3 ms)
has run, instead of after it.  A host without the call, or that ignores it,
keeps its default slice: nothing else changes.  The slice and the nice value
apply to the one thread they are set on and to the threads and processes it
makes after (libzmq's I/O threads start later, in the component).

A negative nice needs CAP_SYS_NICE (root).  Without it the host refuses to
raise a priority: ``apply`` then leaves the process where it is (nice 0, the
same as a user program's) and says so, and only queues below USER_Q (a nice
above 0) are applied; the short slice of a system process is, all the same.
No real-time class is used: a Python server that spins under load would, as
SCHED_RR, hold a core against everything else on the host.
Nor for RS alone, though it is event-driven: traced under load (README,
"Performance"), RS's own steps in a restart take under 1 ms of the 15 to 40;
the rest is the kernel, the new instance's start, DS and the client, which a
real-time RS cannot shorten.  The template processes start and import in
params.TEMPLATE_QUEUE (minikern/kernel/spawn.py), below every service.
"""
from __future__ import annotations

import ctypes
import functools
import os
import struct

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
    refused = None
    try:
        os.setpriority(os.PRIO_PROCESS, pid, want)
    except ProcessLookupError:
        return None
    except PermissionError:
        if current(pid) != queue:  # else placed already (minikern/template.py, while root)
            refused = (f"the host refused nice {want} for queue {queue} (a raised priority "
                       "needs CAP_SYS_NICE: boot as root)")
    try:  # the slice needs no privilege: a system process gets it at the nice it has
        set_slice(pid, os.getpriority(os.PRIO_PROCESS, pid),
                  params.SYSTEM_SLICE_US if queue < USER_Q else 0)
    except ProcessLookupError:
        return None
    return refused


SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}.get(os.uname().machine)
SCHED_ATTR = struct.Struct("<IIQiIQQQII")  # size, policy, flags, nice, priority, runtime, ...
SCHED_OTHER = 0


def set_slice(pid: int, nice: int, slice_us: int) -> bool:
    """Give ``pid`` (at ``nice``) a time slice of ``slice_us`` (0: the host's default) and
    SCHED_OTHER; False where the host has no such call or refused it."""
    if SYS_SCHED_SETATTR is None:
        return False
    attr = ctypes.create_string_buffer(SCHED_ATTR.pack(
        SCHED_ATTR.size, SCHED_OTHER, 0, nice, 0, slice_us * 1000, 0, 0, 0, 0), SCHED_ATTR.size)
    return bool(_libc().syscall(SYS_SCHED_SETATTR, pid, attr, 0) == 0)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def slice_us(pid: int) -> int | None:
    """``pid``'s time slice in microseconds as the host reports it (/proc/PID/sched's
    se.slice, on EEVDF hosts); None where it does not."""
    try:
        with open(f"/proc/{pid}/sched") as f:
            for line in f:
                if line.startswith("se.slice"):
                    return int(line.split(":")[1]) // 1000
    except (OSError, ValueError):
        pass
    return None


def current(pid: int) -> int | None:
    """The scheduling queue ``pid`` runs in now, read back from the host; None if gone."""
    try:
        return queue_of(os.getpriority(os.PRIO_PROCESS, pid))
    except (ProcessLookupError, PermissionError):
        return None
