"""bin/bench: one subcommand per benchmark; with --json the last line is one JSON object."""
from __future__ import annotations

import argparse
import json
import platform
from typing import Any, Callable


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


import os  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench", description=__doc__)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("ipc", help="SENDREC round trip through the kernel vs a bare ZeroMQ relay")
    p.add_argument("--json", action="store_true")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args(argv)
    runners: dict[str, Callable[[], tuple[dict[str, Any], str]]] = {}
    if args.what == "ipc":
        from bench import ipc
        r = ipc.run(args.rounds, args.calls)
        text = ipc.report(r)
    else:
        raise SystemExit(f"unknown benchmark {args.what}")
    del runners
    print(text)
    print(f"machine: {_machine()}")
    if args.json:
        print(json.dumps(r))
    return 0
