"""The campaign's report: report.json (everything), report.md (the tables) and PNG figures.

``summarize`` turns the trials' outcomes into the headline figures (the JSON
line bin/experiment ends with); ``write`` puts the report in a folder.  The
figures are drawn with matplotlib's Agg backend (no display):

    outcomes_by_type.png     what became of the injections, per fault type
    outcomes_by_driver.png   the same per driver
    recovery.png             the distribution of recovery times
    throughput.png           each application's throughput over time (trial 0),
                             the injections marked
"""
from __future__ import annotations

import json
import platform
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

Outcome = dict[str, Any]
CLASSES = ("not activated", "no effect", "silent failure", "recovered", "not recovered")
COLOURS = ("#bbbbbb", "#88aa88", "#cc4444", "#4477aa", "#222222")
BIN = 0.5  # seconds per throughput sample


STALL_MS = 300.0  # a pause of the application longer than this is a stall (trial.py)


def logged(log: dict[str, Any], t0: float, t1: float) -> tuple[int, int]:
    """The errors and the corrupted bytes an application logged within [t0, t1]
    (``log``: its ``errors`` and ``corrupted``, lists of (time, what))."""
    return (sum(1 for t, _ in log["errors"] if t0 <= t <= t1),
            sum(n for t, n in log["corrupted"] if t0 <= t <= t1))


def effects(logs: dict[str, dict[str, Any]], driver: str, t0: float,
            t1: float) -> tuple[int, int, dict[str, dict[str, int]]]:
    """What the applications saw within an injection's window [t0, t1]: the errors and
    corrupted bytes of the injected driver's own application, and, for every other
    application that saw any, its own (another driver's application hurt is a component hit
    beyond the faulty driver, not the faulty driver's outcome)."""
    errors, corrupted = logged(logs[driver], t0, t1) if driver in logs else (0, 0)
    others = {}
    for label, log in sorted(logs.items()):
        n, m = logged(log, t0, t1)
        if label != driver and (n or m):
            others[label] = {"errors": n, "bytes_corrupted": m}
    return errors, corrupted, others


def attribute(trial: dict[str, Any]) -> None:
    """Give each injection its own application's errors and corrupted bytes and the other
    applications' (``other_apps``), from the trial's application logs.  Trials saved before
    the two were told apart charged every application's errors to the injected driver: their
    ``app`` is classified again from the own application's (a stall kept if over STALL_MS)."""
    logs = trial.get("loads", {})
    for o in trial["injections"]:
        if "other_apps" in o or "t" not in o or "end" not in o:
            continue
        errors, corrupted, others = effects(logs, o["driver"], o["t"], o["end"])
        o.update(app_errors=errors, bytes_corrupted=corrupted, other_apps=others)
        if o["app"] in ("error", "data corrupted"):
            o["app"] = ("data corrupted" if corrupted else "error" if errors
                        else "stall" if o["stall_ms"] > STALL_MS else "nothing")
        o["silent"] = bool(o["activated"] and not o["detected"] and o["app"] != "nothing")


def shut_down_by_rs(trial: dict[str, Any]) -> bool:
    """Whether a trial's system went down by RS's decision (a core server failed: RS's
    ``fatal`` event) and its kernel then halted cleanly: the system failed, the kernel did
    not crash.  Told from the event log the trial kept as evidence."""
    fatal = clean = False
    for line in trial.get("evidence", {}).get("events", []):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if not isinstance(e, dict):
            continue
        fatal = fatal or (e.get("source") == "rs" and e.get("kind") == "fatal")
        clean = clean or (e.get("source") == "kernel" and e.get("kind") == "halt"
                          and e.get("status") == "clean")
    return fatal and clean


def outcome_class(o: Outcome) -> str:
    if o["detected"]:
        return "recovered" if o["recovered"] else "not recovered"
    if not o["activated"]:
        return "not activated"
    return "silent failure" if o.get("silent") else "no effect"


