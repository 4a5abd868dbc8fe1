"""bin/bench mutation: how many small planted bugs the tests catch, per module.

Cosmic Ray's operators (``cosmic-ray``, in the ``test`` extra) make the mutants: each
is one change (``==`` to ``!=``, ``and`` to ``or``, a number plus one, a loop that
never runs...).  The kernel under test runs in a process the tests spawn, so
in-process test selection cannot see it: each mutant is instead written into a
private copy of the repository (its git-tracked and untracked, not ignored,
files; the developer's tree is never touched) and the module's focused tests
run there as a separate process group, ``-x`` so the first failure ends them.

A mutant is *killed* when the tests fail, or when they run past the per-mutant
timeout (a hang caught; counted in ``timeout`` too); it *survived* when they
pass.  ``score`` is killed / mutants.  Mutations inside type annotations are not
made: under ``from __future__ import annotations`` they are never evaluated.
With ``--sample N`` each module's mutants are a seeded random N of them.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree

import psutil

from bench import positive
from bench.procs import marked
from bench.mutants import Mutant, mutant, places
from minikern.cli import REPO_ROOT

# Files, not folders: pytest runs a folder's files in name order, and the files are run
# quickest first (see baseline).
# The board's own tests drive the kernel's side of the bus (attachment, interrupts, ticks).
KERNEL_TESTS = sorted(str(p.relative_to(REPO_ROOT))
                      for p in (REPO_ROOT / "tests" / "kernel").glob("test_*.py")) + [
    "tests/hw/test_board.py"]
TESTS = {  # module (or folder of modules) -> the tests that exercise it
    "minikern/kernel": KERNEL_TESTS,
    # The privilege map's validation moved into the protocol package: still the kernel's check.
    "minikern/proto/priv.py": KERNEL_TESTS,
    "minikern/ipc.py": KERNEL_TESTS + ["tests/lib/test_loop.py"],
    "minikern/sef.py": ["tests/lib/test_loop.py", "tests/kernel/test_ipc.py",
                        "tests/kernel/test_death.py", "tests/services/test_ds.py",
                        "tests/services/test_commands.py"],  # agents, DS and bin/crash: SEF
    "services/rs/policy.py": ["tests/services/test_rs_policy.py",
                              "tests/services/test_rs_lifecycle.py"],
}
KERNEL = "minikern/kernel"
TAG = "MINIKERN_MUTATION_WORKER"  # in the environment of everything a test run starts


@dataclass(frozen=True)
class Plan:
    tests: list[str]  # the command's test files, quickest first
    timeout: float


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    status: str       # killed | survived | timeout
    seconds: float


def modules(selected: list[str]) -> list[str]:
    """The .py files behind each selected entry of TESTS (a folder stands for its files)."""
    out = []
    for entry in selected:
        path = REPO_ROOT / entry
        files = sorted(path.glob("*.py")) if path.is_dir() else [path]
        out += [str(f.relative_to(REPO_ROOT)) for f in files]
    return out


def tests_for(module: str) -> list[str]:
    return TESTS[module] if module in TESTS else TESTS[str(Path(module).parent)]


def copy_repo(dest: Path) -> None:
    """The repository's tracked and untracked-but-not-ignored files, as they are now."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO_ROOT, check=True, capture_output=True).stdout
    for name in names.decode().split("\0"):
        src = REPO_ROOT / name
        if name and src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


