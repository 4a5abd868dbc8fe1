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
The template processes start and import in params.TEMPLATE_QUEUE
(minikern/kernel/spawn.py), below every service.

A weight and a slice still leave a woken system process behind a CPU loop now
and then, and a restart is some twenty wake-ups in a row (the kernel, RS, the
template, DS, the client: README, "Recovery under load, traced"); with two CPU
loops on two cores the median restart doubled.  So, booted as root, the queues
down to the templates' (RT_QUEUES: the kernel and RS, the drivers, DS, the
servers, and the template pool, whose refill must keep up with restarts
behind CPU loops) are also real-time, SCHED_RR at a real-time priority in
MINIX's order (queue 0 highest, ``rt_priority``), and bounded, as issue 14
asks ("SCHED_RR with a bound"):

* RLIMIT_RTTIME: a thread that runs params.RT_BOUND_US of CPU without once
  blocking gets SIGXCPU.  ``bound`` (installed in every process: the template's
  first step, the kernel's) answers it by demoting every thread of the process
  to SCHED_OTHER at its nice value, saying so on the console, and by taking the
  class back after params.RT_PENALTY seconds, as MINIX's scheduler lowers a
  process that used up its quantum and raises it again in ``balance_queues``.
  A spinning process holds a core for RT_BOUND_US at a time, then gets one
  share among many for RT_PENALTY: a duty cycle of under a tenth.
* the hard limit, RT_BOUND_US + RT_KILL_GRACE_US: a process that did not give up
  the class (its handler could not run, or ignored the signal) is killed by
  the host, and RS restarts it as for any signal;
* the order itself: RS and the kernel are above every driver and server, so
  whatever spins below them, they still run to ping it and restart it;
* the host's own reserve for the weighted class (sched_rt_runtime_us, 95% by
  default, or the fair server on Linux 6.12 and later).

To take its class back once it has dropped root (a protection domain), a
process needs an RLIMIT_RTPRIO of its priority, which ``apply`` sets where the
host lets it raise a hard limit (CAP_SYS_RESOURCE, which a container may
withhold); without it a demotion is for the rest of the instance's life, said
so on the console, and the instance runs as it would without the class.  A process a real-time
one starts (a recovery script, mkfs) is started through ``weighted`` in the
weighted class: it is not a system process.  Without root (or where the host
refuses SCHED_RR, as a container without real-time bandwidth does) the weight
and the slice are all there is, and nothing else changes; ``policy`` reads the
class back (``bin/ps``).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import shutil
import signal
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

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


RT_QUEUES = range(KERNEL_Q, params.TEMPLATE_QUEUE + 1)  # the queues real-time as root
T = TypeVar("T")


def rt_priority(queue: int) -> int:
    """The SCHED_RR priority of a queue in RT_QUEUES: queue 0 highest, all above
    params.RT_PRIORITY_BASE (the host's own real-time threads, at 50 and 99, stay above)."""
    return params.RT_PRIORITY_BASE + (RT_QUEUES.stop - queue)


