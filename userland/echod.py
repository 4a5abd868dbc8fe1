"""echod: an echo server over TCP (one connection at a time) or UDP, as a user process of the system.

    bin/echod PORT [--once]           TCP: echo each connection's bytes until it closes
    bin/echod PORT --udp [--once]     UDP: send each datagram back to its sender
"""
from __future__ import annotations

import argparse
import sys

from minikern import cli, ipc
from userland.socket import Socket, SocketError


def serve_tcp(conn: ipc.Connection, port: int, once: bool) -> None:
    s = Socket(conn)
    s.bind(port)
    s.listen(4)
    print(f"echod: serving TCP port {port}", flush=True)
    while True:
        c, peer = s.accept()
        print(f"echod: connection from {peer[0]}:{peer[1]}", flush=True)
        while data := c.recv():
            c.sendall(data)
        c.close()
        if once:
            return


def serve_udp(conn: ipc.Connection, port: int, once: bool) -> None:
    s = Socket(conn, "udp")
    s.bind(port)
    print(f"echod: serving UDP port {port}", flush=True)
    while True:
        data, (ip, peer_port) = s.recvfrom()
        s.sendto(data, ip, peer_port)
        if once:
            return


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("echod", __doc__, failures=(SocketError,))
    cmd.add_argument("port", type=int)
    cmd.add_argument("--udp", action="store_true", help="echo datagrams instead of a TCP stream")
    cmd.add_argument("--once", action="store_true",
                     help="serve one connection (TCP) or one datagram (UDP), then exit")
    return cmd.run(argv, echod)


def echod(a: argparse.Namespace) -> int:
    with cli.connected(a.run_dir, "echod", privileges="user") as conn:
        (serve_udp if a.udp else serve_tcp)(conn, a.port, a.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())
