"""A long campaign survives its own interruption (experiment/main.py): each trial is saved as
it ends, --resume runs only the trials not saved, --report-only reports what was saved and
says the campaign is partial.  The trials here are stand-ins (no systems booted): what is
tested is the bookkeeping around them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiment import main as exp

ran: list[int] = []


class Interrupted(Exception):
    pass


def fake_trial(job: exp.Job, fail_on: int | None = None) -> dict[str, Any]:
    injections, _, seed, *_ = job
    n = seed % 1000
    if n == fail_on:
        raise Interrupted(f"trial {n}")
    ran.append(n)
    outs = [{**i, "activated": True, "detected": i["index"] % 2 == 0,
             "recovered": i["index"] % 2 == 0, "recovery_ms": 10.0 + i["index"],
             "detected_by": "signal", "app": "nothing", "stall_ms": 0.0, "app_errors": 0,
             "bytes_corrupted": 0, "other_components": [], "kernel_crash": False,
             "silent": False, "t": 1.0 + i["index"], "end": 2.0 + i["index"]}
            for i in injections]
    return {"seed": seed, "injections": outs, "kernel_alive": True, "start": 1.0, "loads": {}}


def campaign(out: Path, *flags: str) -> dict[str, Any]:
    args = exp.parser().parse_args(["--faults", "9", "--chunks", "3", "--drivers", "hello",
                                    "--out", str(out), *flags])
    return exp.campaign(args)


def test_an_interrupted_campaign_resumes_where_it_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "exp"
    ran.clear()
    monkeypatch.setattr(exp, "_trial", lambda job: fake_trial(job, fail_on=1))
    with pytest.raises(Interrupted):
        campaign(out)
    assert ran == [0] and exp.trial_path(out, 0).exists()
    assert not exp.trial_path(out, 1).exists()

    monkeypatch.setattr(exp, "_trial", fake_trial)
    summary = campaign(out, "--resume")
    assert ran == [0, 1, 2]  # trial 0 was not run again
    assert summary["faults"] == 9 and summary["detected"] == 5
    report = json.loads((out / "report.json").read_text())
    indexes = [o["index"] for t in report["trials"] for o in t["injections"]]
    assert indexes == list(range(9))  # the plan's order, whatever order trials ended in
    assert "partial" not in (out / "report.md").read_text()


def test_a_saved_trial_of_another_plan_is_run_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "exp"
    ran.clear()
    monkeypatch.setattr(exp, "_trial", fake_trial)
    campaign(out)
    ran.clear()
    args = ["--faults", "9", "--chunks", "3", "--drivers", "hello", "--seed", "2",
            "--out", str(out), "--resume"]
    exp.campaign(exp.parser().parse_args(args))
    assert ran == [0, 1, 2]  # seed 2's plan differs: nothing saved was reused


def test_report_only_reports_a_partial_campaign(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "exp"
    ran.clear()
    monkeypatch.setattr(exp, "_trial", fake_trial)
    campaign(out)
    exp.trial_path(out, 2).unlink()
    ran.clear()
    summary = campaign(out, "--report-only")
    assert ran == [] and summary["faults"] == 6
    assert "6 of 9 planned faults" in (out / "report.md").read_text()
