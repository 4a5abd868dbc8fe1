"""The minikern kernel: one broker process that every component talks through.

Principles (after curio's "don't add features to the kernel"):

1. Mechanism only.  The kernel moves messages (rendezvous SEND / RECEIVE /
   SENDREC, NOTIFY), keeps the process table with endpoints and generations,
   checks every call against the caller's privileges, turns interrupts into
   notifications, runs alarms, and copies granted memory.  When to restart,
   what to publish, what to do about a crash: that is policy, and lives in RS
   and DS.
2. Nothing from the wire is trusted.  Frames are validated by minikern.codec;
   a malformed, oversized, unadmitted or out-of-turn frame is counted and
   dropped, never allowed to raise.  Each process has at most one trap in
   flight, so the kernel's memory is bounded by the process table.
3. Death is an event, not a poll.  Every process is the kernel's child (or,
   for operator tools, a pidfd the kernel opened), and its pidfd sits in the
   same poll set as the socket.
4. One loop, one thread.  The kernel never blocks except in poll.
"""
from __future__ import annotations

import heapq
import json
import os
import secrets
import signal
import socket
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import zmq

from minikern import codec, params
from minikern.const import CLOCK, HW, NONE, NR_PROCS, PROTO, Call, Err, KCall, Kind, KMsg
from minikern.kernel import grant, ipc, system
from minikern.kernel.bus import Bus
from minikern.kernel.priv import Priv
from minikern.kernel.proc import Proc, ProcTable, Wait
from minikern.kernel.spawn import Spawner

_NB = int(zmq.NOBLOCK)
_MORE_NB = int(zmq.NOBLOCK) | int(zmq.SNDMORE)
_POLLIN = int(zmq.POLLIN)


