"""bin/experiment: a seeded fault-injection campaign across the drivers, with a report.

    bin/experiment --faults 500 --seed 1 --out exp-1 --json

Derives the plan from --seed alone (experiment/plan.py: which driver, which
fault, where), boots its own systems in fresh folders (experiment/rig.py),
runs an application on each driver that checks every byte, injects the
faults one at a time through RS (RsReq.CRASH: process faults as bin/crash;
code, interface and resource faults armed inside the driver by SEF, see
minikern/swifi.py), and classifies each: activated, detected and by what,
recovered and how fast, what the application saw, what else was hit.

--chunks N cuts the plan into N trials, each on freshly booted systems
(default: one per worker); --workers N runs that many side by side on this
machine's cores; --dask ADDRESS runs them on a Dask distributed scheduler
instead (``local``: a LocalCluster of --workers processes; needs the optional
``experiment`` extras).  The plan, and so the sequence of injections, does
not depend on how it is cut.

A long campaign survives its own interruption: each trial's outcomes are
saved to --out/trials/trial-N.json as soon as it ends; --resume loads the
trials already saved (for the same plan) instead of running them again,
--trials N,M runs just those trials of the plan (again, if saved), and
--report-only writes the report from the saved trials alone (a partial
campaign says how many of the planned faults it ran).  The report goes
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
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any

from minikern import cli
from tests.net import netns
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


def _numbers(text: str) -> list[int]:
    try:
        got = [int(t, 10) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"trial numbers, comma-separated: {text!r}") from None
    if any(n < 0 for n in got):
        raise argparse.ArgumentTypeError(f"trial numbers count from 0: {text!r}")
    return got


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
    p.add_argument("--chunks", type=_positive, default=None,
                   help="trials the plan is cut into (default: --workers)")
    p.add_argument("--resume", action="store_true",
                   help="load the trials already saved in --out instead of running them")
    p.add_argument("--trials", type=_numbers, default=None, metavar="N,M,...",
                   help="run only these trials of the plan (numbered from 0 as --chunks cuts "
                   "it; each with the seed it has in the whole campaign), to rerun the ones a "
                   "campaign could not finish; the report covers the trials saved in --out")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from the trials saved in --out, run nothing")
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run the trials on this Dask scheduler ('local': a LocalCluster)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="make trial N's systems in RUN_DIR/trial-N and keep them (default: a "
                   "fresh temporary folder per trial, removed after)")
    p.add_argument("--period", type=_positive, default=300,
                   help="the drivers' heartbeat period in ms (default %(default)s)")
    p.add_argument("--net-peer", choices=netns.PEERS, default="auto",
                   help="the network application's echo server: Linux's TCP in a network "
                   "namespace on a TAP (linux-tap, needs root), or a second system on the UDP "
                   "wire (udp); auto takes linux-tap when it can (default %(default)s)")
    p.add_argument("--plan", action="store_true", help="print the plan as JSON and stop")
    p.add_argument("--json", action="store_true", help="end with the summary as one JSON line")
    return p


Job = tuple[list[dict[str, Any]], list[str], int, int, str | None, str]


_interrupted = False  # in a worker: a trial of this process was stopped by Ctrl-C


def _trial(job: Job) -> dict[str, Any]:
    from experiment import trial
    global _interrupted
    if _interrupted:  # the campaign is stopping: a worker takes no new trial
        raise KeyboardInterrupt("the campaign was interrupted")
    cli.interruptible()
    injections, drivers, seed, period, work, net_peer = job
    try:
        return trial.run_trial([Injection(**i) for i in injections], drivers, seed, period,
                               Path(work) if work else None, net_peer)
    except KeyboardInterrupt:
        _interrupted = True
        raise


Save = Callable[[int, dict[str, Any]], None]


def run_local(jobs: dict[int, Job], workers: int, save: Save) -> None:
    if workers == 1 or len(jobs) == 1:
        for n, job in jobs.items():
            save(n, _trial(job))
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        running = {pool.submit(_trial, job): n for n, job in jobs.items()}
        try:
            _gather(running, save)
        except KeyboardInterrupt:
            # A worker that gets Ctrl-C fails its trial (its systems halted) and would take
            # the next: the trials not started are cancelled, and a worker the interrupt did
            # not reach (the campaign's own pid was signalled) is told too.
            pool.shutdown(wait=False, cancel_futures=True)
            for child in active_children():
                if child.pid is not None:
                    os.kill(child.pid, signal.SIGINT)
            raise


def _gather(running: dict[Future[dict[str, Any]], int], save: Save) -> None:
    for done in as_completed(running):
        try:
            trial = done.result()
        except Exception as e:  # noqa: BLE001 (one trial's failure is not the campaign's)
            print(f"experiment: trial {running[done]} failed, not saved (--resume runs it "
                  f"again): {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        save(running[done], trial)


def run_dask(jobs: dict[int, Job], address: str, workers: int, save: Save) -> None:
    try:
        from dask.distributed import Client, LocalCluster, as_completed as dask_completed
    except ImportError as e:
        raise SystemExit("experiment: --dask needs dask[distributed] "
                         "(pip install -e '.[experiment]')") from e
    os.environ["PYTHONPATH"] = str(cli.REPO_ROOT)  # the workers import experiment too

    def gather(client: Any) -> None:
        futures = {client.submit(_trial, job, pure=False): n for n, job in jobs.items()}
        for done in dask_completed(list(futures)):  # type: ignore[no-untyped-call]
            save(futures[done], done.result())
    if address == "local":
        with LocalCluster(n_workers=workers, threads_per_worker=1,  # type: ignore[no-untyped-call]
                          processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:  # type: ignore[no-untyped-call]
            gather(client)
        return
    with Client(address) as client:  # type: ignore[no-untyped-call]
        gather(client)


def trial_path(out: Path, n: int) -> Path:
    return out / "trials" / f"trial-{n}.json"


def saved_trial(out: Path, n: int, injections: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Trial ``n`` as saved by an earlier run, if it ran exactly these injections."""
    try:
        trial: dict[str, Any] = json.loads(trial_path(out, n).read_text())
    except (OSError, ValueError):
        return None
    ran = [{k: o.get(k) for k in injections[0]} for o in trial.get("injections", [])]
    return trial if ran == injections[:len(ran)] and trial.get("complete") else None


