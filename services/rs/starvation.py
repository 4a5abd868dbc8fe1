"""Hung, or starved of a CPU?  Runs inside RS, when a service has missed its heartbeats.

A service that does not answer RS's pings for HEARTBEAT_MISSES periods is hung
(MINIX's RS: no answer, no mercy).  On a host busier than its cores, a sound
service can miss them too: it is runnable, its answer one time slice away, but
other programs hold the CPUs.  Linux says which in /proc/<pid>/schedstat: the
nanoseconds the task has run on a CPU and has waited on a run queue for one
(Documentation/scheduler/sched-stats.rst).  Since its last answer, a hung
service has either run (an endless loop) or slept (blocked for good); a starved
one has mostly waited.

So when the hang is due, RS compares the service's threads now with the
sample it took at the last answer (their sums: a ping's answer needs libzmq's
I/O thread as well as the main thread, and each may wait for a CPU in turn,
neither a whole period; with the real-time class, behind a spinning driver
of the same queue, the main thread alone hid half of the wait).  If they
waited for a CPU at least one period, the host was too busy to tell yet:

    starved  it ran less than a quarter period (a ping's answer takes a few
             milliseconds of CPU): the verdict waits one more period;
    busy     it ran more: a server with a queue of requests, or an endless
             loop given its share of a CPU.  The kernel's count of messages
             delivered to it (GETINFO ``received``) tells: a loop that
             receives is serving; RS looks now and one period later, and the
             verdict waits while the count grows.

A service that did not wait (it slept: blocked) is starved all the same if
the processes every service waits on, the kernel (all IPC) and the board (all
device access), waited a period for a CPU meanwhile, or the service it is
blocked sending to (the kernel's GETINFO: ``wait`` SEND or SENDREC, ``peer``)
waited a period since its own last answer: with the real-time class the
drivers are queued above the servers, so a driver spinning on one core starves
INET, and rtl8139, asleep in its SENDREC to INET, misses its pings (the
10,000-fault campaign's three trials side by side).  Each more period counts
from when RS looks (RS, starved too, may look late), at most
HEARTBEAT_STARVED_MAX in a row; then the rule is MINIX's again.  An endless
loop beside two CPU hogs (it runs a third of the time) is busy and receives
nothing: hung at three periods; a process blocked for good on a host with CPUs
to spare, or running without waiting, at two.  Where schedstat is not there,
nothing is starved and the rule is MINIX's.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from minikern import sched


class Sched(NamedTuple):
    ran: float  # seconds the task has run on a CPU
    waited: float  # seconds it has waited on a run queue for one


def read(pid: int) -> Sched | None:
    """The CPU and run-queue times of all the process's threads, or None (gone, or no
    schedstat).  A thread that ended since the last sample takes its times with it: the
    sums may then fall, which reads as not starved (MINIX's rule)."""
    ran = waited = read_any = 0
    for tid in sched.threads(pid):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
            ran, waited, read_any = ran + int(fields[0]), waited + int(fields[1]), 1
        except FileNotFoundError:
            continue  # that thread ended meanwhile (or the process: then none is read)
        except (OSError, ValueError, IndexError):
            return None
    return Sched(ran / 1e9, waited / 1e9) if read_any else None


def starved(before: Sched | None, now: Sched | None, period: float) -> Sched | None:
    """If a task sampled ``before`` (at its last answer) and ``now`` waited for a CPU at
    least ``period`` meanwhile: how long it ran and waited (``starved`` if it ran less than
    a quarter ``period``, else busy).  None if it did not wait that long, or unknown."""
    if before is None or now is None:
        return None
    spent = Sched(now.ran - before.ran, now.waited - before.waited)
    return spent if spent.waited >= period else None


def hardly_ran(spent: Sched, period: float) -> bool:
    return spent.ran < period / 4
