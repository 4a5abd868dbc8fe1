"""The stack on a TAP device, run in a network namespace for test_linux.py (``-m tests.inet.linux_stack``).

It creates the TAP device (devices.md 7.3), gives Linux 10.88.0.1/24 on it,
and runs the stack as 10.88.0.2 in a select loop on the TAP fd and stdin.
It speaks JSON lines on stdout: ``{"ready": ...}`` once the link is up, then
one result object.  Modes:

* ``idle``: answer ARP and ICMP until stdin closes.
* ``sink PORT``: accept one TCP connection, read to end of stream, report sha256.
* ``source HOST PORT NBYTES SEED``: after a line on stdin, connect and send
  NBYTES of ``random.Random(SEED)`` bytes, close, report sha256.

It stops on stdin EOF or after ``MAX_RUNTIME`` whatever happens, so it can
never outlive the test for long.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import select
import struct
import subprocess
import sys
import time

from services.inet.stack import Stack, TcpSocket, TcpState

TAP_NAME = "mktap0"
LINUX_IP = "10.88.0.1"
STACK_IP = "10.88.0.2"
STACK_MAC = "02:00:00:88:00:02"
NETMASK = "255.255.255.0"
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MAX_RUNTIME = 150.0           # seconds
READ_BATCH = 256              # frames read per wakeup before running timers
CHUNK = 256 * 1024


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def configure_linux_side(name: str) -> None:
    try:
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
            f.write("1")                          # keep IPv6 chatter off the link
    except OSError:
        pass
    subprocess.run(["ip", "addr", "add", f"{LINUX_IP}/24", "dev", name], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)


class Sink:
    def __init__(self, stack: Stack, port: int) -> None:
        self.listener = stack.tcp_socket()
        self.listener.bind(port)
        self.listener.listen(1)
        self.conn: TcpSocket | None = None
        self.hash = hashlib.sha256()
        self.count = 0
        self.start = 0.0
        self.end = 0.0
        self.eof = False

    def step(self) -> None:
        if self.conn is None:
            self.conn = self.listener.accept()
            if self.conn is None:
                return
            self.start = time.monotonic()
        while not self.eof:
            chunk = self.conn.recv(CHUNK)
            if chunk is None:
                return
            if chunk == b"":
                self.eof, self.end = True, time.monotonic()
                self.conn.close()
                self.listener.close()
                return
            self.hash.update(chunk)
            self.count += len(chunk)

    def done(self) -> bool:
        return self.eof and self.conn is not None and self.conn.state is TcpState.CLOSED

    def result(self) -> dict[str, object]:
        return {"bytes": self.count, "sha256": self.hash.hexdigest(), "seconds": self.end - self.start}


class Source:
    def __init__(self, stack: Stack, host: str, port: int, nbytes: int, seed: int) -> None:
        self.stack, self.host, self.port = stack, host, port
        self.data = memoryview(random.Random(seed).randbytes(nbytes))
        self.sock: TcpSocket | None = None
        self.offset = 0
        self.start = 0.0
        self.end = 0.0
        self.closed = False

    def go(self) -> None:
        self.sock = self.stack.tcp_socket()
        self.sock.connect((self.host, self.port))
        self.start = time.monotonic()

    def step(self) -> None:
        if self.sock is None or self.closed:
            return
        while self.offset < len(self.data):
            n = self.sock.send(self.data[self.offset:self.offset + CHUNK])
            if n == 0:
                return
            self.offset += n
        self.sock.close()
        self.closed = True

    def done(self) -> bool:
        if self.sock is None or not self.closed:
            return False
        if self.sock.state in (TcpState.TIME_WAIT, TcpState.CLOSED) and not self.end:
            self.end = time.monotonic()
        return bool(self.end)

    def result(self) -> dict[str, object]:
        sender = self.sock.sender if self.sock is not None else None
        return {"bytes": self.offset, "sha256": hashlib.sha256(self.data).hexdigest(),
                "seconds": self.end - self.start, "error": self.sock.error if self.sock else None,
                "timeouts": sender.timeouts if sender else 0,
                "fast_retransmits": sender.fast_retransmits if sender else 0}


def main(argv: list[str]) -> int:
    mode = argv[0]
    fd = open_tap(TAP_NAME)
    configure_linux_side(TAP_NAME)

    def send_frame(frame: bytes) -> None:
        os.write(fd, frame)

    stack = Stack(STACK_MAC, STACK_IP, NETMASK, None, send_frame, time.monotonic)
    app: Sink | Source | None = None
    if mode == "sink":
        app = Sink(stack, int(argv[1]))
    elif mode == "source":
        app = Source(stack, argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    print(json.dumps({"ready": True}), flush=True)
    deadline = time.monotonic() + MAX_RUNTIME
    stdin = sys.stdin.fileno()
    watch = [fd, stdin]
    while time.monotonic() < deadline and not (app is not None and app.done()):
        next_due = stack.next_deadline()
        wait = 0.02 if next_due is None else min(0.02, max(0.0, next_due - time.monotonic()))
        ready, _, _ = select.select(watch, [], [], wait)
        if fd in ready:
            for _ in range(READ_BATCH):
                try:
                    frame = os.read(fd, 2048)
                except BlockingIOError:
                    break
                stack.input(frame)
        if stdin in ready:
            line = os.read(stdin, 100)
            if not line:
                break
            if isinstance(app, Source) and app.sock is None:
                app.go()
        stack.tick()
        if app is not None:
            app.step()
    result: dict[str, object] = app.result() if app is not None else {}
    result.update(drops=dict(stack.drops), echo_answered=stack.icmp.echo_requests_answered,
                  frames_in=stack.frames_in, frames_out=stack.frames_out,
                  done=app.done() if app is not None else True)
    print(json.dumps(result), flush=True)
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
