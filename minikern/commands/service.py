"""bin/service: start, stop, restart or refresh a service through RS (MINIX's `service`).

    up LABEL       start a service that is down or failed (clears its failure history)
    down LABEL     stop it; RS does not restart it (an operator's choice, not a failure)
    restart LABEL  start a terminated service now (what a recovery script calls); EBUSY
                   while it runs
    refresh LABEL  kill it and replace it with a fresh copy of its code

Each returns once RS has done it (the new instance is up, or the old one has
exited).  With --json: RS's answer as one JSON object (endpoint and pid of
the new instance, when there is one).
"""
from __future__ import annotations

import argparse
import json

from minikern import cli, rsctl
from minikern.const import RsReq

ACTIONS = {"up": RsReq.UP, "down": RsReq.DOWN, "restart": RsReq.RESTART,
           "refresh": RsReq.REFRESH}


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("service", __doc__, json="print RS's answer as one JSON object")
    cmd.add_argument("action", choices=sorted(ACTIONS), help="one of those below")
    cmd.add_argument("label", help="the service, as system.conf names it")
    return cmd.run(argv, service)


def service(args: argparse.Namespace) -> int:
    r = rsctl.request(args.run_dir, ACTIONS[args.action], label=args.label)
    if args.json:
        print(json.dumps(r))
        return cli.EXIT_OK
    detail = f" (endpoint {r['endpoint']}, pid {r['pid']})" if "endpoint" in r else ""
    print(f"service {args.action} {args.label}: done{detail}")
    return cli.EXIT_OK
