"""Plain Linux socket programs that test_linux.py runs in its namespace (``python -m tests.inet.linux_peer``).

Nothing here uses the minikern stack: these are the kernel's own TCP and ICMP.
Each prints one JSON line with its result (``send`` and ``recv`` print
``{"ready": ...}`` first).

* ``send HOST PORT NBYTES SEED``: connect, send ``random.Random(SEED)`` bytes, close.
* ``recv PORT``: accept one connection, read to end of stream.
* ``ping HOST COUNT``: ICMP echo over a raw socket (for hosts without ``ping``).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import struct
import sys
import time

TIMEOUT = 60.0                # seconds any single socket operation may take
CHUNK = 256 * 1024


def emit(obj: dict[str, object]) -> None:
    print(json.dumps(obj), flush=True)


def do_send(host: str, port: int, nbytes: int, seed: int) -> None:
    data = random.Random(seed).randbytes(nbytes)
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        start = time.monotonic()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        tail = s.recv(1)                       # wait for the stack's FIN: everything was received
        emit({"bytes": nbytes, "sha256": hashlib.sha256(data).hexdigest(),
              "seconds": time.monotonic() - start, "tail": len(tail)})


def do_recv(port: int, bind_ip: str = "0.0.0.0") -> None:
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
        emit({"bytes": count, "sha256": digest.hexdigest(), "seconds": time.monotonic() - start})


def do_ping(host: str, count: int) -> None:
    ident, replies = os.getpid() & 0xFFFF, 0
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(2.0)
        for seq in range(count):
            payload = b"minikern-ping-%d" % seq
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            request = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
            s.sendto(request, (host, 0))
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                try:
                    packet, addr = s.recvfrom(2048)
                except TimeoutError:
                    break
                ihl = (packet[0] & 0x0F) * 4
                icmp_type, _, csum, r_ident, r_seq = struct.unpack_from("!BBHHH", packet, ihl)
                if (addr[0] == host and icmp_type == 0 and r_ident == ident and r_seq == seq
                        and packet[ihl + 8:] == payload and _checksum(packet[ihl:]) == 0):
                    replies += 1
                    break
    emit({"sent": count, "received": replies})


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def main(argv: list[str]) -> int:
    if argv[0] == "send":
        do_send(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    elif argv[0] == "recv":
        do_recv(int(argv[1]))
    elif argv[0] == "ping":
        do_ping(argv[1], int(argv[2]))
    else:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
