"""A long campaign survives its own interruption (experiment/main.py): each trial is saved as
it ends, --resume runs only the trials not saved, --report-only reports what was saved and
says the campaign is partial.  The trials here are stand-ins (no systems booted): what is
tested is the bookkeeping around them."""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from experiment import main as exp
from minikern import cli, ipc
from minikern.deadline import wait_for

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


WORKERS_FAIL = """
from experiment import main as exp
bad = ([{"no such field": 1}], ["hello"], 1000, 300, None, "udp")
exp.run_local({0: bad, 1: bad}, 2, lambda n, t: print("saved", n))
"""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job


@contextlib.contextmanager
def campaign_process(args: list[str],
                     ignore_sigint: bool = False) -> Iterator[subprocess.Popen[str]]:
    """A campaign in a session of its own (with its pool's workers and resource tracker);
    every process of it is gone when the block ends, the test failed or not."""
    p = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=cli.REPO_ROOT,
                         env={**os.environ, "PYTHONPATH": str(cli.REPO_ROOT)},
                         start_new_session=True,
                         preexec_fn=_ignore_sigint if ignore_sigint else None)
    try:
        yield p
    finally:
        if _group_alive(p.pid):
            os.killpg(p.pid, signal.SIGKILL)
        p.communicate()


@pytest.mark.timeout(120)
def test_a_trial_that_fails_in_a_worker_does_not_end_the_campaign() -> None:
    # two jobs whose injections are not Injections: each worker raises at once
    with campaign_process(["-c", WORKERS_FAIL]) as p:
        out, err = p.communicate(timeout=100)
        wait_for(lambda: not _group_alive(p.pid), 20, "the workers to end")
    assert p.returncode == 0, err[-2000:]
    assert "saved" not in out
    assert "trial 0 failed, not saved" in err and "trial 1 failed, not saved" in err


def test_kernel_gone_survives_the_trip_back_from_a_worker() -> None:
    e = pickle.loads(pickle.dumps(ipc.KernelGone()))
    assert isinstance(e, ipc.KernelGone) and e.code == ipc.KernelGone().code


@pytest.mark.timeout(120)
def test_ctrl_c_of_the_campaign_stops_every_worker_and_starts_no_new_trial(tmp_path: Path) -> None:
    # started as a shell starts a background job (SIGINT ignored), and only the campaign's own
    # pid signalled (`kill -INT`): it stops anyway, and tells its workers, who end too
    stand_in = str(Path(__file__).with_name("interrupt_stand_in.py"))
    with campaign_process([stand_in, str(tmp_path / "out")], ignore_sigint=True) as p:
        assert p.stdout is not None
        assert [p.stdout.readline() for _ in range(2)] == ["started\n"] * 2  # the timeout bounds it
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=40)  # six trials of a minute, two at a time: 3 min
        wait_for(lambda: not _group_alive(p.pid), 20, "the workers to end")
    assert p.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
    assert "started" not in out  # no trial after the two
    assert not (tmp_path / "out" / "trials").exists()  # none finished


def test_trials_named_run_alone_with_their_campaign_seeds_and_join_the_saved_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--trials reruns the trials a campaign could not finish: those alone, each with the
    seed and injections it has in the whole campaign (so it is that trial again), run even
    if saved, and the report covers them with the trials already saved."""
    out = tmp_path / "exp"
    ran.clear()
    monkeypatch.setattr(exp, "_trial", lambda job: fake_trial(job, fail_on=1))
    with pytest.raises(Interrupted):
        campaign(out)
    assert ran == [0]
    seeds: list[int] = []
    injections: dict[int, list[int]] = {}

    def recorded(job: exp.Job) -> dict[str, Any]:
        seeds.append(job[2])
        injections[job[2] % 1000] = [i["index"] for i in job[0]]
        return fake_trial(job)
    monkeypatch.setattr(exp, "_trial", recorded)
    summary = campaign(out, "--trials", "2,0")
    assert sorted(ran) == [0, 0, 2]  # 1 not run; 0 run again though saved
    assert sorted(seeds) == [1000, 1002] and injections == {0: [0, 1, 2], 2: [6, 7, 8]}
    assert summary["faults"] == 6 and "partial" in (out / "report.md").read_text()
    with pytest.raises(SystemExit, match="no trial 3"):
        campaign(out, "--trials", "3")
    with pytest.raises(SystemExit):
        exp.parser().parse_args(["--trials", "-1"])
