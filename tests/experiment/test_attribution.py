"""Each injection is charged with what its own driver's application saw; what another
driver's application saw in the same window is that other component hit, listed apart and
counted among the components hit beyond the faulty driver (experiment/report.py).  The
trials here are built by hand: what is tested is the bookkeeping."""
from __future__ import annotations

from typing import Any

from experiment import report


def injection(index: int, driver: str, t: float, end: float, **kw: Any) -> dict[str, Any]:
    return {"index": index, "id": f"s1-{index}", "driver": driver, "type": "process",
            "kind": "kill", "nth": 1, "activated": True, "detected": True, "recovered": True,
            "recovery_ms": 20.0, "detected_by": "signal", "app": "nothing", "stall_ms": 0.0,
            "app_errors": 0, "bytes_corrupted": 0, "other_components": [],
            "kernel_crash": False, "silent": False, "t": t, "end": end, **kw}


def trial(injections: list[dict[str, Any]], logs: dict[str, Any]) -> dict[str, Any]:
    return {"seed": 1, "injections": injections, "kernel_alive": True, "start": 0.0,
            "loads": logs}


def markdown(summary: dict[str, Any], t: dict[str, Any]) -> str:
    """report.md of the one trial ``t``."""
    drivers = sorted({o["driver"] for o in t["injections"]} | set(t["loads"]))
    return report.markdown(summary, {"seed": 1, "drivers": drivers, "types": ["process"],
                                     "trials": 1, "planned_trials": 1, "period_ms": 300,
                                     "seconds": 3.0, "machine": "m"}, [t])


def test_another_drivers_application_is_a_component_hit_not_the_faults_outcome() -> None:
    logs = {"hello": {"ops": [], "errors": [[10.5, "EDEADSRCDST"]], "corrupted": []},
            "tty": {"ops": [], "errors": [[10.2, "no echo"], [10.9, "no echo"], [20.5, "x"]],
                    "corrupted": [[10.4, 3]]}}
    # as saved before the split: every application's errors charged to hello's fault
    t = trial([injection(0, "hello", 10.0, 11.0, app="data corrupted", app_errors=3,
                         bytes_corrupted=3),
               injection(1, "hello", 12.0, 13.0)], logs)
    summary = report.summarize([t], "r.md")
    first, second = t["injections"]
    assert (first["app_errors"], first["bytes_corrupted"], first["app"]) == (1, 0, "error")
    assert first["other_apps"] == {"tty": {"errors": 2, "bytes_corrupted": 3}}
    assert second["other_apps"] == {} and second["app"] == "nothing"
    assert summary["other_components_hit"] == 1
    assert summary["app_errors"] == 1
    assert summary["bytes_corrupted"] == 3  # nothing corrupted is lost from the claim
    md = markdown(summary, t)
    assert "#0 process/kill into hello: tty (2 errors, 3 bytes corrupted)" in md


def test_an_undetected_fault_whose_own_application_is_untouched_is_not_silent() -> None:
    logs = {"at_wini": {"ops": [], "errors": [], "corrupted": []},
            "tty": {"ops": [], "errors": [[5.5, "16 typed bytes lost"]], "corrupted": []}}
    t = trial([injection(0, "at_wini", 5.0, 6.0, type="interface", kind="field",
                         detected=False, recovered=False, recovery_ms=None,
                         detected_by="none", app="error", app_errors=1, silent=True)], logs)
    summary = report.summarize([t], "r.md")
    assert t["injections"][0]["app"] == "nothing"
    assert summary["silent_failures"] == 0 and summary["other_components_hit"] == 1


def test_a_stall_of_the_own_application_is_kept() -> None:
    logs = {"hello": {"ops": [], "errors": [], "corrupted": []},
            "tty": {"ops": [], "errors": [[5.5, "no echo"]], "corrupted": []}}
    t = trial([injection(0, "hello", 5.0, 6.0, app="error", stall_ms=800.0)], logs)
    report.summarize([t], "r.md")
    assert t["injections"][0]["app"] == "stall"


def test_attribution_is_made_once() -> None:
    logs = {"hello": {"ops": [], "errors": [[5.5, "x"]], "corrupted": []}}
    t = trial([injection(0, "hello", 5.0, 6.0, app="error", app_errors=1,
                         other_apps={})], logs)
    t["loads"]["hello"]["errors"].append([5.6, "y"])  # the live count stands
    report.summarize([t], "r.md")
    assert t["injections"][0]["app_errors"] == 1


def test_a_system_that_went_down_is_reported_with_its_own_logs_reason() -> None:
    t = trial([injection(0, "hello", 5.0, 6.0)], {})
    t["kernel_alive"] = False
    t["evidence"] = {"console": ["04:45:05 kernel: started hello",
                                 "rs: FATAL: core server ds failed (heartbeat); shutting the "
                                 "system down"], "events": []}
    summary = report.summarize([t], "r.md")
    assert summary["kernel_crashes"] == 1  # nothing says the kernel halted cleanly
    md = markdown(summary, t)
    down = md.split("## Systems that went down")[1].split("##")[0]
    assert "during #0 process/kill into hello" in down and "core server ds failed" in down


def test_a_disk_check_that_could_not_be_made_is_said_and_counts_no_bad_file() -> None:
    t = trial([injection(0, "at_wini", 5.0, 6.0)], {})
    t["disk"] = {"fsck_clean": True, "fsck": "",
                 "error": "RuntimeError: system A did not come up again on its image within 90 s"}
    summary = report.summarize([t], "r.md")
    assert summary["bytes_corrupted"] == 0
    md = markdown(summary, t)
    assert "clean; not read back (RuntimeError: system A did not come up again" in md


def test_a_system_rs_shut_down_is_not_a_kernel_crash_but_is_counted() -> None:
    t = trial([injection(0, "hello", 5.0, 6.0)], {})
    t["kernel_alive"] = False
    t["evidence"] = {"console": [], "events": [
        '{"source": "rs", "kind": "fatal", "label": "rs", "detail": "core server ds failed"}',
        '{"source": "kernel", "kind": "halt", "label": "kernel", "status": "clean"}']}
    summary = report.summarize([t], "r.md")
    assert summary["kernel_crashes"] == 0
    md = markdown(summary, t)
    assert "| systems shut down by RS (a core server failed; the kernel halted cleanly) | 1 |" in md
    t["evidence"]["events"] = t["evidence"]["events"][:1]  # RS said fatal; no clean halt
    assert report.summarize([t], "r.md")["kernel_crashes"] == 1