class Kernel:
    _send = staticmethod(zmq.backend.Socket.send)

    def __init__(self, run_dir: Path, console_fd: int) -> None:
        self.run_dir = run_dir
        self.table = ProcTable()
        self.counters: Counter[str] = Counter()
        self.irq_holders: dict[int, set[int]] = {}
        self.alarms: list[tuple[float, int]] = []  # heap of (due, endpoint); lazily pruned
        self.pidfds: dict[int, Proc] = {}
        self.shutdown_deadline: float | None = None
        self.image: list[dict[str, Any]] = []  # boot image entries not started yet
        self.board_due: float | None = None  # booting waits for the board until then
        self.audit_lines = 0
        self.audit = open(run_dir / params.AUDIT_LOG, "a", buffering=1)
        self.spawner = Spawner(console_fd, params.TEMPLATE_POOL)
        self.address = "ipc://" + str(run_dir / params.KERNEL_SOCKET)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        for opt, value in ((zmq.ROUTER_MANDATORY, 1), (zmq.LINGER, 0),
                           (zmq.MAXMSGSIZE, params.MAX_MESSAGE + params.MAX_HEADER),
                           (zmq.RCVHWM, params.SOCKET_HWM), (zmq.SNDHWM, params.SOCKET_HWM)):
            self.sock.setsockopt(opt, value)
        self.sock.bind(self.address)
        self.operator_key = secrets.token_bytes(32)
        key_path = run_dir / params.OPERATOR_KEY
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, self.operator_key)
        os.close(fd)
        self.bus = Bus(self, self.ctx, "ipc://" + str(run_dir / params.BUS_SOCKET))
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.bus.sock, zmq.POLLIN)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_w.setblocking(False)
        self.poller.register(self.wake_r.fileno(), zmq.POLLIN)

    # -- output ---------------------------------------------------------------------

    def log(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} kernel: {text}", flush=True)

    def count(self, what: str) -> None:
        self.counters[what] += 1

    def answer(self, p: Proc, status: int, source: int = 0, kind: int = Kind.REPLY,
               aux: int = 0, body: bytes | None = None, send_status: int = 0) -> None:
        """Send the one reply frame that completes ``p``'s trap."""
        if p.ident is None:
            return
        hdr = codec.encode_reply(status, source, kind, aux, send_status)
        send = self._send  # pyzmq's backend send: the sugar layer costs microseconds a frame
        try:
            send(self.sock, p.ident, _MORE_NB)
            if body is None:
                send(self.sock, hdr, _NB)
            else:
                send(self.sock, hdr, _MORE_NB)
                send(self.sock, body, _NB)
        except zmq.ZMQError:
            self.count("reply_undeliverable")

    def audit_denial(self, caller: Proc, call: str, target: int, err: Err) -> None:
        self.count("denied_" + err.name)
        if self.audit_lines < params.MAX_AUDIT_LINES:
            self.audit_lines += 1
            self.audit.write(json.dumps({"ts": round(time.time(), 3), "caller": caller.endpoint,
                                         "label": caller.label, "call": call,
                                         "target": target, "error": err.name}) + "\n")

    def deny(self, caller: Proc, call: Call | KCall, target: int, err: Err) -> None:
        self.audit_denial(caller, call.name, target, err)
        self.answer(caller, err)

    def refuse(self, caller: Proc, call: KCall, target: int,
               status: Err = Err.ECALLDENIED) -> system.Result:
        """A kernel call whose argument is outside the caller's capabilities."""
        self.audit_denial(caller, call.name, target, status)
        return status, {}

    # -- processes ------------------------------------------------------------------

    def start_process(self, label: str, module: str, args: list[str], priv: Priv,
                      manager: int, incarnation: int = 0, slot: int | None = None) -> Proc | None:
        s = self.table.free_slot(slot)
        if s is None:
            self.count("no_free_slot")
            return None
        p = self.table.add(s, label, 0, priv, manager)
        p.credential, p.incarnation = secrets.token_bytes(32), incarnation
        p.memory = seg = grant.Segment(label, params.MEMORY_SIZE)
        record = {"module": module, "args": args, "label": label, "endpoint": p.endpoint,
                  "credential": p.credential, "address": self.address,
                  "run_dir": str(self.run_dir), "incarnation": incarnation,
                  "memory_size": seg.size}
        if s == HW:  # the board: it alone gets the credential for the bus
            record["bus"], record["bus_credential"] = self.bus.address, self.bus.expect_board()
        spawned = self.spawner.spawn(record, seg.fd)
        if spawned is None:
            self.table.remove(p)
            seg.close()
            return None
        p.pid, p.pidfd = spawned
        p.child = True
        self._watch(p)
        self.log(f"started {label} endpoint {p.endpoint} pid {p.pid}")
        return p

    def _watch(self, p: Proc) -> None:
        p.started = time.monotonic()
        self.pidfds[p.pidfd] = p
        self.poller.register(p.pidfd, zmq.POLLIN)

    def hello(self, ident: bytes, cred: bytes, pid: int, label: str | None,
              wire_priv: dict[str, Any] | None) -> None:
        """Admit a connection: a started process's credential, or the operator key."""
        for p in self.table.live():
            if p.credential is not None and secrets.compare_digest(p.credential, cred):
                if p.pid != pid:
                    break
                p.credential, p.ident = None, ident
                self.table.by_ident[ident] = p
                return self.answer(p, Err.OK, p.endpoint)
        if not secrets.compare_digest(cred, self.operator_key) or self.shutdown_deadline:
            self.count("hello_refused")
            return
        priv = Priv.from_wire(wire_priv)
        s = self.table.free_slot()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = -1
        if priv is None or s is None or pidfd < 0 or not label or len(label) > 32:
            self.count("hello_refused")
            if pidfd >= 0:
                os.close(pidfd)
            return
        p = self.table.add(s, label, pid, priv, manager=NONE)
        p.ident, p.pidfd = ident, pidfd
        self.table.by_ident[ident] = p
        self._watch(p)
        self.answer(p, Err.OK, p.endpoint)

    def reap(self, pidfd: int) -> None:
        p = self.pidfds.get(pidfd)
        if p is None:
            return
        status = signo = 0
        try:
            info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
            if info is None:
                return  # not dead after all
            if info.si_code == os.CLD_EXITED:
                status = info.si_status
            else:
                signo = info.si_status
        except ChildProcessError:
            pass  # an operator tool: not our child, so no status
        self.exited(p, status, signo)

    def exited(self, p: Proc, status: int, signo: int) -> None:
        p.exiting = True
        ipc.clear_endpoint(self, p)
        for holders in self.irq_holders.values():
            holders.discard(p.endpoint)
        if p.slot == HW:
            self.bus.board_died()
        else:
            self.bus.send("gone", p.endpoint)
        self.table.remove(p)
        self.poller.unregister(p.pidfd)
        del self.pidfds[p.pidfd]
        os.close(p.pidfd)
        if isinstance(p.memory, grant.Segment):
            p.memory.close()
        if p.child:  # operator tools come and go unlogged
            how = f"signal {signal.Signals(signo).name}" if signo else f"status {status}"
            self.log(f"{p.label} (endpoint {p.endpoint}, pid {p.pid}) exited with {how}")
        manager = self.table.lookup(p.manager)
        if manager is not None:
            ipc.kernel_message(self, manager, KMsg.EXIT, {
                "endpoint": p.endpoint, "label": p.label, "pid": p.pid,
                "status": status, "signal": signo})

    # -- the loop -------------------------------------------------------------------

    def handle(self, frames: list[bytes]) -> None:
        ident = frames[0]
        p = self.table.by_ident.get(ident)
        req = codec.decode_request(frames[1:])
        if req is None:
            return self.count("malformed" if p else "unadmitted")
        if req[0] == Call.HELLO:
            if p is not None:
                return self.count("hello_twice")
            return self.hello(ident, *req[1:])
        if p is None:
            return self.count("unadmitted")
        if req[0] == Call.BYE:
            return self.exited(p, 0, 0) if not p.child else self.count("bye_from_child")
        if req[0] == Call.CANCEL:  # the one frame a blocked process may send
            return ipc.cancel(self, p)
        if p.wait is not Wait.READY:
            return self.count("trap_while_blocked")
        call, a, b, body = req
        ipc.trap(self, p, call, a, b, body)

    def next_timeout(self) -> int | None:
        while self.alarms:
            due, e = self.alarms[0]
            p = self.table.lookup(e)
            if p is not None and p.alarm == due:
                return max(0, int((due - time.monotonic()) * 1000) + 1)
            heapq.heappop(self.alarms)
        return 100 if self.shutdown_deadline or self.board_due else None

    def set_alarm(self, p: Proc, due: float | None) -> None:
        p.alarm = due
        if due is not None:
            heapq.heappush(self.alarms, (due, p.endpoint))
        if len(self.alarms) > 2 * NR_PROCS:  # replaced alarms linger in the heap: drop them
            self.alarms = [(q.alarm, q.endpoint) for q in self.table.live() if q.alarm]
            heapq.heapify(self.alarms)

    def run_alarms(self) -> None:
        now = time.monotonic()
        while self.alarms and self.alarms[0][0] <= now:
            due, e = heapq.heappop(self.alarms)
            p = self.table.lookup(e)
            if p is not None and p.alarm == due:
                p.alarm = None
                ipc.notify(self, CLOCK, p)

    def request_shutdown(self) -> None:
        if self.shutdown_deadline is not None:
            return
        self.log("shutting down")
        self.image, self.board_due = [], None
        self.bus.send("shutdown")
        self.shutdown_deadline = time.monotonic() + params.SHUTDOWN_GRACE
        for p in self.table.live():
            if p.child:
                ipc.kernel_message(self, p, KMsg.SHUTDOWN, {})
            else:  # an operator tool is not part of the system: detach it, do not kill it
                if p.wait is not Wait.READY:
                    self.answer(p, Err.EDEADSRCDST)
                self.exited(p, 0, 0)

    def on_signal(self, signo: int, frame: object) -> None:
        self.stop_signal = signo
        try:
            self.wake_w.send(b"\0")
        except OSError:
            pass

    def boot(self, image: list[dict[str, Any]]) -> None:
        self.spawner.fill()
        self.image = list(image)
        self.boot_next()

    def boot_next(self) -> None:
        """Start the boot image in order; after the board, the rest waits until it is on the
        bus (the machine exists before any driver runs) or BOARD_ATTACH_TIMEOUT passed."""
        self.board_due = None
        while self.image:
            entry = self.image.pop(0)
            priv = Priv.from_wire(entry.get("priv"))
            if priv is None:
                self.log(f"boot image entry {entry.get('label')!r} has an invalid privilege")
                continue
            manager = entry.get("manager")  # an endpoint (RS's fixed one), told when it dies
            p = self.start_process(entry["label"], entry["module"], entry.get("args", []), priv,
                                   manager=manager if type(manager) is int else NONE,
                                   slot=entry.get("slot"))
            if p is not None and p.slot == HW and self.image:
                self.board_due = time.monotonic() + params.BOARD_ATTACH_TIMEOUT
                return

    def run(self, image: list[dict[str, Any]]) -> None:
        self.stop_signal = 0
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        self.log(f"listening on {self.address} (protocol {PROTO}, pid {os.getpid()})")
        self.boot(image)
        while True:
            events = dict(self.poller.poll(self.next_timeout()))
            if events.pop(self.sock, 0):  # one frame a poll: deaths and alarms are never starved
                try:
                    self.handle(self.sock.recv_multipart())
                except Exception:  # a kernel bug: say so loudly, but keep serving
                    self.count("kernel_bug")
                    self.log("BUG handling a frame:\n" + traceback.format_exc())
            if events.pop(self.bus.sock, 0):
                while int(self.bus.sock.get(zmq.EVENTS)) & _POLLIN:
                    self.bus.handle(self.bus.sock.recv_multipart())
            for fd in events:
                if fd == self.wake_r.fileno():
                    self.wake_r.recv(64)
                    if self.stop_signal:
                        self.request_shutdown()
                elif isinstance(fd, int):
                    self.reap(fd)
            self.run_alarms()
            if self.board_due is not None and (self.bus.ident or time.monotonic() > self.board_due
                                               or self.table.lookup(HW) is None):
                if not self.bus.ident:
                    self.log("the board did not join the bus; booting the rest without it")
                self.boot_next()
            if self.shutdown_deadline is not None:
                if not self.pidfds:
                    break
                if time.monotonic() > self.shutdown_deadline:
                    for p in self.pidfds.values():
                        try:
                            os.kill(p.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
        self.close()

    def close(self) -> None:
        self.spawner.close()
        self.sock.close(0)
        self.bus.sock.close(0)
        self.ctx.term()
        for name in (params.KERNEL_SOCKET, params.BUS_SOCKET, params.OPERATOR_KEY,
                     params.KERNEL_PIDFILE):
            try:
                os.unlink(self.run_dir / name)
            except FileNotFoundError:
                pass
        self.log(f"halted; counters {dict(self.counters)}")


def main() -> None:
    run_dir = Path(sys.argv[1])
    image = msgpack.unpackb((run_dir / "boot.image").read_bytes(), raw=False)
    (run_dir / params.KERNEL_PIDFILE).write_text(str(os.getpid()))
    Kernel(run_dir, sys.stdout.fileno()).run(image)


if __name__ == "__main__":
    main()
