"""bin/ds: the Data Store's entries: list them, read one, watch them change.

    list [REGEX]              every entry (whose key matches REGEX, whole key): key, type,
                              owner, versions kept, value (a long one: its size)
    get KEY [--version N]     one entry's value (0 the current one, 1 the one before, ...)
    watch [REGEX]             the entries, then each change as it happens (Ctrl-C ends)

bin/ds talks to DS as the operator (admitted with the run directory's key),
so it sees the entries private to their owner too, marked ``private``; no
component sees another's.  A ``label`` entry is an endpoint RS publishes
for a service; ``mem`` values are shown as hex.  ``watch`` asks DS for the
list every ``--interval`` seconds and prints what changed since (a key's
changes between two looks show as one), as ``new``, ``changed`` or
``deleted`` lines.  With --json: list prints one JSON array, get one object,
watch one object a line (with ``change``).  Exit 1 when DS refuses (get of
a missing key: ESRCH).
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

from minikern import cli

Entry = dict[str, Any]
HEX_SHOWN = 32  # bytes of a mem value shown before "..."


def shown(e: Entry) -> str:
    """An entry's value as one printable word or quoted string."""
    if "value" not in e:
        return f"<{e['size']} bytes: bin/ds get {e['key']}>"
    value = e["value"]
    if isinstance(value, bytes):
        return value[:HEX_SHOWN].hex() + ("..." if len(value) > HEX_SHOWN else "")
    if isinstance(value, str):
        from minikern import events
        return json.dumps(events.printable(value))
    return str(value)


def table(entries: list[Entry]) -> str:
    rows = [("KEY", "TYPE", "OWNER", "VERSIONS", "VALUE")]
    rows += [(e["key"] + (" (private)" if e["private"] else ""), e["type"], e["owner"],
              str(e["versions"]), shown(e)) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)),
                                r[4]]) for r in rows)


def jsonable(e: Entry) -> Entry:
    value = e.get("value")
    return {**e, "value": value.hex()} if isinstance(value, bytes) else e


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("ds", __doc__, json="print JSON (see below)")
    sub = cmd.add_subparsers(dest="what", required=True, metavar="list|get|watch")
    ls = sub.add_parser("list", help="the entries")
    ls.add_argument("regex", nargs="?", help="only keys this regular expression matches")
    get = sub.add_parser("get", help="one entry's value")
    get.add_argument("key")
    get.add_argument("--version", type=int, default=0, help="0 the current value (default)")
    watch = sub.add_parser("watch", help="the entries, then their changes")
    watch.add_argument("regex", nargs="?", help="only keys this regular expression matches")
    watch.add_argument("--interval", type=float, default=0.2, help="seconds between looks")
    for p in (ls, get, watch):  # the shared options also after the subcommand
        p.add_argument("--run-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)
    return cmd.run(argv, ds)


def ds(args: argparse.Namespace) -> int:
    from minikern import ds as client
    from minikern.const import DS, DsReq, Err
    from minikern.proto import Message
    with cli.connected(args.run_dir, "ds-tool") as conn:
        if args.what == "list":
            entries = client.list_entries(conn, args.regex, operator=True)
            print(json.dumps([jsonable(e) for e in entries]) if args.json else table(entries))
        elif args.what == "get":
            m = conn.sendrec(DS, Message(DsReq.RETRIEVE, {"key": args.key, "version": args.version,
                                                       "operator": True}))
            if m.type != Err.OK:
                return cli.fail("ds", f"{args.key}: {m.get('error') or m.type}")
            e = {"key": args.key, **m.fields}
            print(json.dumps(jsonable(e)) if args.json else
                  (e["value"].hex() if isinstance(e["value"], bytes) else e["value"]))
        else:
            follow(conn, args)
    return cli.EXIT_OK


def follow(conn: Any, args: argparse.Namespace) -> None:
    """Print the entries, then what changed at each look, until Ctrl-C (which ends quietly)."""
    from minikern import ds as client
    seen: dict[str, Entry] = {}
    first = True
    try:
        while True:
            now = {e["key"]: e for e in client.list_entries(conn, args.regex, operator=True)}
            changes = [("new" if k not in seen else "changed", e) for k, e in now.items()
                       if k not in seen or seen[k]["serial"] != e["serial"]]
            changes += [("deleted", e) for k, e in seen.items() if k not in now]
            for change, e in changes:
                if args.json:
                    print(json.dumps({"change": "listed" if first else change,
                                      "ts": time.time(), **jsonable(e)}), flush=True)
                else:
                    stamp = time.strftime("%H:%M:%S")
                    print(f"{stamp} {'listed' if first else change:<8} {e['key']} = {shown(e)} "
                          f"({e['owner']}{', private' if e['private'] else ''})", flush=True)
            seen, first = now, False
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how watch ends: done, not failed
