"""bin/hwctl: the board's fault knobs and device statistics.

    stats              every device's counters, as JSON
    knobs              the fault knobs, the value each takes and what it does
    set KNOB VALUE     set a knob; VALUE is JSON: true, 3, '[5, 6]', '{"count": 10}'

It talks to the board through its control socket (run_dir/board.ctl,
minikern/boardctl.py), not through the kernel; ``knobs`` needs no system.
For example::

    bin/hwctl set ata.bad_sectors '[5]'
    bin/hwctl set nic.drop_rx '{"count": 10}'
    bin/hwctl set nic.irq_disabled true
"""
from __future__ import annotations

import argparse
import json

from minikern import cli
from minikern.proto.control import KNOBS


class BoardUnreachable(Exception):
    """The board's control socket is not there or refuses: the board is gone or stopping."""


def main(argv: list[str] | None = None) -> int:
    from minikern.boardctl import CtlError
    cmd = cli.Command("hwctl", __doc__, failures=(CtlError, BoardUnreachable))
    sub = cmd.add_subparsers(dest="what", required=True, metavar="stats|knobs|set")
    stats = sub.add_parser("stats", help="device counters as JSON")
    knobs = sub.add_parser("knobs", help="the fault knobs and their meaning")
    knobs.add_argument("--json", action="store_true", help="print them as one JSON object")
    s = sub.add_parser("set", help="set a fault knob")
    s.add_argument("knob", help="one of those `hwctl knobs` lists")
    s.add_argument("value", type=json_value, help="a JSON value, e.g. true, 3, '[5, 6]'")
    for p in (stats, knobs, s):  # also after the subcommand, as the other commands take it
        p.add_argument("--run-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = cmd.parse_args(argv)
    if args.what == "knobs":
        return show_knobs(args.json)
    return cmd.call(args, hwctl)


def json_value(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a JSON value: {text!r} (a string is "
                                         "'\"text\"')") from None


def show_knobs(as_json: bool) -> int:
    if as_json:
        print(json.dumps({k: {"value": v, "meaning": m} for k, (v, m) in KNOBS.items()}))
        return cli.EXIT_OK
    width = max(map(len, KNOBS))
    for knob, (value, meaning) in KNOBS.items():
        print(f"{knob:<{width}}  {value}\n{'':<{width}}  {meaning}")
    return cli.EXIT_OK


def hwctl(args: argparse.Namespace) -> int:
    from minikern.boardctl import BoardCtl
    if args.what == "set" and args.knob not in KNOBS:
        return cli.fail("hwctl", f"no knob {args.knob!r}; `hwctl knobs` lists them")
    try:
        ctl = BoardCtl(args.run_dir)
    except OSError as e:
        raise BoardUnreachable(f"cannot reach the board's control socket ({e.strerror}): "
                               "the board is gone or the system is stopping") from None
    with ctl:
        try:
            answer = ctl.stats() if args.what == "stats" else ctl.set(args.knob, args.value)
        except OSError as e:
            raise BoardUnreachable(f"the board's control socket failed ({e.strerror or e}): "
                                   "the board is gone or the system is stopping") from None
    print(json.dumps(answer, indent=2) if args.what == "stats" else json.dumps(answer))
    return cli.EXIT_OK