class Worker:
    """One private copy of the repository and the test run going on in it."""

    def __init__(self, root: Path, tag: str) -> None:
        self.root, self.tag = root, tag
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root.with_suffix(".log")
        self.halted = threading.Event()  # set on Ctrl-C: no further test run may start
        self.lock = threading.Lock()  # a run is started, or killed, not both at once
        copy_repo(root)

    def run_tests(self, tests: list[str], timeout: float, *extra: str) -> str:
        """killed, survived or timeout; nothing the run started is left behind."""
        env = {**os.environ, "PYTHONPATH": str(self.root), "PYTHONDONTWRITEBYTECODE": "1",
               TAG: self.tag}
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly",
               "-p", "no:cacheprovider", f"--basetemp={self.root / '.tmp'}", *extra, *tests]
        with self.lock, self.log.open("wb") as log:  # the log: for a failing baseline
            if self.halted.is_set():
                raise KeyboardInterrupt
            proc = self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log,
                                                stderr=subprocess.STDOUT,
                                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
            return "survived" if code == 0 else "killed"
        except subprocess.TimeoutExpired:
            return "timeout"
        finally:
            self.stop()

    def stop(self) -> None:
        """Kill the test run's process group, then whatever it started elsewhere (the kernel
        starts its own session), found by this worker's tag."""
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        deadline = time.monotonic() + 10
        while (left := marked(TAG, self.tag)) and time.monotonic() < deadline:
            for p in left:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            time.sleep(0.1)

    def try_mutant(self, m: Mutant, plan: Plan) -> Outcome:
        path = self.root / m.module
        original = path.read_text()
        path.write_text(m.source)
        t = time.monotonic()
        try:
            status = self.run_tests(plan.tests, plan.timeout)
        finally:
            path.write_text(original)
        return Outcome(m, status, time.monotonic() - t)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--module", action="append", choices=list(TESTS),
                   help="module or folder to mutate (repeatable; default: all four)")
    p.add_argument("--sample", type=positive, help="try a seeded random N mutants per module")
    p.add_argument("--seed", type=int, default=8, help="seed of --sample (default 8)")
    p.add_argument("--max-line", type=positive,
                   help="only mutants on lines up to this one (a quick look at a module's top)")
    p.add_argument("--jobs", type=positive, default=2, help="test runs at once (default 2)")
    p.add_argument("--timeout", type=float, help="seconds per mutant before it counts as a "
                   "hang, killed (default: twice the unmutated run plus 30)")
    p.add_argument("--survivors", type=Path, help="write the surviving mutants to this file")


def select(args: argparse.Namespace) -> tuple[list[Mutant], dict[str, int]]:
    chosen, generated = [], {}
    for module in modules(args.module or list(TESTS)):
        found = [p for p in places(module) if args.max_line is None or p.line <= args.max_line]
        if not found:
            continue
        generated[module] = len(found)
        if args.sample is not None and args.sample < len(found):
            found = random.Random(f"{args.seed}:{module}").sample(found, args.sample)
        chosen += [m for m in map(mutant, found) if m is not None]
    random.Random(args.seed).shuffle(chosen)  # modules interleaved: Ctrl-C leaves a fair share
    return chosen, generated


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    chosen, generated = select(args)
    tmp = Path(tempfile.mkdtemp(prefix="mk-mutation-"))
    run_id = uuid.uuid4().hex[:8]
    workers: list[Worker] = []
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        workers = [Worker(tmp / f"w{i}", f"{run_id}-{i}") for i in range(args.jobs)]
        plans = baseline(workers, sorted({tuple(tests_for(m.module)) for m in chosen}),
                         args.timeout)
        outcomes = trial(workers, chosen, plans)
    finally:
        for w in workers:
            w.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, old_term)
    if args.survivors is not None:
        args.survivors.write_text("".join(
            f"{o.mutant.module}:{o.mutant.line}: {o.mutant.operator}\n"
            f"    - {o.mutant.before}\n    + {o.mutant.after}\n"
            for o in sorted(outcomes, key=lambda o: (o.mutant.module, o.mutant.line))
            if o.status == "survived"))
    return summarize(outcomes, len(chosen), generated, args, time.monotonic() - started)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


T = TypeVar("T")
R = TypeVar("R")


def parallel(workers: list[Worker], items: list[T],
             fn: Callable[[Worker, T], R]) -> Generator[R, None, None]:
    """fn(worker, item) for every item, each on a worker free at the time; results as they
    come.  On an error or Ctrl-C the rest is cancelled and the running tests are killed."""
    idle = list(workers)
    lock = threading.Lock()

    def one(item: T) -> R:
        with lock:
            w = idle.pop()
        try:
            return fn(w, item)
        finally:
            with lock:
                idle.append(w)

    with concurrent.futures.ThreadPoolExecutor(len(workers)) as pool:
        futures = [pool.submit(one, item) for item in items]
        try:
            for f in concurrent.futures.as_completed(futures):
                yield f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            for w in workers:
                w.halted.set()
                w.stop()
            raise


