"""bin/bench disk: a 20 MB file through bin/mount, without and with the disk driver SIGKILLed.

One system on a fresh MINIX v3 image (mkfs.minix -3), its file tree on the
host through bin/mount (client "fuse").  --rounds times (default 3), a round
with nothing injected and then one with at_wini SIGKILLed every second (in
both directions), side by side so the machine's load falls on both alike:
``cp`` a file of --bytes random bytes in and ``sync`` it (its fsync: the data on the disk);
drop the mount and restart MFS (``bin/service refresh mfs``: VFS mounts the
new instance) so nothing is in the host's page cache or MFS's buffer cache,
mount again; read it back with ``sha256sum``: every block from the disk.
Rates are bytes over each command's time, and each figure is the median of
the rounds' (one 2 s transfer on a shared machine varies by a third from one
run to the next; the median of three pairs does not).  Then bin/halt (which unmounts
first) and ``fsck.minix -f`` on the image (never -a or -r: on a v3 image
they corrupt it).

Last line with --json: client, bytes, sha256_ok (both read-backs identical to
the file written), kills (SIGKILLs that replaced at_wini during the writes and
reads, all rounds), nokill_write_MBps, kill_write_MBps, nokill_read_MBps, kill_read_MBps,
ratio (the lower of write and read, kill over no kill), fsck_clean.
Targets: sha256_ok and fsck_clean true, ratio at least 0.8, each no-kill rate at
least 5 MB/s.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.storage import mountlab

TARGET_RATIO = 0.8
TARGET_MBPS = 5.0
STEP_TIMEOUT = 600.0  # seconds one cp or sha256sum may take, recoveries included


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bytes", type=int, default=20_000_000,
                   help="bytes of the file copied (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3,
                   help="pairs of rounds (no kills, kills) whose medians are reported "
                        "(default %(default)s)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between SIGKILLs of at_wini (default %(default)s)")


def _timed(argv: list[str]) -> tuple[float, str, str]:
    """Run ``argv``; (seconds, stdout, the error if it failed)."""
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    secs = time.monotonic() - t0
    return secs, r.stdout, "" if r.returncode == 0 else f"{argv[0]}: {r.stderr.strip()}"


def _round(node: mountlab.StorageNode, src: Path, mnt: Path, name: str, kills: bool,
           interval: float) -> dict[str, Any]:
    """Write ``src`` in as ``name``, remount, read it back; with at_wini killed if ``kills``."""
    node.mount(mnt)
    with mountlab.at_wini_killer(node, kills, interval) as inj_w:
        write_s, _, werr = _timed(["sh", "-c", 'cp "$1" "$2" && sync "$2"', "cp",
                                   str(src), str(mnt / name)])
    node.unmount(mnt)  # the host's page cache goes with the mount
    node.refresh_mfs()  # and MFS's buffer cache with MFS: the read comes from the disk
    node.mount(mnt)
    with mountlab.at_wini_killer(node, kills, interval) as inj_r:
        read_s, out, rerr = _timed(["sha256sum", str(mnt / name)])
    node.unmount(mnt)
    return {"write_s": write_s, "read_s": read_s, "sha256": out.split()[0] if out else None,
            "kills": sum(i.count for i in (inj_w, inj_r) if i is not None),
            "errors": [e for e in (werr, rerr) if e]
            + [e for i in (inj_w, inj_r) if i is not None for e in i.errors]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    missing = mountlab.unavailable()
    if missing is not None:
        raise SystemExit(f"bench disk: {missing}")
    work = Path(tempfile.mkdtemp(prefix="mk-bench-disk-"))
    try:
        src = work / "source.bin"
        with open(src, "wb") as f:
            left = args.bytes
            while left:
                piece = min(left, 1 << 20)
                f.write(os.urandom(piece))
                left -= piece
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        if args.rounds < 1:
            raise SystemExit("bench disk: --rounds must be at least 1")
        files = 2 * args.rounds
        node = mountlab.StorageNode(work / "rig",
                                    megabytes=max(64, (files + 1) * args.bytes // 2**20 + 16))
        quiet: list[dict[str, Any]] = []
        killed: list[dict[str, Any]] = []
        try:
            node.boot()
            for i in range(args.rounds):
                quiet.append(_round(node, src, work / "mnt", f"quiet{i}.bin", False,
                                    args.interval))
                killed.append(_round(node, src, work / "mnt", f"killed{i}.bin", True,
                                     args.interval))
        finally:
            node.close()
        clean, said = node.fsck()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def rate(rounds: list[dict[str, Any]], key: str) -> float:
        """The median rate of the rounds; 0 if any of them went wrong."""
        if any(rd["errors"] for rd in rounds):
            return 0.0
        return round(float(statistics.median(args.bytes / 1e6 / rd[key] for rd in rounds)), 2)

    rounds = quiet + killed
    r = {"client": "fuse", "bytes": args.bytes,
         "sha256_ok": all(rd["sha256"] == digest for rd in rounds),
         "kills": sum(rd["kills"] for rd in killed),
         "nokill_write_MBps": rate(quiet, "write_s"),
         "kill_write_MBps": rate(killed, "write_s"),
         "nokill_read_MBps": rate(quiet, "read_s"),
         "kill_read_MBps": rate(killed, "read_s"),
         "fsck_clean": clean}
    ratios = [r[f"kill_{d}_MBps"] / r[f"nokill_{d}_MBps"] if r[f"nokill_{d}_MBps"] else 0.0
              for d in ("write", "read")]
    r["ratio"] = round(min(ratios), 3)
    order = ["client", "bytes", "sha256_ok", "kills", "nokill_write_MBps", "kill_write_MBps",
             "nokill_read_MBps", "kill_read_MBps", "ratio", "fsck_clean"]
    # what went wrong goes to stderr: the JSON carries exactly the figures the README quotes
    for e in [e for rd in rounds for e in rd["errors"]] + ([] if clean else [f"fsck.minix -f: {said}"]):
        print(f"bench disk: {e}", file=sys.stderr)
    for name, rds in (("no kills", quiet), ("kills", killed)):  # every round, for the record
        print(f"bench disk: {name}: write " + ", ".join(
            f"{args.bytes / 1e6 / rd['write_s']:.2f}" for rd in rds) + " MB/s; read " + ", ".join(
            f"{args.bytes / 1e6 / rd['read_s']:.2f}" for rd in rds) + " MB/s", file=sys.stderr)
    return {k: r[k] for k in order}


def report(r: dict[str, Any]) -> str:
    met = (r["sha256_ok"] and r["fsck_clean"] and r["ratio"] >= TARGET_RATIO
           and min(r["nokill_write_MBps"], r["nokill_read_MBps"]) >= TARGET_MBPS)
    return (f"disk: {r['bytes']} bytes through bin/mount (FUSE), medians of the rounds: write (cp + sync) "
            f"{r['nokill_write_MBps']} MB/s without kills, {r['kill_write_MBps']} MB/s with "
            f"at_wini SIGKILLed every second; read (sha256sum, MFS restarted, from the disk) "
            f"{r['nokill_read_MBps']} MB/s and {r['kill_read_MBps']} MB/s; {r['kills']} kills; "
            f"ratio {r['ratio']}; sha256 {'identical' if r['sha256_ok'] else 'DIFFERENT'}; "
            f"fsck.minix -f {'clean' if r['fsck_clean'] else 'NOT CLEAN'} "
            f"(targets: identical, clean, ratio >= {TARGET_RATIO}, >= {TARGET_MBPS:g} MB/s "
            f"without kills: {'met' if met else 'MISSED'})")
