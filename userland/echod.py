"""echod: a TCP echo server, as a user process of the system (one connection at a time).

    bin/echod PORT [--once]
"""
from __future__ import annotations

import argparse
import sys

from minikern import cli, ipc
from userland.socket import Socket


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="echod", description=__doc__.splitlines()[0])
    cli.add_run_dir(ap)
    ap.add_argument("port", type=int)
    ap.add_argument("--once", action="store_true", help="serve one connection, then exit")
    a = ap.parse_args(argv)
    conn: ipc.Connection = cli.operator_connection(a.run_dir, "echod", privileges="user")
    try:
        s = Socket(conn)
        s.bind(a.port)
        s.listen(4)
        while True:
            c, peer = s.accept()
            print(f"echod: connection from {peer[0]}:{peer[1]}", flush=True)
            while data := c.recv():
                c.sendall(data)
            c.close()
            if a.once:
                return 0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
