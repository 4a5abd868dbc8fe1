"""A plain Linux socket program, run inside the test's namespace (``python -m tests.net.peer``).

Nothing here touches minikern: these are the Linux kernel's own TCP and ICMP,
the other end of the system's NIC.  Standard library only, plus the pure
pattern generator bin/nc uses (userland/pattern.py), so both ends make the
same bytes (``recv`` and ``ping`` are the INET tests' own).  Each command prints
JSON lines: ``recv`` first ``{"ready": true}`` once it listens, then every
command one line with its result.

    send HOST PORT NBYTES SEED   connect (retrying while refused), send, close; wait for EOF
    recv BIND_IP PORT            accept one connection, read to end of stream
    ping HOST COUNT              ICMP echo over a raw socket (for hosts without ping)
"""
from __future__ import annotations

import hashlib
import json
import socket
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


def do_send(host: str, port: int, nbytes: int, seed: int) -> None:
    digest, count = hashlib.sha256(), 0
    with connect(host, port) as s:
        start = time.monotonic()
        for piece in chunks(nbytes, seed):
            s.sendall(piece)
            digest.update(piece)
            count += len(piece)
        s.shutdown(socket.SHUT_WR)
        tail = s.recv(1)  # the receiver's close: everything was read
        emit({"bytes": count, "sha256": digest.hexdigest(),
              "seconds": round(time.monotonic() - start, 3), "tail": len(tail)})


def main(argv: list[str]) -> int:
    if argv[:1] == ["send"] and len(argv) == 5:
        do_send(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    elif argv[:1] == ["recv"] and len(argv) == 3:
        do_recv(int(argv[2]), argv[1])
    elif argv[:1] == ["ping"] and len(argv) == 3:
        do_ping(argv[1], int(argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
