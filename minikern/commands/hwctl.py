"""bin/hwctl: the board's fault knobs and device statistics.

Runs in the operator's shell, through the board's control socket
(minikern.boardctl)::

    bin/hwctl [--run-dir DIR] stats
    bin/hwctl [--run-dir DIR] set ata.bad_sectors '[5]'
    bin/hwctl [--run-dir DIR] set nic.drop_rx '{"count": 10}'
"""
from __future__ import annotations

import argparse
import json
import sys

from minikern import cli
from minikern.boardctl import BoardCtl, CtlError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hwctl", description=__doc__.splitlines()[0])
    cli.add_run_dir(ap)
    sub = ap.add_subparsers(dest="what", required=True)
    stats = sub.add_parser("stats", help="device counters as JSON")
    s = sub.add_parser("set", help="set a fault knob")
    s.add_argument("knob")
    s.add_argument("value", help="a JSON value, e.g. true, 3, '[5, 6]'")
    for p in (stats, s):  # also after the subcommand, as the other commands take it
        p.add_argument("--run-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cli.require_system(args.run_dir, "hwctl")
    try:
        with BoardCtl(args.run_dir) as ctl:
            if args.what == "stats":
                print(json.dumps(ctl.stats(), indent=2))
            else:
                print(json.dumps(ctl.set(args.knob, json.loads(args.value))))
    except (OSError, CtlError, ValueError) as e:
        print(f"hwctl: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
