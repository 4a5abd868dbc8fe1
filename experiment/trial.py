"""One trial: boot the rig, run the applications, inject a slice of the plan one fault at
a time, and classify what each did.

For each injection, in order:

1. wait until the driver is up and its application has done an operation;
2. send RsReq.CRASH (a process fault, or a SWIFI fault with its spec);
3. watch RS's events and the activation record (run_dir/swifi/<id>.json):
   a crash event of the driver is the detection, and its ``reason`` says by
   what; a SWIFI fault that has not fired within ACTIVATE_WAIT is "not
   activated" (the wait ends at once when the record appears, or the
   driver's crash event, whichever is first); one that fired and is not detected within the detection window
   (two heartbeat periods, or two resource checks, and some slack) is "not
   detected";
4. after a detection, wait for RS's restart event: recovered, and the time
   from detection to the new instance up;
5. wait until the driver's application completes an operation begun after the
   recovery (or RESUME_WAIT passes): the window closes there;
6. an activated fault that hurt the application and that no one detected (silent), a
   resource fault no one detected (it goes on), or a SWIFI fault that never fired (it
   stays armed) has the driver refreshed, as an operator would, so the next injection
   meets a sound one.

In the window: the errors and corrupted bytes the driver's application saw (and, apart,
those of any other driver's application: ``other_apps``), the
longest pause of the driver's application (a stall if over STALL_MS), crash
or restart events of any other component (of A or of B), and whether both
kernels still run.  An activated fault that no one detected but that hurt
the application is a silent failure.
"""
from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from minikern import cli, ipc, params
from minikern import rsctl as ctl
from minikern.const import RsReq
from minikern.events import Reader

from experiment import report
from experiment.plan import Injection
from experiment.report import STALL_MS  # a pause longer than this is a stall ...
from experiment.rig import (MEMORY_LIMIT_BYTES, RESOURCE_CHECK, Rig, Stopped, bounded,
                            events_path, service_state, tail)
from experiment.devloads import RamLoad
from experiment.workload import DiskLoad, Load

POLL = 0.005
ACTIVATE_WAIT = 1.5  # seconds a SWIFI fault may take to reach its nth event
RECOVERY_WAIT = 10.0  # seconds from detection to the restart event
RESUME_WAIT = 5.0  # seconds for the driver's application to do an operation again (a stuck one
# stays stuck: a reply sent elsewhere; the slowest that came back in the runs took 4.1 s)
UP_WAIT = 15.0
# seconds one injection may take, all its waits together (about a minute at the most); past
# it the campaign stops system A, so a call that would never return ends the trial instead
# of hanging the campaign (rig.bounded)
INJECTION_DEADLINE = 180.0
STALL_PACES = 4  # ... and longer than this many of its usual intervals
SLACK = 0.3  # seconds over a detector's own period (RS's timers fire within a few ms)


class Watcher:
    """The events of systems A and B since the trial began."""

    def __init__(self, rig: Rig) -> None:
        self.readers = {"a": Reader(events_path(rig.run_a), keep=params.EVENT_LOG_KEEP)}
        if rig.b is not None:
            self.readers["b"] = Reader(events_path(rig.run_b), keep=params.EVENT_LOG_KEEP)
        self.events: list[dict[str, Any]] = []
        self.poll()
        self.events.clear()

    def poll(self) -> None:
        for system, r in self.readers.items():
            for e in r.read_new():
                self.events.append({**e, "system": system})

    def find(self, kind: str, label: str, since: float) -> dict[str, Any] | None:
        self.poll()
        return next((e for e in self.events if e.get("kind") == kind and e.get("system") == "a"
                     and e.get("label") == label and e.get("ts", 0) >= since), None)

    def others(self, label: str, since: float, until: float) -> list[str]:
        return sorted({f"{e['system']}:{e.get('label')}:{e['kind']}"
                       + (f"({e['reason']})" if e.get("reason") else "") for e in self.events
                       if e.get("kind") in ("crash", "restart", "halt", "shutdown")
                       and since <= e.get("ts", 0) <= until
                       and not (e["system"] == "a" and e.get("label") == label)})


