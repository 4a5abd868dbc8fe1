"""Client of the board's control socket (run_dir/board.ctl): fault knobs and device statistics.

Runs in the operator's shell or the test suite, never in a driver.  The
protocol is in hw/board_ctl.py.  As a command::

    bin/hwctl [--run-dir DIR] stats
    bin/hwctl [--run-dir DIR] set ata.bad_sectors '[5]'
    bin/hwctl [--run-dir DIR] set nic.drop_rx '{"count": 10}'
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

SOCKET_NAME = "board.ctl"


class CtlError(Exception):
    pass


class BoardCtl:
    def __init__(self, run_dir: str | Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(Path(run_dir) / SOCKET_NAME))
        self.buf = b""

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise CtlError("the board closed the control socket")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise CtlError(reply.get("error", "refused"))
        return reply

    def set(self, knob: str, value: Any) -> Any:
        return self.request({"knob": knob, "value": value})["value"]

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.request({"cmd": "stats"})["stats"]
        return stats

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> BoardCtl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    from minikern import cli
    ap = argparse.ArgumentParser(prog="hwctl", description=__doc__.splitlines()[0])
    cli.add_run_dir(ap)
    sub = ap.add_subparsers(dest="what", required=True)
    stats = sub.add_parser("stats", help="device counters as JSON")
    s = sub.add_parser("set", help="set a fault knob")
    s.add_argument("knob")
    s.add_argument("value", help="a JSON value, e.g. true, 3, '[5, 6]'")
    for p in (stats, s):  # also after the subcommand, as the other commands take it
        p.add_argument("--run-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cli.require_system(args.run_dir, "hwctl")
    try:
        with BoardCtl(args.run_dir) as ctl:
            if args.what == "stats":
                print(json.dumps(ctl.stats(), indent=2))
            else:
                print(json.dumps(ctl.set(args.knob, json.loads(args.value))))
    except (OSError, CtlError, ValueError) as e:
        print(f"hw.ctl: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
