"""ifconfig: the network interface as INET sees it, as a user process of the system.

Address, MAC, link state as the driver last reported it, the driver's
endpoint (none while it is being replaced), INET's own counters (frames in
and out, frames resent after a driver restart, driver restarts) and the
driver's counters from its last PULL (receive errors, receiver resets, ...).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from minikern import cli, ipc
from userland.socket import ifstat


def readable(s: dict[str, Any]) -> str:
    link = {True: "up", False: "down", None: "unknown"}[s.get("link")]
    driver = s.get("driver")
    lines = [f"{s['interface']}: inet {s['ip']} netmask {s['netmask']} gateway {s['gateway']}",
             f"    ether {s.get('mac') or '-'}  link {link}  driver "
             + (f"endpoint {driver}" if driver is not None else "gone (being replaced)"),
             "    inet:   " + "  ".join(f"{k} {v}" for k, v in s["inet"].items()),
             f"    queued {s['queued']}  in flight {s['in_flight']}"]
    if s.get("driver_stats"):
        lines.append("    driver: " + "  ".join(f"{k} {v}" for k, v in s["driver_stats"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ifconfig", description=__doc__.splitlines()[0])
    cli.add_run_dir(ap)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    cli.require_system(a.run_dir, "ifconfig")
    conn: ipc.Connection = cli.operator_connection(a.run_dir, "ifconfig", privileges="user")
    try:
        s = ifstat(conn)
    except (ipc.IpcError, OSError) as e:
        print(f"ifconfig: {e}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(json.dumps(s) if a.json else readable(s))
    return 0
