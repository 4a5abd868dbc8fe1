"""bin/bench print: a print job through the spooler, without and with the printer driver SIGKILLed.

One system (etc/system.conf).  Twice, once with nothing injected and once
with the printer driver SIGKILLed every --interval seconds: submit --bytes
random bytes as one job (userland/spool.py, as bin/lp does), wait until the
spooler reports it printed, and compare what the paper (run_dir/lpt1.out)
got with the job.  Rates are job bytes over the time from submission to done.

Last line with --json: bytes, identical (both rounds' paper equal to the job
byte for byte), kills (SIGKILLs that replaced the driver during the killed
round), duplicated and lost (bytes printed twice, bytes never printed, both
rounds together), nokill_Bps, kill_Bps, ratio (kill over no kill).
Targets: identical, duplicated and lost 0.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.char import printlab

ROUND_TIMEOUT = 600.0  # seconds one job may take, recoveries included


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bytes", type=int, default=1_000_000,
                   help="bytes of the job (default %(default)s)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between SIGKILLs of the printer driver (default %(default)s)")


def _round(rig: printlab.PrintRig, job: bytes, kills: bool, interval: float) -> dict[str, Any]:
    before = len(rig.paper())
    with printlab.killing(rig, kills, interval) as inj:
        t0 = time.monotonic()
        number = rig.submit(job, "bench")
        rig.wait_done(number, ROUND_TIMEOUT)
        seconds = time.monotonic() - t0
    paper = rig.paper()[before:]
    duplicated, lost = printlab.compare(job, paper)
    return {"seconds": seconds, "identical": paper == job, "duplicated": duplicated,
            "lost": lost, "kills": inj.count if inj is not None else 0,
            "errors": inj.errors if inj is not None else []}


def run(args: argparse.Namespace) -> dict[str, Any]:
    job = os.urandom(args.bytes)
    work = Path(tempfile.mkdtemp(prefix="mk-bench-print-"))
    try:
        with printlab.booted(work) as rig:
            quiet = _round(rig, job, False, args.interval)
            killed = _round(rig, job, True, args.interval)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for e in killed["errors"]:
        print(f"bench print: {e}", file=sys.stderr)
    nokill, kill = args.bytes / quiet["seconds"], args.bytes / killed["seconds"]
    return {"bytes": args.bytes, "identical": quiet["identical"] and killed["identical"],
            "kills": killed["kills"], "duplicated": quiet["duplicated"] + killed["duplicated"],
            "lost": quiet["lost"] + killed["lost"], "nokill_Bps": round(nokill),
            "kill_Bps": round(kill), "ratio": round(kill / nokill, 3)}


def report(r: dict[str, Any]) -> str:
    met = r["identical"] and r["duplicated"] == 0 and r["lost"] == 0
    return (f"print: a {r['bytes']}-byte job through lpd: {r['nokill_Bps']} B/s without kills, "
            f"{r['kill_Bps']} B/s with the printer driver SIGKILLed {r['kills']} times "
            f"(ratio {r['ratio']}); paper {'identical' if r['identical'] else 'DIFFERENT'}, "
            f"{r['duplicated']} bytes printed twice, {r['lost']} lost "
            f"(targets: identical, none twice, none lost: {'met' if met else 'MISSED'})")