def campaign(args: argparse.Namespace) -> dict[str, Any]:
    from experiment import report
    plan = make_plan(args.seed, args.faults, args.drivers, args.types)
    out = args.out or Path(f"experiment-{args.seed}")
    parts = slices(plan, args.chunks or args.workers)
    jobs: dict[int, Job] = {
        n: ([i.asdict() for i in part], args.drivers, args.seed * 1000 + n, args.period,
            str(args.run_dir / f"trial-{n}") if args.run_dir else None, args.net_peer)
        for n, part in enumerate(parts)}
    if args.trials is not None and (beyond := sorted(set(args.trials) - set(jobs))):
        raise SystemExit(f"experiment: no trial {', '.join(map(str, beyond))}: the plan is cut "
                         f"into {len(jobs)} (0 to {len(jobs) - 1})")
    trials: dict[int, dict[str, Any]] = {}
    chosen = set(jobs) if args.trials is None else set(args.trials)
    if args.resume or args.report_only or args.trials is not None:
        for n, job in jobs.items():  # (a trial named in --trials runs again, saved or not)
            if (args.report_only or args.trials is None or n not in chosen) and (
                    t := saved_trial(out, n, job[0])) is not None:
                trials[n] = t
    t0 = time.time()

    def save(n: int, trial: dict[str, Any]) -> None:
        trial["complete"] = True
        path = trial_path(out, n)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(trial, default=str))
        tmp.replace(path)
        trials[n] = trial
        print(f"experiment: trial {n} done ({len(trial['injections'])} injections; "
              f"{len(trials)} of {len(jobs)} trials)", file=sys.stderr, flush=True)

    todo = {n: job for n, job in jobs.items() if n not in trials and n in chosen}
    if todo and not args.report_only:
        if args.dask:
            run_dask(todo, args.dask, args.workers, save)
        else:
            run_local(todo, args.workers, save)
    ran = [trials[n] for n in sorted(trials)]
    meta = {"seed": args.seed, "drivers": args.drivers, "types": args.types,
            "trials": len(ran), "planned_trials": len(jobs), "planned_faults": len(plan),
            "period_ms": args.period, "seconds": time.time() - t0,
            "net_peer": _net_peer(ran),
            "trial_seconds": sum(max((o.get("end", 0.0) for o in t["injections"]),
                                     default=t.get("start", 0.0)) - t.get("start", 0.0)
                                 for t in ran if "start" in t),
            "machine": f"{os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}"}
    return report.write(out, [i.asdict() for i in plan], ran, meta)


def _net_peer(trials: list[dict[str, Any]]) -> str | None:
    """The network application's peer ("linux-tap" or "udp"; both, comma-separated, if the
    trials differ; None without rtl8139)."""
    peers = sorted({str(t["net_peer"]) for t in trials if t.get("net_peer")})
    return ",".join(peers) or None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cli.interruptible()
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
