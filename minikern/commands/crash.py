"""bin/crash: inject a fault into a live component, to watch RS recover it.

    kill       SIGKILL                    segv       SIGSEGV
    exit       exit with status 1         exception  an unhandled exception in its loop
    panic      panic() with a reason      hang       an endless loop (stops answering pings)

Only an operator can do this: RS accepts CRASH only from a tool admitted with
the run directory's operator key, and a component honours it only from RS.
A core server (the boot image's servers RS adopts: ds and hw) cannot be
restarted: its failure shuts the whole system down, so crash
refuses it (exit 1, saying so) unless --force is given.  With --json: RS's
answer as one JSON object (the pid the fault was sent to).
"""
from __future__ import annotations

import argparse
import json
import sys

from minikern import cli
from minikern.const import FAULTS, RsReq


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("crash", __doc__, json="print RS's answer as one JSON object")
    cmd.add_argument("label", help="the component, as bin/ps lists it")
    cmd.add_argument("fault", choices=FAULTS, metavar="fault", help="one of those below")
    cmd.add_argument("--force", action="store_true",
                     help="crash a core server too (the whole system shuts down)")
    return cmd.run(argv, crash)


def crash(args: argparse.Namespace) -> int:
    from minikern import rsctl  # here: `crash --help` loads no ZeroMQ
    with cli.connected(args.run_dir, "crash") as conn:
        services = {s["label"]: s for s in rsctl.call(conn, RsReq.STATUS)["services"]}
        core = services.get(args.label, {}).get("core", False)
        if core and not args.force:
            return cli.fail("crash", f"{args.label} is a core server: RS cannot restart it, "
                            "and its failure shuts the whole system down; --force to do it")
        if core:
            print(f"crash: {args.label} is a core server: the system will shut down",
                  file=sys.stderr, flush=True)
        r = rsctl.call(conn, RsReq.CRASH, label=args.label, fault=args.fault)
    print(json.dumps(r) if args.json else
          f"crash: {args.fault} injected into {args.label} (pid {r.get('pid')})")
    return cli.EXIT_OK
