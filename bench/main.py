"""bin/bench: one subcommand per benchmark; with --json the last line is one JSON object.

Each benchmark is a module in this package with three functions:
``add_arguments(parser)``, ``run(args) -> dict`` and ``report(result) -> str``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform

BENCHMARKS = {  # subcommand -> (module, one-line help)
    "ipc": ("bench.ipc", "SENDREC round trip through the kernel vs a bare ZeroMQ relay"),
    "devio": ("bench.devio", "port accesses per second from one driver: fast path vs DEVIO"),
    "recovery": ("bench.recovery", "time from SIGKILL of a driver to its replacement answering"),
    "net": ("bench.net", "20 MB TCP out of the system, without and with its NIC driver SIGKILLed"),
    "mutation": ("bench.mutation", "share of planted bugs (mutants) the tests catch, per module"),
}


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    for name, (module, text) in BENCHMARKS.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--json", action="store_true", help="end with one JSON object")
        importlib.import_module(module).add_arguments(p)
    args = ap.parse_args(argv)
    mod = importlib.import_module(BENCHMARKS[args.what][0])
    result = mod.run(args)
    print(mod.report(result))
    print(f"machine: {machine()}")
    if args.json:
        print(json.dumps(result))
    return 0
