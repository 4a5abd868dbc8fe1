"""bin/bench fuzz: the kernel's and the board's sockets under a long Hypothesis run.

Boots the shipped etc/system.conf (no NIC wire) in a private run directory and
sends --examples fuzzed examples (tests/fuzzer.py: every trap, kernel call,
bus verb, fast-path op and control line, their fields wrong, huge, truncated,
with extra parts), checking after each that the kernel answers a legitimate
GETINFO and the board a fast-path round trip.  Reports frames sent per kind,
the refusals the kernel and the board counted, the slowest legitimate round
trip after an example, and the kernel's state after (alive, RSS, unix
connections, descriptors).  With --json: {examples, seconds, frames, sent:
{kind: n}, refused: {kernel: {counter: n}, board: {...}}, alive, rss_mib,
rss_start_mib, connections, fds, max_check_ms}.
"""
from __future__ import annotations

import argparse
import random
import time
from typing import Any

from bench import positive
from bench.booted import standard_system


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--examples", type=positive, default=2000,
                   help="fuzzed examples sent (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default: random)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from tests.fuzzer import KINDS, Fuzzer, run_examples

    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    with standard_system("mk-bench-fuzz-") as system:
        kernel = psutil.Process(system.kernel.pid)
        rss_start = kernel.memory_info().rss
        fuzzer = Fuzzer(system.run_dir)
        slowest = 0.0
        try:
            t0 = time.monotonic()
            check = fuzzer.check

            def timed_check() -> None:
                nonlocal slowest
                start = time.perf_counter()
                check()
                slowest = max(slowest, time.perf_counter() - start)

            fuzzer.check = timed_check  # type: ignore[method-assign]
            for kind in KINDS:  # kind by kind: each gets its share of examples
                run_examples(fuzzer, max(args.examples // len(KINDS), 1), seed=seed, kind=kind)
            seconds = time.monotonic() - t0
            state = fuzzer.state()
        finally:
            fuzzer.close()
    return {"examples": args.examples, "seed": seed, "seconds": round(seconds, 1), **state,
            "rss_start_mib": round(rss_start / (1 << 20), 1),
            "max_check_ms": round(slowest * 1000, 1)}


def report(r: dict[str, Any]) -> str:
    lines = [f"fuzz: {r['examples']} examples, {r['frames']} frames in {r['seconds']} s "
             f"(seed {r['seed']})",
             f"kernel after: {'alive' if r['alive'] else 'DEAD'}, RSS {r['rss_mib']} MiB "
             f"(started at {r['rss_start_mib']}), {r['connections']} unix connections, "
             f"{r['fds']} descriptors",
             f"slowest legitimate round trip after an example: {r['max_check_ms']} ms",
             "frames sent per kind:"]
    lines += [f"  {kind:24} {n}" for kind, n in r["sent"].items()]
    for side in ("kernel", "board"):
        lines.append(f"refusals counted by the {side}:")
        lines += [f"  {name:32} {n}" for name, n in r["refused"][side].items()]
    return "\n".join(lines)