def summarize(trials: list[dict[str, Any]], report: str) -> dict[str, Any]:
    for t in trials:
        attribute(t)
    outs = [o for t in trials for o in t["injections"]]
    rec = [o["recovery_ms"] for o in outs if o["recovered"] and o["recovery_ms"] is not None]
    disk_bad = sum(len(t.get(d, {}).get("verify", {}).get("bad", [])) for t in trials
                   for d in ("disk", "ram"))
    return {
        "faults": len(outs),
        "activated": sum(o["activated"] for o in outs),
        "detected": sum(o["detected"] for o in outs),
        "recovered": sum(o["recovered"] for o in outs),
        "kernel_crashes": sum(not t.get("kernel_alive", False) and not shut_down_by_rs(t)
                              and not t.get("stopped") for t in trials),
        # another component's events, or another driver's application failing
        "other_components_hit": sum(bool(o["other_components"] or o.get("other_apps"))
                                    for o in outs),
        "app_errors": sum(o["app_errors"] > 0 for o in outs),
        "bytes_corrupted": sum(o["bytes_corrupted"] + sum(a["bytes_corrupted"] for a in
                                                          o.get("other_apps", {}).values())
                               for o in outs) + disk_bad,
        "silent_failures": sum(bool(o.get("silent")) for o in outs),
        "median_recovery_ms": round(statistics.median(rec), 1) if rec else None,
        "report": report,
    }


def _table(outs: list[Outcome], key: str) -> list[str]:
    rows = ["| " + key + " | injected | activated | detected | recovered | median recovery ms"
            " | app: error | stall | corrupted | silent | others hit | other apps hit |",
            "|---|" + "---:|" * 11]
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outs:
        groups[o[key]].append(o)
    for name, g in sorted(groups.items()):
        rec = [o["recovery_ms"] for o in g if o["recovery_ms"] is not None]
        app = Counter(o["app"].split(" (")[0] for o in g)
        rows.append(f"| {name} | {len(g)} | {sum(o['activated'] for o in g)} | "
                    f"{sum(o['detected'] for o in g)} | {sum(o['recovered'] for o in g)} | "
                    f"{round(statistics.median(rec), 1) if rec else '-'} | {app['error']} | "
                    f"{app['stall']} | {app['data corrupted']} | "
                    f"{sum(bool(o.get('silent')) for o in g)} | "
                    f"{sum(bool(o['other_components']) for o in g)} | "
                    f"{sum(bool(o.get('other_apps')) for o in g)} |")
    return rows


def _peer(meta: dict[str, Any]) -> str:
    peer = meta.get("net_peer")
    if not peer:
        return ""
    return (" The network application's echo server: " + {
        "linux-tap": "Linux's TCP, on a TAP in a network namespace (net_peer linux-tap).",
        "udp": "a second system on the UDP wire (net_peer udp)."}.get(peer, f"{peer}."))


