"""A plain Linux socket program, run inside the test's namespace (``python -m tests.net.peer``).

Nothing here touches minikern: these are the Linux kernel's own TCP and ICMP,
the other end of the system's NIC.  Standard library only, plus the pure
pattern generator bin/nc uses (userland/pattern.py), so both ends make the
same bytes (``recv`` and ``ping`` are the INET tests' own).  Each command prints
JSON lines: ``recv`` first ``{"ready": true}`` once it listens, then every
command one line with its result.

    send HOST PORT NBYTES SEED   connect (retrying while refused), send, close; wait for EOF
    recv BIND_IP PORT            accept one connection, read to end of stream
    echo BIND_IP PORT            a TCP echo server (bin/experiment's peer): every connection
                                 gets back what it sends, garbage included, until killed
    sendss / recvss              the same, and the result adds "ss": what ``ss -tin`` says
                                 of the connection (options, wscale, retransmissions) at its end
    ping HOST COUNT              ICMP echo over a raw socket (for hosts without ping)
"""
from __future__ import annotations

import hashlib
import json
import socket
import socketserver
import subprocess
import sys
import time

from tests.inet.linux_peer import do_ping, do_recv
from userland.pattern import chunks

TIMEOUT = 60.0          # seconds any single socket operation may take (a driver restart is < 1 s)
CONNECT_DEADLINE = 30.0  # seconds to keep retrying a refused connect (the listener is starting)
CHUNK = 256 * 1024


def emit(obj: dict[str, object]) -> None:
    print(json.dumps(obj), flush=True)


def connect(host: str, port: int) -> socket.socket:
    deadline = time.monotonic() + CONNECT_DEADLINE
    while True:
        try:
            return socket.create_connection((host, port), timeout=TIMEOUT)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # the system's listener is not bound yet: ask again


TCPI_OPT_SACK, TCPI_OPT_WSCALE = 2, 4  # linux/tcp.h


def ss(s: socket.socket) -> dict[str, object]:
    """What Linux says of the connection of ``s``: ``ss -tin``'s line (run inside the
    namespace, as this program is) and TCP_INFO's options and window-scale shifts."""
    host, port = s.getpeername()
    out = subprocess.run(["ss", "-tinH", "dst", f"{host}:{port}"], capture_output=True,
                         text=True, timeout=30)
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return {"text": out.stdout, "sack": bool(info[5] & TCPI_OPT_SACK),
            "wscale": bool(info[5] & TCPI_OPT_WSCALE),
            "snd_wscale": info[6] & 0x0F, "rcv_wscale": info[6] >> 4}


def do_send(host: str, port: int, nbytes: int, seed: int, with_ss: bool = False) -> None:
    digest, count = hashlib.sha256(), 0
    with connect(host, port) as s:
        start = time.monotonic()
        for piece in chunks(nbytes, seed):
            s.sendall(piece)
            digest.update(piece)
            count += len(piece)
        seen = ss(s) if with_ss else None  # while connected: the receiver closes after EOF
        s.shutdown(socket.SHUT_WR)
        tail = s.recv(1)  # the receiver's close: everything was read
        result: dict[str, object] = {"bytes": count, "sha256": digest.hexdigest(),
                                     "seconds": round(time.monotonic() - start, 3),
                                     "tail": len(tail)}
        if seen is not None:
            result["ss"] = seen
        emit(result)


def do_recv_ss(bind_ip: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((bind_ip, port))
        ls.listen(1)
        ls.settimeout(TIMEOUT)
        emit({"ready": True})
        conn, _ = ls.accept()
        conn.settimeout(TIMEOUT)
        digest, count, start = hashlib.sha256(), 0, time.monotonic()
        with conn:
            while chunk := conn.recv(CHUNK):
                digest.update(chunk)
                count += len(chunk)
            emit({"bytes": count, "sha256": digest.hexdigest(),
                  "seconds": time.monotonic() - start, "ss": ss(conn)})


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(TIMEOUT)
        try:
            while chunk := self.request.recv(CHUNK):
                self.request.sendall(chunk)
        except OSError:
            pass  # reset, or silent for TIMEOUT: the client went away (it reconnects)


class _EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def do_echo(bind_ip: str, port: int) -> None:
    with _EchoServer((bind_ip, port), _Echo) as server:
        emit({"ready": True})
        server.serve_forever()


def main(argv: list[str]) -> int:
    if argv[:1] == ["send"] and len(argv) == 5:
        do_send(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    elif argv[:1] == ["sendss"] and len(argv) == 5:
        do_send(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), with_ss=True)
    elif argv[:1] == ["recvss"] and len(argv) == 3:
        do_recv_ss(argv[1], int(argv[2]))
    elif argv[:1] == ["recv"] and len(argv) == 3:
        do_recv(int(argv[2]), argv[1])
    elif argv[:1] == ["echo"] and len(argv) == 3:
        do_echo(argv[1], int(argv[2]))
    elif argv[:1] == ["ping"] and len(argv) == 3:
        do_ping(argv[1], int(argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
