"""bin/service: start, stop, restart or refresh a service through RS (MINIX's `service`).

    up LABEL       start a service of system.conf that is down or failed (clears its
                   failure history; after a down, a fresh start: incarnation 0)
    up PROGRAM [--label L] [--args 'A B'] [--period T] [--backoff T|off] [--stable T]
               [--restarts 'N T'|off] [--script S] [--depends L,...] [--ipc '...']
               [--system '...'] [--io B:N] [--irq N] [--publish KEY] ...
                   start any program with its own privileges and policy (MINIX's
                   `service up /path -args ... -period ... -script ... -label ...`)
    down LABEL     stop it; RS does not restart it (an operator's choice, not a failure),
                   and drops what it left in the Data Store
    restart LABEL  start a terminated service now (what a recovery script calls); EBUSY
                   while it runs
    refresh LABEL  kill it and replace it with a fresh copy of its code

A PROGRAM is a module of the repository (drivers.hello), a Python file
(./mydrv.py, /opt/drv/mydrv.py), or a name found as NAME.py in a folder of
$MINIKERN_PATH (colon-separated); a recovery script is a name in
recovery_scripts/ or in a folder of $MINIKERN_PATH, or a path.  Both are
looked up here, where you type them, and checked again by RS: one that is not
there is an error now (exit 1), not at the first crash.  The label defaults
to the program's name; the options are system.conf's keys, with the same
values (see etc/system.conf), and what is not given takes system.conf's
defaults (ipc ALL_SYS, no kernel calls, period 5s, ...).  ``up NAME`` with
no option is a label when system.conf has one by that name or no program
has that name (a label defined by an earlier ``up PROGRAM``, which RS keeps).

Each returns once RS has done it (the new instance is up, or the old one has
exited).  With --json: RS's answer as one JSON object (endpoint and pid of
the new instance, when there is one).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path
from typing import Any

from minikern import cli, programs

ACTIONS = ("down", "refresh", "restart", "up")
# option -> system.conf key, for the words of a value given as one string
WORDS = {"args": "args", "ipc": "ipc", "system": "system", "io": "io", "irq": "irq",
         "restarts": "restarts", "mem": "mem"}
SINGLE = {"period": "period", "backoff": "backoff", "stable": "stable",
          "memory_limit": "memory_limit", "cpu_limit": "cpu_limit", "publish": "publish"}


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("service", __doc__, json="print RS's answer as one JSON object")
    cmd.add_argument("action", choices=ACTIONS, help="one of those below")
    cmd.add_argument("label", metavar="LABEL|PROGRAM",
                     help="the service, as system.conf names it (up: or a program)")
    define = cmd.add_argument_group("up PROGRAM: the service's system.conf keys")
    define.add_argument("--label", dest="new_label", metavar="L",
                        help="its label (default: the program's name)")
    for option in (*WORDS, *SINGLE):
        define.add_argument(f"--{option.replace('_', '-')}", dest=option, metavar="VALUE",
                            help=argparse.SUPPRESS if option == "mem" else None)
    define.add_argument("--script", help="its recovery script")
    define.add_argument("--depends", help="labels it depends on, comma-separated")
    args = cmd.parse_args(argv)
    if os.environ.get("MINIKERN_RS_CHANNEL") == "0" and (args.action != "up" or not definition(args)):
        return on_channel(args.action, args.label)  # run by RS as a recovery script
    return cmd.call(args, service)


def definition(args: argparse.Namespace) -> bool:
    """True if ``up`` names a program to define, not a label of system.conf."""
    given = any(getattr(args, o) is not None for o in (*WORDS, *SINGLE, "script", "depends",
                                                        "new_label"))
    name = args.label
    if given or programs.is_path(name) or "." in name:
        return True
    from minikern import sysconf
    conf = Path(args.run_dir) / "system.conf"
    try:
        if name in sysconf.load(conf).services:
            return False
    except (OSError, sysconf.ConfError):
        pass
    try:  # a name on the search path is a program; else a label RS may know (one defined
        programs.program(name)  # by an earlier `up PROGRAM`), or answer ESRCH for
    except programs.NotFound:
        return False
    return True


def entry(args: argparse.Namespace) -> tuple[str, dict[str, list[str]]]:
    """(label, the system.conf keys) for ``up PROGRAM``; NotFound if a file is not there."""
    program = programs.program(args.label)
    keys: dict[str, list[str]] = {"program": [program]}
    for option, key in WORDS.items():
        if getattr(args, option) is not None:
            keys[key] = shlex.split(getattr(args, option))
    for option, key in SINGLE.items():
        if getattr(args, option) is not None:
            keys[key] = [getattr(args, option)]
    if args.script is not None:
        keys["script"] = [programs.script(args.script)]
    if args.depends is not None:
        keys["depends"] = [d for d in args.depends.split(",") if d]
    label = args.new_label or (Path(program).stem if program.startswith("/")
                               else program.rsplit(".", 1)[-1])
    return label, keys


def on_channel(action: str, label: str) -> int:
    """A recovery script's bin/service: the request on its channel to RS (standard input,
    docs/PROTOCOL.md section 16), not through an operator connection, which a script in
    RS's protection domain (booted as root, minikern/domain.py) is not allowed."""
    from minikern.proto import scriptchan
    os.write(0, scriptchan.encode_request(action, label))
    line = b""
    while not line.endswith(b"\n") and len(line) <= 4 * scriptchan.MAX_LINE:
        byte = os.read(0, 1)
        if not byte:
            return cli.fail("service", "RS closed the channel unanswered")
        line += byte
    ok, detail = scriptchan.decode_answer(line)
    if not ok:
        return cli.fail("service", f"{action} {label}: {detail}")
    print(f"service {action} {label}: done {detail}".rstrip())
    return cli.EXIT_OK


def service(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {"label": args.label}
    if args.action == "up" and definition(args):
        try:
            label, keys = entry(args)
        except (programs.NotFound, ValueError) as e:
            return cli.fail("service", str(e))
        fields = {"label": label, "service": keys}
    elif args.new_label is not None or any(getattr(args, o) is not None
                                           for o in (*WORDS, *SINGLE, "script", "depends")):
        return cli.fail("service", f"{args.action} takes a label alone; options are for "
                        "up PROGRAM")
    from minikern import rsctl  # here: `service --help` loads no ZeroMQ
    from minikern.const import RsReq
    r = rsctl.request(args.run_dir, RsReq[args.action.upper()], **fields)
    if args.json:
        print(json.dumps(r))
        return cli.EXIT_OK
    detail = f" (endpoint {r['endpoint']}, pid {r['pid']})" if "endpoint" in r else ""
    print(f"service {args.action} {fields['label']}: done{detail}")
    return cli.EXIT_OK
