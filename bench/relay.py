"""The baseline for bin/bench ipc: a bare ZeroMQ relay with the kernel's topology.

client (DEALER) -> relay (ROUTER front, ROUTER back) -> server (DEALER), and
back.  The relay only forwards frames; client and server encode and decode
message bodies with the same codec as minikern processes, so the difference
measured is what the kernel adds: admission, checks, rendezvous bookkeeping.
Run as ``python -m bench.relay relay|server DIR``.
"""
from __future__ import annotations

import sys

import zmq

from minikern.proto import codec


def relay(front_addr: str, back_addr: str) -> None:
    ctx = zmq.Context()
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    front.bind(front_addr)
    back.bind(back_addr)
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    server: bytes | None = None
    while True:
        events = dict(poller.poll())
        if back in events:
            frames = back.recv_multipart()
            if len(frames) == 2:  # the server announcing itself
                server = frames[0]
            else:
                front.send_multipart(frames[1:])
        if front in events:
            frames = front.recv_multipart()
            if server is not None:
                back.send_multipart([server, *frames])


def server(back_addr: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(back_addr)
    sock.send(b"")
    while True:
        client, hdr, body = sock.recv_multipart()
        decoded = codec.decode_body(body)
        fields = decoded[1] if decoded else {}
        sock.send_multipart([client, codec.encode_reply(0, 8, 1), codec.encode_body(0, fields)])


if __name__ == "__main__":
    role, d = sys.argv[1], sys.argv[2]
    if role == "relay":
        relay(f"ipc://{d}/front.sock", f"ipc://{d}/back.sock")
    else:
        server(f"ipc://{d}/back.sock")
