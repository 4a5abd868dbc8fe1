"""bin/crash: inject a fault into a live component, to watch RS recover it.

    kill       SIGKILL                    segv       SIGSEGV
    exit       exit with status 1         exception  an unhandled exception in its loop
    panic      panic() with a reason      hang       an endless loop (stops answering pings)

Only an operator can do this: RS accepts CRASH only from a tool admitted with
the run directory's operator key, and a component honours it only from RS.
Exit status: 0 injected, 1 refused, 2 no system running.
"""
from __future__ import annotations

import argparse
import sys

from minikern import cli
from minikern.const import RsReq
from services.rs import ctl
from services.rs.requests import FAULTS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="crash", description=__doc__.splitlines()[0],
                                 epilog="\n".join(__doc__.splitlines()[2:5]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_run_dir(ap)
    ap.add_argument("label")
    ap.add_argument("fault", choices=FAULTS)
    args = ap.parse_args(argv)
    cli.require_system(args.run_dir, "crash")
    try:
        r = ctl.request(args.run_dir, RsReq.CRASH, label=args.label, fault=args.fault)
    except ctl.RsError as e:
        print(f"crash {args.label} {args.fault}: {e}", file=sys.stderr)
        return 1
    print(f"crash: {args.fault} injected into {args.label} (pid {r.get('pid')})")
    return 0
