"""Trials on a Dask distributed cluster (a LocalCluster here): the plan cut in two, each half
a trial on its own systems, merged into one report.  Dask is an optional dependency."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiment import main

pytestmark = pytest.mark.timeout(300)


def test_trials_run_on_a_local_dask_cluster(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("dask.distributed",
                        reason="dask[distributed] is optional (pip install -e '.[experiment]')")
    out = tmp_path / "report"
    status = main.main(["--seed", "5", "--faults", "4", "--drivers", "hello", "--types",
                        "process", "--workers", "2", "--dask", "local", "--period", "200",
                        "--out", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads((out / "report.json").read_text())
    assert status == 0
    assert report["meta"]["trials"] == len(report["trials"]) == 2
    ran = [o["index"] for t in report["trials"] for o in t["injections"]]
    assert ran == [0, 1, 2, 3] == [i["index"] for i in report["plan"]]
    assert summary["faults"] == 4 and summary["kernel_crashes"] == 0
    assert summary["detected"] == summary["recovered"] == 4  # process faults all fail
