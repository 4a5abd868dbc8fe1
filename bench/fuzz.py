"""bin/bench fuzz: the kernel's and the board's sockets under a long Hypothesis run.

Boots the shipped etc/system.conf (no NIC wire) in a private run directory and
sends --examples fuzzed examples (tests/fuzzer.py: every trap, kernel call,
bus verb, fast-path op and control line, their fields wrong, huge, truncated,
with extra parts), checking after each that the kernel answers a legitimate
GETINFO and the board a fast-path round trip.  --examples is shared evenly
by the frame kinds (at least one each).  Reports frames sent per kind, the
refusals the kernel and the board counted, the legitimate round trips after
the examples (median, p99, largest, share under 100 ms: the target is every
one within 100 ms), and the kernel's state after (alive, RSS, unix
connections, descriptors).  With --json: {examples, seconds, frames, sent:
{kind: n}, refused: {kernel: {counter: n}, board: {...}}, alive, rss_mib,
rss_start_mib, connections, fds, check_ms: {p50, p99, max, under_100ms}}.
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
                   help="fuzzed examples sent, shared by the kinds (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default: random)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from tests.fuzzer import KINDS, Fuzzer, run_examples

    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    with standard_system("mk-bench-fuzz-") as system:
        kernel = psutil.Process(system.kernel.pid)
        rss_start = kernel.memory_info().rss
        fuzzer = Fuzzer(system.run_dir)
        checks: list[float] = []
        try:
            t0 = time.monotonic()
            check = fuzzer.check

            def timed_check() -> None:
                start = time.perf_counter()
                check()
                checks.append(time.perf_counter() - start)

            fuzzer.check = timed_check  # type: ignore[method-assign]
            for kind in KINDS:  # kind by kind: each gets its share of examples
                run_examples(fuzzer, max(args.examples // len(KINDS), 1), seed=seed, kind=kind)
            seconds = time.monotonic() - t0
            state = fuzzer.state()
        finally:
            fuzzer.close()
    return {"examples": args.examples, "seed": seed, "seconds": round(seconds, 1), **state,
            "rss_start_mib": round(rss_start / (1 << 20), 1),
            "check_ms": percentiles(checks)}


def percentiles(seconds: list[float]) -> dict[str, float]:
    """The legitimate round trips after the examples (a GETINFO and a fast-path OUT and
    IN), in milliseconds: median, 99th percentile, largest."""
    ms = sorted(x * 1000 for x in seconds) or [0.0]
    return {"p50": round(ms[len(ms) // 2], 1), "p99": round(ms[min(len(ms) - 1, len(ms) * 99 // 100)], 1),
            "max": round(ms[-1], 1), "under_100ms": round(sum(x < 100 for x in ms) / len(ms), 3)}


def report(r: dict[str, Any]) -> str:
    lines = [f"fuzz: {r['examples']} examples, {r['frames']} frames in {r['seconds']} s "
             f"(seed {r['seed']})",
             f"kernel after: {'alive' if r['alive'] else 'DEAD'}, RSS {r['rss_mib']} MiB "
             f"(started at {r['rss_start_mib']}), {r['connections']} unix connections, "
             f"{r['fds']} descriptors",
             f"legitimate round trip after an example: median {r['check_ms']['p50']} ms, "
             f"p99 {r['check_ms']['p99']} ms, max {r['check_ms']['max']} ms, "
             f"{100 * r['check_ms']['under_100ms']:.1f}% under 100 ms",
             "frames sent per kind:"]
    lines += [f"  {kind:24} {n}" for kind, n in r["sent"].items()]
    for side in ("kernel", "board"):
        lines.append(f"refusals counted by the {side}:")
        lines += [f"  {name:32} {n}" for name, n in r["refused"][side].items()]
    return "\n".join(lines)
