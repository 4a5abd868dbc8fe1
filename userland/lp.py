"""lp: print FILE (a file of the host) on the system's printer, through the spooler lpd.

Prints the job number and returns once lpd has queued the whole file; bin/lpq
shows its progress.  The paper is run_dir/lpt1.out.
"""
from __future__ import annotations

import argparse
import json
import os

from minikern import cli
from userland import spool


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("lp", __doc__, json="print {job, name, size}", failures=(OSError,))
    cmd.add_argument("file", help="the file to print")
    return cmd.run(argv, lp)


def lp(a: argparse.Namespace) -> int:
    with open(a.file, "rb") as f:
        data = f.read()
    name = os.path.basename(a.file) or "stdin"
    with cli.connected(a.run_dir, "lp", privileges="user") as conn:
        job = spool.submit(conn, name[:60], data)
    print(json.dumps({"job": job, "name": name, "size": len(data)}) if a.json
          else f"request id is {job} ({len(data)} bytes)")
    return cli.EXIT_OK
