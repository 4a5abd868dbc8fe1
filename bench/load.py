"""--load N: CPU-bound user programs running beside a benchmark, as on a busy machine.

``hogs(n)`` starts ``n`` processes that spin on the CPU and never block, in
the user programs' scheduling queue (USER_Q, minikern/sched.py: the host's
default nice, below every component of the system), for the body of a
``with``; they are killed and reaped when it ends, on an error or Ctrl-C
too.  ``spinning(pids)`` says whether each still uses its CPU, so a
benchmark can check the load was real (a hog that got no CPU is no load).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

from minikern import sched
from minikern.const import USER_Q
from minikern.deadline import wait_for

SPIN = "while True:\n    pass\n"


def add_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="CPU-bound user programs running during the measurement "
                        "(default %(default)s)")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spun(pid: int) -> bool:
    """Whether process ``pid`` has burned some CPU already."""
    return _cpu_seconds(pid) > 0.05


@contextlib.contextmanager
def hogs(n: int) -> Iterator[list[int]]:
    """``n`` spinning user programs for the body (none when n is 0); their pids."""
    if n < 0:
        raise SystemExit("--load must be 0 or more")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            p = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, start_new_session=True)
            procs.append(p)
            sched.apply(p.pid, USER_Q)  # where a user's program runs; never above the system
        # each has burned some CPU: the load is on before the measurement starts
        for p in procs:
            wait_for(functools.partial(_spun, p.pid), 10, "a load process to spin")
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait()