def threads(pid: int) -> list[int]:
    """The thread ids of process ``pid`` (just the pid if /proc cannot say): a nice value,
    a class or an affinity is set per thread on Linux."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def apply(pid: int, queue: int) -> str | None:
    """Put process ``pid`` in ``queue``, every thread it has; None when done, else why the
    host refused the nice value (a refused real-time class is not an error: see above).

    A process that has gone meanwhile is no error (it is being replaced)."""
    if pid == os.getpid() and _pending:  # a placement of its own replaces a demotion's return
        _pending.pop().cancel()
    want = nice_of(queue)
    refused = None
    for tid in threads(pid):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, want)
        except ProcessLookupError:
            continue
        except PermissionError:
            if current(tid) != queue:  # else placed already (minikern/template.py, while root)
                refused = (f"the host refused nice {want} for queue {queue} (a raised priority "
                           "needs CAP_SYS_NICE: boot as root)")
        # the slice needs no privilege: a system process gets it at the nice it has; it also
        # puts the thread in SCHED_OTHER, which is all there is for a queue not in RT_QUEUES
        with contextlib.suppress(ProcessLookupError):
            set_slice(tid, os.getpriority(os.PRIO_PROCESS, tid),
                      params.SYSTEM_SLICE_US if queue < USER_Q else 0)
    if queue in RT_QUEUES and params.REALTIME and refused is None:
        _realtime(pid, rt_priority(queue))
    else:  # nor may it make itself real-time (a template inherits the kernel's allowance)
        with contextlib.suppress(OSError):
            resource.prlimit(pid, resource.RLIMIT_RTPRIO, (0, 0))
    return refused


def _realtime(pid: int, priority: int) -> bool:
    """SCHED_RR at ``priority`` for every thread of ``pid``, under its bound; False if the
    host refused (not root, no real-time bandwidth) or the process is gone."""
    soft, hard = params.RT_BOUND_US, params.RT_BOUND_US + params.RT_KILL_GRACE_US
    try:
        now = resource.prlimit(pid, resource.RLIMIT_RTTIME)[1]
        if now != resource.RLIM_INFINITY and now < hard:  # never raised (CAP_SYS_RESOURCE)
            soft, hard = min(soft, now), now
        resource.prlimit(pid, resource.RLIMIT_RTTIME, (soft, hard))
        with contextlib.suppress(PermissionError):  # a hard limit raised needs CAP_SYS_RESOURCE
            resource.prlimit(pid, resource.RLIMIT_RTPRIO, (priority, priority))
        for tid in threads(pid):
            os.sched_setscheduler(tid, os.SCHED_RR, os.sched_param(priority))
    except (PermissionError, ProcessLookupError):
        return False
    return True


def policy(pid: int) -> str | None:
    """``rr`` or ``other``: the host scheduling class of ``pid``'s main thread; None if gone."""
    try:
        return "rr" if os.sched_getscheduler(pid) == os.SCHED_RR else "other"
    except (ProcessLookupError, PermissionError):
        return None


def bound() -> None:
    """In this process: answer SIGXCPU (RLIMIT_RTTIME's soft limit, set by ``apply``) by
    demoting every thread to SCHED_OTHER, and take the real-time class back after
    params.RT_PENALTY seconds.  Nothing to do in a process that is never real-time."""
    signal.signal(signal.SIGXCPU, _demote)


def bounded(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn``, run with ``bound`` installed first (the kernel's entry point)."""
    def run() -> T:
        bound()
        return fn()
    return run


def _demote(signo: int, frame: Any) -> None:
    try:
        if os.sched_getscheduler(0) != os.SCHED_RR:
            return  # a second SIGXCPU from a thread demoted meanwhile
        priority = os.sched_getparam(0).sched_priority
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        for tid in threads(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                set_slice(tid, nice, params.SYSTEM_SLICE_US)  # SCHED_OTHER, at the same nice
    except OSError:
        return
    back = os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_RTPRIO)[0] >= priority
    print(f"{_name()}: demoted from SCHED_RR "
          + (f"for {params.RT_PENALTY:g} s" if back else "for good (no privilege to return)")
          + f": a thread ran {params.RT_BOUND_US // 1000} ms without blocking",
          file=sys.stderr, flush=True)
    if back:
        again = threading.Timer(params.RT_PENALTY, _return, (priority,))
        again.daemon = True
        _pending[:] = [again]
        again.start()


_pending: list[threading.Timer] = []  # this process's return to its class, when demoted


def _return(priority: int) -> None:
    _pending.clear()
    _realtime(os.getpid(), priority)


def _name() -> str:
    try:
        with open("/proc/self/comm") as f:
            return f.read().strip()
    except OSError:
        return str(os.getpid())


def weighted(argv: list[str]) -> list[str]:
    """``argv`` to run a program from a real-time process in SCHED_OTHER (at the nice value
    it inherits): a child of SCHED_RR would otherwise inherit the class, and the bound's
    SIGXCPU, which would kill it; ``argv`` itself from any other process, or where
    util-linux's chrt is missing."""
    chrt = shutil.which("chrt") if os.sched_getscheduler(0) == os.SCHED_RR else None
    return [chrt, "--other", "0", *argv] if chrt else argv


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
