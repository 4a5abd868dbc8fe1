"""bin/bench cli: how long each command takes, from a shell, against a booted system.

Boots the shipped etc/system.conf in a private run directory, then runs each
command below --runs times as a shell runs it (the file in bin/, its #! line
and bin/_launch choosing the interpreter), timing from the fork to the exit,
and reports each one's median wall time.  The commands read what a person
reads; none changes the system (`service restart` is not measured: it waits
for the service).  Target: every median at most 150 ms on the machine the
README names.  With --json: {commands: {name: median_ms}, max_median_ms,
runs}.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import positive
from bench.booted import standard_system
from minikern import cli

TARGET_MS = 150.0
# name -> the command's arguments (after bin/NAME); each must exit 0 on a healthy system
COMMANDS: dict[str, list[str]] = {
    "ps --help": ["ps", "--help"],
    "ps": ["ps"],
    "ps -l": ["ps", "-l"],
    "status": ["status"],
    "status hello": ["status", "hello"],
    "logs -n 20": ["logs", "-n", "20"],
    "ds list": ["ds", "list"],
    "hwctl stats": ["hwctl", "stats"],
    "hwctl knobs": ["hwctl", "knobs"],
    "ifconfig": ["ifconfig"],
    "top -b -n 1": ["top", "-b", "-n", "1"],
    "service --help": ["service", "--help"],
    "crash --help": ["crash", "--help"],
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=positive, default=7,
                   help="runs of each command (default %(default)s)")


def time_once(run_dir: Path, argv: list[str]) -> float:
    """Milliseconds from starting ``bin/argv[0]`` to its exit; RuntimeError if it failed."""
    env = {**os.environ, "MINIKERN_RUN_DIR": str(run_dir)}
    t0 = time.perf_counter()
    r = subprocess.run([str(cli.REPO_ROOT / "bin" / argv[0]), *argv[1:]],
                       capture_output=True, env=env, timeout=60)
    ms = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        raise RuntimeError(f"bin/{' '.join(argv)} exited {r.returncode}: "
                           f"{r.stderr.decode(errors='replace').strip()}")
    return ms


def run(args: argparse.Namespace) -> dict[str, Any]:
    with standard_system("mk-bench-cli-") as system:
        medians = {}
        for name, argv in COMMANDS.items():
            time_once(system.run_dir, argv)  # warm: the page cache, not the command, is cold
            times = [time_once(system.run_dir, argv) for _ in range(args.runs)]
            medians[name] = round(statistics.median(times), 1)
        return {"commands": medians, "max_median_ms": max(medians.values()),
                "runs": args.runs}


def report(r: dict[str, Any]) -> str:
    width = max(map(len, r["commands"]))
    lines = [f"{name:<{width}}  {ms:7.1f} ms" + ("" if ms <= TARGET_MS else "  (over target)")
             for name, ms in r["commands"].items()]
    ok = r["max_median_ms"] <= TARGET_MS
    lines.append(f"median wall time of each command, {r['runs']} runs: the slowest "
                 f"{r['max_median_ms']} ms (target <= {TARGET_MS:g}: {'met' if ok else 'MISSED'})")
    return "\n".join(lines)