def markdown(summary: dict[str, Any], meta: dict[str, Any], trials: list[dict[str, Any]]) -> str:
    outs = [o for t in trials for o in t["injections"]]
    by = Counter(o["detected_by"] for o in outs if o["detected"])
    planned = meta.get("planned_faults", summary["faults"])
    partial = (f" (a partial campaign: {meta['trials']} of its {meta['planned_trials']} "
               f"trials, {summary['faults']} of {planned} planned faults)"
               if summary["faults"] < planned else "")
    lines = [f"# Fault-injection campaign: seed {meta['seed']}, {summary['faults']} faults"
             + partial, "",
             f"Drivers {', '.join(meta['drivers'])}; fault types {', '.join(meta['types'])}; "
             f"{meta['trials']} trial(s); heartbeat period {meta['period_ms']} ms; "
             f"{meta.get('trial_seconds') or meta['seconds']:.0f} s of trials on "
             f"{meta['machine']}." + _peer(meta), "",
             "## The claims", "",
             "| | |", "|---|---:|",
             f"| kernel crashes | {summary['kernel_crashes']} |",
             f"| systems shut down by RS (a core server failed; the kernel halted cleanly) | "
             f"{sum(not t.get('kernel_alive', False) and shut_down_by_rs(t) for t in trials)} |",
             f"| trials stopped by the campaign (an injection past its deadline) | "
             f"{sum(bool(t.get('stopped')) for t in trials)} |",
             f"| faults injected / activated | {summary['faults']} / {summary['activated']} |",
             f"| failures detected / recovered | {summary['detected']} / "
             f"{summary['recovered']} |",
             f"| injections that hit another component (its events, or its application) | "
             f"{summary['other_components_hit']} |",
             f"| ... of which another driver's application failed | "
             f"{sum(bool(o.get('other_apps')) for o in outs)} |",
             f"| injections after which an application saw an error | "
             f"{summary['app_errors']} |",
             f"| bytes corrupted (applications, disk read back) | {summary['bytes_corrupted']} |",
             f"| silent failures (activated, undetected, application hurt) | "
             f"{summary['silent_failures']} |",
             f"| median recovery (detection to new instance up) | "
             f"{summary['median_recovery_ms']} ms |"]
    for t in trials:
        for what in ("disk", "ram"):
            if what not in t:
                continue
            d = t[what]
            read = (f"not read back ({d['error']})" if "error" in d else
                    f"{d.get('verify', {}).get('files', 0)} files read back, "
                    f"{len(d.get('verify', {}).get('bad', []))} bad")
            lines.append(f"| {'RAM disk' if what == 'ram' else 'disk'} (trial seed "
                         f"{t['seed']}): fsck.minix -f | "
                         f"{'clean' if d['fsck_clean'] else 'ERRORS'}; {read} |")
    lines += ["", "## Outcomes by fault type", "", *_table(outs, "type"),
              "", "## Outcomes by driver", "", *_table(outs, "driver"),
              "", "## Outcomes by fault kind", "", *_table(outs, "kind"),
              "", "## Detected by", "", "| detector | failures |", "|---|---:|",
              *[f"| {k} | {n} |" for k, n in sorted(by.items())],
              "", "## Injections that reached beyond their driver", ""]
    beyond = [o for o in outs if o["other_components"] or o["kernel_crash"]]
    lines += [f"- #{o['index']} {o['type']}/{o['kind']} into {o['driver']}: "
              f"{', '.join(o['other_components']) or 'kernel'}" for o in beyond] or ["- none"]
    apps = [o for o in outs if o.get("other_apps")]
    lines += ["", "## Injections during which another driver's application failed", ""]
    lines += [f"- #{o['index']} {o['type']}/{o['kind']} into {o['driver']}: " + ", ".join(
        f"{d} ({a['errors']} errors, {a['bytes_corrupted']} bytes corrupted)"
        for d, a in o["other_apps"].items()) for o in apps] or ["- none"]
    lines += ["", "## Systems that went down", ""]
    lines += [_down(t) for t in trials if not t.get("kernel_alive", False)] or ["- none"]
    silent = [o for o in outs if o.get("silent")]
    lines += ["", "## Silent failures", ""]
    lines += [f"- #{o['index']} {o['type']}/{o['kind']} (nth {o['nth']}) into {o['driver']}: "
              f"{o['app']}, stall {o['stall_ms']} ms" for o in silent] or ["- none"]
    lines += ["", "## Figures", "", "![outcomes by type](outcomes_by_type.png)",
              "![outcomes by driver](outcomes_by_driver.png)", "![recovery](recovery.png)",
              "![throughput](throughput.png)", ""]
    return "\n".join(lines)


