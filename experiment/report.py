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


def outcome_class(o: Outcome) -> str:
    if o["detected"]:
        return "recovered" if o["recovered"] else "not recovered"
    if not o["activated"]:
        return "not activated"
    return "silent failure" if o.get("silent") else "no effect"


def summarize(trials: list[dict[str, Any]], report: str) -> dict[str, Any]:
    outs = [o for t in trials for o in t["injections"]]
    rec = [o["recovery_ms"] for o in outs if o["recovered"] and o["recovery_ms"] is not None]
    disk_bad = sum(len(t.get(d, {}).get("verify", {}).get("bad", [])) for t in trials
                   for d in ("disk", "ram"))
    return {
        "faults": len(outs),
        "activated": sum(o["activated"] for o in outs),
        "detected": sum(o["detected"] for o in outs),
        "recovered": sum(o["recovered"] for o in outs),
        "kernel_crashes": sum(not t.get("kernel_alive", False) for t in trials),
        "other_components_hit": sum(bool(o["other_components"]) for o in outs),
        "app_errors": sum(o["app_errors"] > 0 for o in outs),
        "bytes_corrupted": sum(o["bytes_corrupted"] for o in outs) + disk_bad,
        "silent_failures": sum(bool(o.get("silent")) for o in outs),
        "median_recovery_ms": round(statistics.median(rec), 1) if rec else None,
        "report": report,
    }


def _table(outs: list[Outcome], key: str) -> list[str]:
    rows = ["| " + key + " | injected | activated | detected | recovered | median recovery ms"
            " | app: error | stall | corrupted | silent | others hit |",
            "|---|" + "---:|" * 10]
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
                    f"{sum(bool(o['other_components']) for o in g)} |")
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
             f"| faults injected / activated | {summary['faults']} / {summary['activated']} |",
             f"| failures detected / recovered | {summary['detected']} / "
             f"{summary['recovered']} |",
             f"| injections that hit another component | {summary['other_components_hit']} |",
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
            lines.append(f"| {'RAM disk' if what == 'ram' else 'disk'} (trial seed "
                         f"{t['seed']}): fsck.minix -f | "
                         f"{'clean' if d['fsck_clean'] else 'ERRORS'}; "
                         f"{d.get('verify', {}).get('files', 0)} files read back, "
                         f"{len(d.get('verify', {}).get('bad', []))} bad |")
    lines += ["", "## Outcomes by fault type", "", *_table(outs, "type"),
              "", "## Outcomes by driver", "", *_table(outs, "driver"),
              "", "## Outcomes by fault kind", "", *_table(outs, "kind"),
              "", "## Detected by", "", "| detector | failures |", "|---|---:|",
              *[f"| {k} | {n} |" for k, n in sorted(by.items())],
              "", "## Injections that reached beyond their driver", ""]
    beyond = [o for o in outs if o["other_components"] or o["kernel_crash"]]
    lines += [f"- #{o['index']} {o['type']}/{o['kind']} into {o['driver']}: "
              f"{', '.join(o['other_components']) or 'kernel'}" for o in beyond] or ["- none"]
    silent = [o for o in outs if o.get("silent")]
    lines += ["", "## Silent failures", ""]
    lines += [f"- #{o['index']} {o['type']}/{o['kind']} (nth {o['nth']}) into {o['driver']}: "
              f"{o['app']}, stall {o['stall_ms']} ms" for o in silent] or ["- none"]
    lines += ["", "## Figures", "", "![outcomes by type](outcomes_by_type.png)",
              "![outcomes by driver](outcomes_by_driver.png)", "![recovery](recovery.png)",
              "![throughput](throughput.png)", ""]
    return "\n".join(lines)


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
