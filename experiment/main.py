"""bin/experiment: a seeded fault-injection campaign across the drivers, with a report.

    bin/experiment --faults 500 --seed 1 --out exp-1 --json

Derives the plan from --seed alone (experiment/plan.py: which driver, which
fault, where), boots its own systems in fresh folders (experiment/rig.py),
runs an application on each driver that checks every byte, injects the
faults one at a time through RS (RsReq.CRASH: process faults as bin/crash;
code, interface and resource faults armed inside the driver by SEF, see
minikern/swifi.py), and classifies each: activated, detected and by what,
recovered and how fast, what the application saw, what else was hit.

--workers N cuts the plan into N trials that run side by side, each on its
own systems, on this machine's cores; --dask ADDRESS runs them on a Dask
distributed scheduler instead (``local``: a LocalCluster of --workers
processes; needs the optional ``experiment`` extras).  The plan, and so the
sequence of injections, does not depend on how it is cut.  The report goes
to --out: report.json, report.md and PNG figures.  With --json the last line
is the summary: {faults, activated, detected, recovered, kernel_crashes,
other_components_hit, app_errors, bytes_corrupted, silent_failures,
median_recovery_ms, report}.  Exit status 0 if no kernel crashed, no byte was
corrupted and every detected failure recovered; 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from minikern import cli
from experiment.plan import TYPES, Injection, make_plan, slices
from experiment.targets import TARGETS


def _names(allowed: list[str], what: str) -> Any:
    def parse(text: str) -> list[str]:
        names = [n for n in text.split(",") if n]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{what} must be among {', '.join(allowed)}")
        return names
    return parse


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="experiment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1, help="the plan's seed (default %(default)s)")
    p.add_argument("--faults", type=_positive, default=100, help="injections (default %(default)s)")
    p.add_argument("--drivers", type=_names(list(TARGETS), "drivers"), default=list(TARGETS),
                   help="comma-separated, among " + ", ".join(TARGETS))
    p.add_argument("--types", type=_names(list(TYPES), "types"), default=list(TYPES),
                   help="comma-separated fault types, among " + ", ".join(TYPES))
    p.add_argument("--out", type=Path, default=None,
                   help="the report's folder (default experiment-SEED)")
    p.add_argument("--workers", type=_positive, default=1,
                   help="trials side by side (default %(default)s)")
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run the trials on this Dask scheduler ('local': a LocalCluster)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="make trial N's systems in RUN_DIR/trial-N and keep them (default: a "
                   "fresh temporary folder per trial, removed after)")
    p.add_argument("--period", type=_positive, default=300,
                   help="the drivers' heartbeat period in ms (default %(default)s)")
    p.add_argument("--plan", action="store_true", help="print the plan as JSON and stop")
    p.add_argument("--json", action="store_true", help="end with the summary as one JSON line")
    return p


Job = tuple[list[dict[str, Any]], list[str], int, int, str | None]


def _trial(job: Job) -> dict[str, Any]:
    from experiment.trial import run_trial
    injections, drivers, seed, period, work = job
    return run_trial([Injection(**i) for i in injections], drivers, seed, period,
                     Path(work) if work else None)


def run_local(jobs: list[Job],
              workers: int) -> list[dict[str, Any]]:
    if workers == 1 or len(jobs) == 1:
        return [_trial(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_trial, jobs))


def run_dask(jobs: list[Job], address: str,
             workers: int) -> list[dict[str, Any]]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as e:
        raise SystemExit("experiment: --dask needs dask[distributed] "
                         "(pip install -e '.[experiment]')") from e
    os.environ["PYTHONPATH"] = str(cli.REPO_ROOT)  # the workers import experiment too
    if address == "local":
        with LocalCluster(n_workers=workers, threads_per_worker=1,  # type: ignore[no-untyped-call]
                          processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:  # type: ignore[no-untyped-call]
            return list(client.gather(client.map(_trial, jobs, pure=False)))
    with Client(address) as client:  # type: ignore[no-untyped-call]
        return list(client.gather(client.map(_trial, jobs, pure=False)))


def campaign(args: argparse.Namespace) -> dict[str, Any]:
    from experiment import report
    plan = make_plan(args.seed, args.faults, args.drivers, args.types)
    jobs: list[Job] = [
        ([i.asdict() for i in part], args.drivers, args.seed * 1000 + n, args.period,
         str(args.run_dir / f"trial-{n}") if args.run_dir else None)
        for n, part in enumerate(slices(plan, args.workers))]
    t0 = time.time()
    trials = (run_dask(jobs, args.dask, args.workers) if args.dask
              else run_local(jobs, args.workers))
    meta = {"seed": args.seed, "drivers": args.drivers, "types": args.types,
            "trials": len(jobs), "period_ms": args.period, "seconds": time.time() - t0,
            "machine": f"{os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}"}
    out = args.out or Path(f"experiment-{args.seed}")
    return report.write(out, [i.asdict() for i in plan], trials, meta)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.plan:
        plan = make_plan(args.seed, args.faults, args.drivers, args.types)
        print(json.dumps([i.asdict() for i in plan]))
        return 0
    summary = campaign(args)
    ok = (summary["kernel_crashes"] == 0 and summary["bytes_corrupted"] == 0
          and summary["recovered"] == summary["detected"])
    if not args.json:
        print("\n".join(f"{k}: {v}" for k, v in summary.items()))
    else:
        print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
