"""ifconfig: the network interface as INET sees it, as a user process of the system.

Address, MAC, link state as the driver last reported it, the driver's
endpoint (none while it is being replaced), INET's own counters (frames in
and out, frames resent after a driver restart, driver restarts), what its
stack dropped, by reason (a full socket queue, a bad checksum, ...) and the
driver's counters from its last PULL (receive errors, receiver resets, ...).
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from minikern import cli
from userland.socket import SocketError, ifstat


def readable(s: dict[str, Any]) -> str:
    link = {True: "up", False: "down", None: "unknown"}[s.get("link")]
    driver = s.get("driver")
    lines = [f"{s['interface']}: inet {s['ip']} netmask {s['netmask']} gateway {s['gateway']}",
             f"    ether {s.get('mac') or '-'}  link {link}  driver "
             + (f"endpoint {driver}" if driver is not None else "gone (being replaced)"),
             "    inet:   " + "  ".join(f"{k} {v}" for k, v in s["inet"].items()),
             f"    queued {s['queued']}  in flight {s['in_flight']}"]
    if s.get("tcp"):
        lines.append("    tcp:    " + "  ".join(f"{k} {v}" for k, v in s["tcp"].items()))
    if s.get("drops"):
        lines.append("    drops:  " + "  ".join(f"{k} {v}" for k, v in s["drops"].items()))
    if s.get("driver_stats"):
        lines.append("    driver: " + "  ".join(f"{k} {v}" for k, v in s["driver_stats"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("ifconfig", __doc__, json="print one JSON object", failures=(SocketError,))
    return cmd.run(argv, ifconfig)


def ifconfig(a: argparse.Namespace) -> int:
    with cli.connected(a.run_dir, "ifconfig", privileges="user") as conn:
        s = ifstat(conn)
    print(json.dumps(s) if a.json else readable(s))
    return cli.EXIT_OK
