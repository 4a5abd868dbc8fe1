"""nc: a sink and source of bytes over TCP, as a user process of the system.

    bin/nc -l PORT                 receive until the peer closes; print count and sha256
    bin/nc HOST PORT --bytes N     send N bytes (a repeatable pattern) and print their sha256

It connects to the system as a user process (SENDREC only, to INET and DS),
admitted with the run directory's operator key, like any bin/ command.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

from minikern import cli, ipc
from userland.pattern import pattern
from userland.socket import Socket, SocketError


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("nc", __doc__, json="print one JSON object", failures=(SocketError,))
    cmd.add_argument("-l", "--listen", action="store_true", help="receive on PORT")
    cmd.add_argument("args", nargs="+", help="PORT (with -l) or HOST PORT")
    cmd.add_argument("--bytes", type=int, default=1 << 20, help="bytes to send")
    cmd.add_argument("--seed", type=int, default=1)
    args = cmd.parse_args(argv)
    if len(args.args) != (1 if args.listen else 2) or not args.args[-1].isdigit():
        cmd.error("give PORT with -l, HOST PORT without")
    return cmd.call(args, nc)


def nc(a: argparse.Namespace) -> int:
    with cli.connected(a.run_dir, "nc", privileges="user") as conn:
        count, digest, secs = transfer(conn, a)
    result = {"bytes": count, "sha256": digest, "seconds": round(secs, 3)}
    print(json.dumps(result) if a.json else f"{count} bytes in {secs:.2f} s, sha256 {digest}")
    return 0


def transfer(conn: ipc.Connection, a: argparse.Namespace) -> tuple[int, str, float]:
    """Receive (-l) or send; the byte count, their sha256 and the seconds it took."""
    s = Socket(conn)
    t0 = time.monotonic()
    h = hashlib.sha256()
    count = 0
    if a.listen:
        s.bind(int(a.args[0]))
        s.listen(1)
        c, peer = s.accept()
        t0 = time.monotonic()
        while data := c.recv():
            h.update(data)
            count += len(data)
        c.close()
    else:
        s.connect(a.args[0], int(a.args[1]))
        data = pattern(a.bytes, a.seed)
        s.sendall(data)
        h.update(data)
        count = len(data)
    s.close()
    return count, h.hexdigest(), time.monotonic() - t0

if __name__ == "__main__":
    sys.exit(main())