def _wait(cond: Any, seconds: float) -> Any:
    end = time.monotonic() + seconds
    while True:
        got = cond()
        if got or time.monotonic() > end:
            return got
        time.sleep(POLL)


def _detect_window(inj: Injection, period: float) -> float:
    """Seconds after a fault fired within which its failure is detected, if at all: two
    heartbeat periods (a hang); for a resource fault, two of RS's checks (the CPU share is
    measured between two), or the leak's time to reach the memory limit and one check."""
    if inj.kind == "leak":
        leak = MEMORY_LIMIT_BYTES / (params.SWIFI_LEAK_CHUNK / params.SWIFI_LEAK_STEP)
        return max(2 * RESOURCE_CHECK, leak + RESOURCE_CHECK) + period + SLACK
    if inj.type == "resource":
        return 2 * RESOURCE_CHECK + period + SLACK
    return 2 * period + SLACK


def _stall_ms(load: Load, start: float, end: float) -> float:
    """The longest pause between two of the application's operations across [start, end]."""
    times = [t for t, _ in load.ops if t <= end]
    before = [t for t in times if t < start]
    inside = [t for t in times if t >= start]
    marks = ([before[-1]] if before else [start]) + inside + [end]
    return max((b - a) * 1000 for a, b in itertools.pairwise(marks))


def inject_one(rig: Rig, conn: ipc.Connection, watch: Watcher, loads: dict[str, Load],
               inj: Injection, period: float) -> dict[str, Any]:
    out: dict[str, Any] = {**inj.asdict(), "activated": False, "detected": False,
                           "detected_by": "none", "recovered": False, "recovery_ms": None,
                           "app": "nothing", "stall_ms": 0.0, "app_errors": 0,
                           "bytes_corrupted": 0, "other_components": [], "kernel_crash": False}
    load = loads[inj.driver]
    t_start = time.time()
    _wait(lambda: service_state(conn, inj.driver) == "up", UP_WAIT)
    t_ready = time.time()
    _wait(lambda: load.done_after(t_ready - 1.0), RESUME_WAIT)
    t0 = time.time()
    out["t"] = t0
    phases = out["phases_ms"] = {"ready": _ms(t0 - t_start)}
    fields: dict[str, Any] = {"label": inj.driver}
    if inj.type == "process":
        fields["fault"] = inj.kind
    else:
        fields.update(fault=inj.type, spec=inj.spec())
    try:
        ctl.call(conn, RsReq.CRASH, **fields)
    except ctl.RsError as e:
        out["app"] = f"not injected: {e}"
        return out
    record = rig.run_a / params.SWIFI_DIR / f"{inj.id}.json"
    if inj.type == "process":
        out["activated"] = True
        # a hang is due HEARTBEAT_MISSES periods on, and RS gives a driver starved of a CPU
        # by the campaign's own load up to HEARTBEAT_STARVED_MAX more (services/rs/starvation.py)
        misses = params.HEARTBEAT_MISSES + params.HEARTBEAT_STARVED_MAX
        window = misses * period + SLACK if inj.kind == "hang" else 2.0
        crash = _wait(lambda: watch.find("crash", inj.driver, t0), window)
    else:
        # ends as soon as the record appears, or the driver is seen failing (before its record)
        _wait(lambda: record.exists() or watch.find("crash", inj.driver, t0), ACTIVATE_WAIT)
        fired = record.exists()
        out["activated"] = fired
        phases["activate"] = _ms(time.time() - t0)
        crash = watch.find("crash", inj.driver, t0)
        if fired and crash is None:
            crash = _wait(lambda: watch.find("crash", inj.driver, t0), _detect_window(inj, period))
    t_back = time.time()
    phases["detect"] = _ms(t_back - t0)
    if crash is not None:
        out.update(detected=True, detected_by=crash.get("reason", "?"),
                   detail=str(crash.get("detail", ""))[:200],
                   detect_ms=round((crash["ts"] - t0) * 1000, 1))
        out["activated"] = True  # whatever the record says: it failed
        up = _wait(lambda: watch.find("restart", inj.driver, crash["ts"]), RECOVERY_WAIT)
        if up is not None:
            out.update(recovered=True, recovery_ms=round((up["ts"] - crash["ts"]) * 1000, 1))
            t_back = up["ts"]
    t_up = time.time()
    resumed = _wait(lambda: load.done_after(t_back), RESUME_WAIT)
    t_end = time.time()
    fired_late(inj, out, record.exists())
    phases.update(recover=_ms(t_up - t_back), resume=_ms(t_end - t_up))
    watch.poll()
    out["other_components"] = watch.others(inj.driver, t0, t_end)
    out["kernel_crash"] = not rig.kernel_alive()
    errors, corrupted, others = report.effects(
        {label: {"errors": ld.errors, "corrupted": ld.corrupted} for label, ld in loads.items()},
        inj.driver, t0, t_end)
    stall = _stall_ms(load, t0, t_end)
    stalled = stall > max(STALL_MS, STALL_PACES * 1000 * load.pace(t0))
    out.update(app_errors=errors, bytes_corrupted=corrupted, other_apps=others,
               stall_ms=round(stall, 1), end=t_end)
    if corrupted:
        out["app"] = "data corrupted"
    elif not resumed:
        out["app"] = "stall (did not resume)"
    elif errors:
        out["app"] = "error"
    elif stalled:
        out["app"] = "stall"
    out["silent"] = bool(out["activated"] and not out["detected"] and out["app"] != "nothing")
    if needs_restore(inj, out, resumed):
        _restore(rig, conn, loads, inj.driver)
        out["refreshed"] = True
        phases["restore"] = _ms(time.time() - t_end)
    return out


