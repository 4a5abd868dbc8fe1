"""bin/service: start, stop, restart or refresh a service through RS (MINIX's `service`).

    up LABEL       start a service that is down or failed (clears its failure history)
    down LABEL     stop it; RS does not restart it (an operator's choice, not a failure)
    restart LABEL  start a terminated service now (what a recovery script calls); EBUSY
                   while it runs
    refresh LABEL  kill it and replace it with a fresh copy of its code

Each returns once RS has done it (the new instance is up, or the old one has
exited).  Exit status: 0 done, 1 refused or failed, 2 no system running.
"""
from __future__ import annotations

import argparse
import sys

from minikern import cli
from minikern.const import RsReq
from services.rs import ctl

ACTIONS = {"up": RsReq.UP, "down": RsReq.DOWN, "restart": RsReq.RESTART,
           "refresh": RsReq.REFRESH}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="service", description=__doc__.splitlines()[0],
                                 epilog="\n".join(__doc__.splitlines()[2:8]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_run_dir(ap)
    ap.add_argument("action", choices=sorted(ACTIONS))
    ap.add_argument("label")
    args = ap.parse_args(argv)
    cli.require_system(args.run_dir, "service")
    try:
        r = ctl.request(args.run_dir, ACTIONS[args.action], label=args.label)
    except ctl.RsError as e:
        print(f"service {args.action} {args.label}: {e}", file=sys.stderr)
        return 1
    detail = f" (endpoint {r['endpoint']}, pid {r['pid']})" if "endpoint" in r else ""
    print(f"service {args.action} {args.label}: done{detail}")
    return 0
