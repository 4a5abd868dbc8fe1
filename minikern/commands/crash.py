"""bin/crash: inject a fault into a live component, to watch RS recover it.

    kill       SIGKILL                    segv       SIGSEGV
    exit       exit with status 1         exception  an unhandled exception in its loop
    panic      panic() with a reason      hang       an endless loop (stops answering pings)

Only an operator can do this: RS accepts CRASH only from a tool admitted with
the run directory's operator key, and a component honours it only from RS.
With --json: RS's answer as one JSON object (the pid the fault was sent to).
"""
from __future__ import annotations

import argparse
import json

from minikern import cli, rsctl
from minikern.const import RsReq


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("crash", __doc__, json="print RS's answer as one JSON object")
    cmd.add_argument("label", help="the component, as bin/ps lists it")
    cmd.add_argument("fault", choices=rsctl.FAULTS, metavar="fault", help="one of those below")
    return cmd.run(argv, crash)


def crash(args: argparse.Namespace) -> int:
    r = rsctl.request(args.run_dir, RsReq.CRASH, label=args.label, fault=args.fault)
    print(json.dumps(r) if args.json else
          f"crash: {args.fault} injected into {args.label} (pid {r.get('pid')})")
    return cli.EXIT_OK
