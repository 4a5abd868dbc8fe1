"""lpq: the printer's queue: the printer's state (and why it does not print), every job with
the bytes printed, and the last jobs done."""
from __future__ import annotations

import argparse
import json
from typing import Any

from minikern import cli
from userland import spool


def readable(s: dict[str, Any]) -> str:
    p = s["printer"]
    lines = [f"printer: {p['state']}" + (f" ({p['why']})" if p.get("why") and
                                          p["why"] != p["state"] else "")]
    if not s["jobs"]:
        lines.append("no entries")
    else:
        lines.append(f"{'job':>4}  {'state':<10} {'printed':>10} {'size':>10}  name  why")
        for j in s["jobs"]:
            lines.append(f"{j['job']:>4}  {j['state']:<10} {j['printed']:>10} {j['size']:>10}  "
                         f"{j['name']}  {j['why']}".rstrip())
    for j in s["done"]:
        lines.append(f"  done {j['job']}: {j['name']} {j['printed']}/{j['size']} {j['state']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("lpq", __doc__, json="print one JSON object")
    return cmd.run(argv, lpq)


def lpq(a: argparse.Namespace) -> int:
    with cli.connected(a.run_dir, "lpq", privileges="user") as conn:
        s = spool.status(conn)
    print(json.dumps(s) if a.json else readable(s))
    return cli.EXIT_OK
