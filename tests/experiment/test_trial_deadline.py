"""An injection that never ends stops its trial, not the campaign.

Every wait of an injection has its own bound, but a call to system A does not: a trial
of the 10,000-fault run (trial 59) never ended, and the campaign waited for it.  Past
``trial.INJECTION_DEADLINE`` the campaign stops system A's kernel, so the call fails; the
trial records the injection as cut short and the trial as ``stopped``, keeps its evidence
and goes on to its checks.  The kernel it stopped is not counted as a kernel crash."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from experiment import report, trial
from experiment import rig as exprig
from experiment.plan import make_plan
from minikern import ipc

pytestmark = pytest.mark.timeout(180)


def test_an_injection_past_its_deadline_stops_the_trial_not_the_campaign(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def never_returns(_rig: exprig.Rig, conn: ipc.Connection, *_: Any) -> dict[str, Any]:
        conn._wait_reply()  # the answer to a call that never comes: ends only with the kernel
        return {}

    monkeypatch.setattr(trial, "INJECTION_DEADLINE", 3.0)
    monkeypatch.setattr(trial, "inject_one", never_returns)
    plan = make_plan(1, 2, ["hello"], ["process"])
    t = trial.run_trial(plan, ["hello"], 1, 300, tmp_path / "t")
    assert t["stopped"].startswith(f"#{plan[0].index}: not done within 3 s"), t.get("stopped")
    (cut,) = t["injections"]  # the second injection never ran
    assert cut["cut_short"] is True and cut["kernel_crash"] is False
    assert t["kernel_alive"] is False and t["evidence"]["console"]  # what a crash keeps
    summary = report.summarize([t], "report.md")
    assert summary["kernel_crashes"] == 0 and summary["faults"] == 1
    meta = {"seed": 1, "drivers": ["hello"], "types": ["process"], "trials": 1,
            "period_ms": 300, "seconds": 1.0, "machine": "test"}
    md = report.markdown(summary, meta, [t])
    assert "| kernel crashes | 0 |" in md
    assert "| trials stopped by the campaign (an injection past its deadline) | 1 |" in md
    assert "stopped by the campaign, #" in md
