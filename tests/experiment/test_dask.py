"""Trials on a Dask distributed cluster (a LocalCluster here): the plan cut in two, each half
a trial on its own systems, merged into one report.  Dask is an optional dependency.  Run as
a command: the cluster's processes (and multiprocessing's resource tracker) end with it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from minikern import cli

pytestmark = pytest.mark.timeout(300)


def test_trials_run_on_a_local_dask_cluster(tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed",
                        reason="dask[distributed] is optional (pip install -e '.[experiment]')")
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "experiment"),
                        "--seed", "5", "--faults", "4", "--drivers", "hello", "--types",
                        "process", "--workers", "2", "--dask", "local", "--period", "300",
                        "--out", str(out), "--json"], capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["trials"] == len(report["trials"]) == 2
    assert len({t["seed"] for t in report["trials"]}) == 2  # each trial its own workload seed
    ran = [o["index"] for t in report["trials"] for o in t["injections"]]
    assert ran == [0, 1, 2, 3] == [i["index"] for i in report["plan"]]
    assert summary["faults"] == 4 and summary["kernel_crashes"] == 0
    assert summary["detected"] == summary["recovered"] == 4  # process faults all fail
