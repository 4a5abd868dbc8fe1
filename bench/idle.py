"""bin/bench idle: how much CPU a booted system uses when nothing happens.

Boots the shipped etc/system.conf in a private run directory, waits until
every service is up and settled, then measures the CPU time (user + system)
of the kernel and every process under it (components, the board, templates)
over --seconds of idleness, as a percentage of one core, in total and per
process (named by the kernel's process names, mk-<label>).  Target: at most
2% of one core over 30 s.  With --json: {cpu_percent, seconds, processes:
{name: percent}}.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import psutil

from bench import positive
from bench.booted import standard_system

TARGET_PERCENT = 2.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=positive, default=30,
                   help="seconds of idleness measured (default %(default)s)")


def cpu_by_process(kernel_pid: int) -> dict[int, tuple[str, float]]:
    """pid -> (name, CPU seconds so far) of the kernel and everything under it."""
    out: dict[int, tuple[str, float]] = {}
    try:
        kernel = psutil.Process(kernel_pid)
        procs = [kernel, *kernel.children(recursive=True)]
    except psutil.Error:
        return out
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                name = "kernel" if p.pid == kernel_pid else p.name()
                out[p.pid] = (name, t.user + t.system)
        except psutil.Error:
            continue
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    with standard_system("mk-bench-idle-") as system:
        before, t0 = cpu_by_process(system.kernel.pid), time.monotonic()
        time.sleep(args.seconds)  # the measurement itself: the system is left alone
        after, wall = cpu_by_process(system.kernel.pid), time.monotonic() - t0
    per: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        used = cpu - before.get(pid, (name, 0.0))[1]
        per[name] = per.get(name, 0.0) + used
    percent = {n: round(100 * c / wall, 2) for n, c in sorted(per.items(), key=lambda x: -x[1])}
    return {"cpu_percent": round(100 * sum(per.values()) / wall, 2),
            "seconds": round(wall, 1), "processes": percent}


def report(r: dict[str, Any]) -> str:
    ok = r["cpu_percent"] <= TARGET_PERCENT
    top = ", ".join(f"{n} {p}%" for n, p in list(r["processes"].items())[:6])
    return (f"idle system over {r['seconds']} s: {r['cpu_percent']}% of one core "
            f"(target <= {TARGET_PERCENT:g}%: {'met' if ok else 'MISSED'})\nbusiest: {top}")