def _down(trial: dict[str, Any]) -> str:
    """One trial whose system went down: the injection it happened in, and why, as its own
    logs say (a fatal line of RS, a kernel panic), from the evidence the trial kept."""
    last = trial["injections"][-1] if trial["injections"] else None
    where = (f"during #{last['index']} {last['type']}/{last['kind']} into {last['driver']}"
             if last else "before any injection")
    if trial.get("stopped"):
        return (f"- trial seed {trial['seed']}, {where}: stopped by the campaign, "
                f"{trial['stopped']} (see the trial's evidence)")
    ev = trial.get("evidence", {})
    why = [line.strip() for line in ev.get("console", [])
           if "FATAL" in line or "panic" in line.lower() or "shutdown requested" in line]
    return (f"- trial seed {trial['seed']}, {where}: "
            + ("; ".join(why[:2]) or "no fatal line in its console (see the trial's evidence)"))


def _bars(outs: list[Outcome], key: str, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt
    names = sorted({o[key] for o in outs})
    counts = {c: [sum(1 for o in outs if o[key] == n and outcome_class(o) == c) for n in names]
              for c in CLASSES}
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = [0] * len(names)
    for c, colour in zip(CLASSES, COLOURS, strict=True):
        ax.bar(names, counts[c], bottom=bottom, label=c, color=colour)
        bottom = [b + v for b, v in zip(bottom, counts[c], strict=True)]
    ax.set_ylabel("injections")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _recovery(outs: list[Outcome], path: Path) -> None:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    by_type: dict[str, list[float]] = defaultdict(list)
    for o in outs:
        if o["recovery_ms"] is not None:
            by_type[o["type"]].append(o["recovery_ms"])
    if by_type:
        ax.hist(list(by_type.values()), bins=30, stacked=True, label=list(by_type))
        ax.legend(fontsize=8)
    ax.set_xlabel("recovery time, detection to new instance up (ms)")
    ax.set_ylabel("failures")
    ax.set_title("Recovery time")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _throughput(trial: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt
    loads = trial.get("loads", {})
    fig, axes = plt.subplots(max(1, len(loads)), 1, figsize=(9, 2.2 * max(1, len(loads))),
                             sharex=True, squeeze=False)
    start = trial.get("start", 0.0)
    for ax, (driver, ld) in zip(axes[:, 0], sorted(loads.items()), strict=False):
        bins: Counter[int] = Counter()
        for t, n in ld["ops"]:
            bins[int((t - start) / BIN)] += n
        if bins:
            xs = list(range(max(bins) + 1))
            ax.plot([x * BIN for x in xs], [bins[x] / BIN / 1024 for x in xs], lw=0.8)
        for o in trial["injections"]:
            if o["driver"] == driver and "t" in o:
                ax.axvline(o["t"] - start, color="#cc4444" if o["detected"] else "#aaaaaa",
                           lw=0.5, alpha=0.6)
        ax.set_ylabel(f"{driver}\nKiB/s", fontsize=8)
    axes[-1, 0].set_xlabel("seconds (lines: injections into that driver; red: detected)")
    fig.suptitle("Application throughput while faults land (trial 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(out: Path, plan: list[dict[str, Any]], trials: list[dict[str, Any]],
          meta: dict[str, Any]) -> dict[str, Any]:
    import matplotlib
    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "machine": meta.get("machine") or
            f"{platform.node()} {platform.machine()}, {platform.python_implementation()} "
            f"{platform.python_version()}"}
    summary = summarize(trials, str(out / "report.md"))
    outs = [o for t in trials for o in t["injections"]]
    (out / "report.json").write_text(json.dumps(
        {"summary": summary, "meta": meta, "plan": plan, "trials": trials}, default=str))
    (out / "report.md").write_text(markdown(summary, meta, trials))
    _bars(outs, "type", out / "outcomes_by_type.png", "Outcomes by fault type")
    _bars(outs, "driver", out / "outcomes_by_driver.png", "Outcomes by driver")
    _recovery(outs, out / "recovery.png")
    if trials:
        _throughput(trials[0], out / "throughput.png")
    return summary