def fired_late(inj: Injection, out: dict[str, Any], fired: bool) -> None:
    """A SWIFI fault found fired at the window's end, not after ACTIVATE_WAIT (a slow nth
    event on a loaded machine), is activated after all: what the application saw is its
    doing.  (The 10,000-fault plan's trial 65: a sector zeroed 1.9 s on wrote over the
    superblock, and the injection was counted as not activated.)"""
    if inj.type != "process" and not out["activated"] and fired:
        out.update(activated=True, activated_late=True)


def needs_restore(inj: Injection, out: dict[str, Any], resumed: bool) -> bool:
    """Whether the driver is refreshed after the window: a silent failure, an application
    that did not resume, a SWIFI fault that never fired (still armed: it would fire while
    another injection ran), or a resource fault nobody detected, which goes on (a spinning
    thread below RS's CPU limit on a loaded machine, a leak short of the memory limit): RS
    would catch it later, while the next injection ran, and charge that one with it; so too
    a SWIFI fault that fired late, in the window's last part, whose failure may come yet."""
    lasting = inj.type == "resource" and out["activated"] and not out["detected"]
    armed = inj.type != "process" and not out["activated"]
    late = bool(out.get("activated_late")) and not out["detected"]  # its failure may come yet
    return bool(out["silent"]) or not resumed or lasting or armed or late


def _cut_short(rig: Rig, inj: Injection, e: Exception) -> dict[str, Any]:
    """The outcome of an injection the trial could not follow to its end: the system stopped
    answering the campaign (the kernel died, or an operator call failed)."""
    now = time.time()
    return {**inj.asdict(), "activated": True, "detected": False, "detected_by": "none",
            "recovered": False, "recovery_ms": None, "app": f"trial cut short: {e}"[:200],
            "stall_ms": 0.0, "app_errors": 0, "bytes_corrupted": 0, "other_components": [],
            "other_apps": {}, "kernel_crash": not rig.kernel_alive(), "cut_short": True,
            "t": now, "end": now, "silent": False}