def baseline(workers: list[Worker], commands: list[tuple[str, ...]],
             fixed: float | None) -> dict[tuple[str, ...], Plan]:
    """Run each test command unmutated once: it must pass (or every mutant would look killed),
    its time sets the per-mutant timeout, and its files are then run quickest first (with
    -x, a mutant the quick files catch costs only their time)."""
    def measure(w: Worker, tests: tuple[str, ...]) -> tuple[tuple[str, ...], Plan]:
        xml = w.root.with_suffix(".xml")
        for attempt in range(3):  # again, in case a timing test lost to a loaded machine
            t = time.monotonic()
            if w.run_tests(list(tests), 1800, f"--junitxml={xml}") == "survived":
                break
            if attempt == 2:
                tail = w.log.read_text(errors="replace").splitlines()[-15:]
                raise RuntimeError(f"the unmutated tests fail: {' '.join(tests)}\n"
                                   + "\n".join(tail))
        took = time.monotonic() - t
        spent = dict.fromkeys(tests, 0.0)
        for case in ElementTree.parse(xml).iter("testcase"):
            path = case.get("classname", "").replace(".", "/")
            for f in tests:
                if path == f[:-3] or path.startswith(f[:-3] + "/"):
                    spent[f] += float(case.get("time", 0))
        plan = Plan(sorted(tests, key=spent.__getitem__),
                    fixed if fixed is not None else 2 * took + 30)
        print(f"unmutated {' '.join(plan.tests)}: {took:.0f} s", file=sys.stderr, flush=True)
        return tests, plan

    return dict(parallel(workers, commands, measure))


def trial(workers: list[Worker], chosen: list[Mutant],
          plans: dict[tuple[str, ...], Plan]) -> list[Outcome]:
    worst = sum(plans[tuple(tests_for(m.module))].timeout for m in chosen) / len(workers)
    print(f"{len(chosen)} mutants on {len(workers)} workers; at most {worst / 60:.0f} min "
          "(every mutant a hang), far less as most fail early", file=sys.stderr, flush=True)
    outcomes = []
    results = parallel(workers, chosen,
                       lambda w, m: w.try_mutant(m, plans[tuple(tests_for(m.module))]))
    try:
        for n, o in enumerate(results, 1):
            outcomes.append(o)
            print(f"[{n}/{len(chosen)}] {o.mutant.module}:{o.mutant.line} "
                  f"{o.mutant.operator}: {o.status} ({o.seconds:.1f} s)",
                  file=sys.stderr, flush=True)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the figures so far, marked as such
        results.close()
        print(f"interrupted after {len(outcomes)} of {len(chosen)} mutants", file=sys.stderr)
    return outcomes


def _counts(outs: list[Outcome]) -> dict[str, Any]:
    n = len(outs)
    killed = sum(o.status != "survived" for o in outs)
    return {"mutants": n, "killed": killed, "survived": n - killed,
            "timeout": sum(o.status == "timeout" for o in outs),
            "score": round(killed / n, 3) if n else None}


def summarize(outcomes: list[Outcome], planned: int, generated: dict[str, int],
              args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    per = {m: _counts([o for o in outcomes if o.mutant.module == m]) | {"generated": g}
           for m, g in generated.items()}
    kernel = _counts([o for o in outcomes if o.mutant.module.startswith(KERNEL + "/")])
    return {"modules": per, "total": _counts(outcomes), "kernel": kernel,
            "kernel_score": kernel["score"], "sampled": args.sample is not None,
            "sample": args.sample, "seed": args.seed, "jobs": args.jobs,
            "interrupted": len(outcomes) < planned,
            "seconds": round(seconds), "survivors": [
                f"{o.mutant.module}:{o.mutant.line}: {o.mutant.before} -> {o.mutant.after}"
                for o in outcomes if o.status == "survived"]}


def report(r: dict[str, Any]) -> str:
    rows = [f"{'module':28} {'generated':>9} {'mutants':>7} {'killed':>6} {'timeout':>7} "
            f"{'survived':>8} {'score':>6}"]

    def row(name: str, c: dict[str, Any]) -> str:
        score = "-" if c["score"] is None else f"{100 * c['score']:.1f}%"
        return (f"{name:28} {c.get('generated', ''):>9} {c['mutants']:>7} {c['killed']:>6} "
                f"{c['timeout']:>7} {c['survived']:>8} {score:>6}")

    rows += [row(m, c) for m, c in r["modules"].items()]
    rows += [row("kernel (minikern/kernel/)", r["kernel"]), row("all", r["total"])]
    how = (f"a seeded sample of {r['sample']} mutants per module (seed {r['seed']})"
           if r["sampled"] else "every mutant")
    if r["interrupted"]:
        how += ", INTERRUPTED before all were tried"
    rows.append(f"{how}; a timeout is a hang caught, counted as killed; "
                f"{r['jobs']} workers, {r['seconds'] / 60:.1f} min")
    return "\n".join(rows)
