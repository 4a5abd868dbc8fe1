"""bin/bench: measure minikern, one subcommand per benchmark (`bench NAME --help` for each).

Each benchmark boots its own systems in fresh temporary folders, then prints
a readable report and the machine it ran on; with --json the last line is one
JSON object with the figures the README quotes.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform

from minikern import cli

# Each benchmark is a module of this package with three functions:
# add_arguments(parser), run(args) -> dict and report(result) -> str.
BENCHMARKS = {  # subcommand -> (module, one-line help)
    "ipc": ("bench.ipc", "SENDREC round trip through the kernel vs a bare ZeroMQ relay"),
    "devio": ("bench.devio", "port accesses per second from one driver: fast path vs DEVIO"),
    "recovery": ("bench.recovery", "time from SIGKILL of a driver to its replacement answering"),
    "net": ("bench.net", "20 MB TCP out of the system, without and with its NIC driver SIGKILLed"),
    "blockdev": ("bench.blockdev", "sequential MB/s of a bdev client to at_wini, by DMA and PIO"),
    "disk": ("bench.disk", "20 MB cp and sha256sum through bin/mount, without and with at_wini "
                           "SIGKILLed"),
    "print": ("bench.print", "a 1 MB print job through the spooler, without and with the printer "
                             "driver SIGKILLed"),
    "ramdisk": ("bench.ramdisk", "files on /ram through VFS, the memory driver SIGKILLed during "
                                 "and after; read back, fsck.minix -f"),
    "mutation": ("bench.mutation", "share of planted bugs (mutants) the tests catch, per module"),
    "cli": ("bench.cli", "median wall time of each operator command, from a shell"),
    "idle": ("bench.idle", "CPU an idle booted system uses, over --seconds"),
    "fuzz": ("bench.fuzz", "the kernel's and the board's sockets under --examples fuzzed frames"),
}


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    # Each benchmark boots its own systems in fresh folders: no --run-dir, no system needed.
    cmd = cli.Command("bench", __doc__, run_dir=False)
    sub = cmd.add_subparsers(dest="what", required=True)
    for name, (module, text) in BENCHMARKS.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--json", action="store_true", help="end with one JSON object")
        importlib.import_module(module).add_arguments(p)
    return cmd.run(argv, bench)


def bench(args: argparse.Namespace) -> int:
    cli.interruptible()  # kill -TERM too halts its systems and stops its load (bench/load.py)
    mod = importlib.import_module(BENCHMARKS[args.what][0])
    result = mod.run(args)
    print(mod.report(result))
    print(f"machine: {machine()}")
    if args.json:
        print(json.dumps(result))
    return 0