EVIDENCE_LINES = 200


def _evidence(rig: Rig) -> dict[str, list[str]]:
    """The last lines of system A's console and event logs, kept in the trial (its folder
    is removed) when its kernel died or the trial was cut short."""
    return {"console": tail(rig.run_a / params.CONSOLE_LOG, EVIDENCE_LINES),
            "events": tail(events_path(rig.run_a), EVIDENCE_LINES)}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _restore(rig: Rig, conn: ipc.Connection, loads: dict[str, Load], driver: str) -> None:
    """After a failure nobody detected, do what the operator would: refresh the driver
    (so the next injection meets a sound one), and give a new connection to an
    application stuck in a call that will never return."""
    try:
        ctl.call(conn, RsReq.REFRESH, label=driver)
    except ctl.RsError:
        pass  # it failed meanwhile: RS restarts it anyway
    t = time.time()
    for label, load in list(loads.items()):
        if not _wait(lambda ld=load: ld.done_after(t), RESUME_WAIT):
            loads[label] = load.renew()
            loads[label].start()


def run_trial(injections: list[Injection], drivers: list[str], seed: int,
              period_ms: int, work: Path | None = None,
              net_peer: str = "auto") -> dict[str, Any]:
    """Run ``injections`` on a rig of their own; everything a report needs, as JSON data
    (``net_peer``: the network application's peer in use, netns.PEERS' linux-tap or udp;
    ``netns``: the namespace and TAP the rig made and deleted, for linux-tap)."""
    tmp = Path(tempfile.mkdtemp(prefix="mk-exp-")) if work is None else work
    rig = Rig(tmp, drivers, period_ms, net_peer)
    loads: dict[str, Load] = {}
    outcomes: list[dict[str, Any]] = []
    result: dict[str, Any] = {"seed": seed, "drivers": drivers, "injections": outcomes}
    try:
        rig.boot()
        result["net_peer"] = rig.net_peer
        if rig.netns is not None:
            result["netns"] = {"name": rig.netns.name, "tap": rig.netns.tap}
        watch = Watcher(rig)
        loads = rig.loads(seed)
        result["start"] = time.time()
        for ld in loads.values():
            ld.start()
        conn = cli.operator_connection(rig.run_a, "experiment")
        system_a = rig.a
        if system_a is None:
            raise RuntimeError("system A did not boot")
        try:
            for inj in injections:
                try:
                    with bounded(system_a, INJECTION_DEADLINE):
                        out = inject_one(rig, conn, watch, loads, inj, period_ms / 1000)
                except Stopped as e:  # the campaign stopped the kernel: not a kernel crash
                    result["stopped"] = f"#{inj.index}: {e}"
                    outcomes.append({**_cut_short(rig, inj, e), "kernel_crash": False})
                    break
                except (ipc.IpcError, OSError) as e:  # KernelGone among them
                    outcomes.append(_cut_short(rig, inj, e))
                    break
                outcomes.append(out)
                if outcomes[-1]["kernel_crash"]:
                    break
        finally:
            conn.close()
        result["kernel_alive"] = rig.kernel_alive()
        if not result["kernel_alive"] or outcomes and outcomes[-1].get("cut_short"):
            result["evidence"] = _evidence(rig)
        for ld in loads.values():
            ld.halt()
        result["loads"] = {d: {"ops": ld.ops, "errors": ld.errors, "corrupted": ld.corrupted}
                           for d, ld in loads.items()}
        ram = next((ld for ld in loads.values() if isinstance(ld, RamLoad)), None)
        if ram is not None and result["kernel_alive"]:
            result["ram"] = rig.check_ram(ram.expected)
        rig.halt()
        disk = next((ld for ld in loads.values() if type(ld) is DiskLoad), None)
        if disk is not None:
            result["disk"] = rig.check_disk(disk.expected)
    finally:
        for ld in loads.values():
            ld.stop.set()
        rig.halt()
        if work is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return result
