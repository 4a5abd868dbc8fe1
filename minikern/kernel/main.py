"""The minikern kernel: one broker process that every component talks through.

Principles (after curio's "don't add features to the kernel"):

1. Mechanism only.  The kernel moves messages (rendezvous SEND / RECEIVE /
   SENDREC, NOTIFY), keeps the process table with endpoints and generations,
   checks every call against the caller's privileges, turns interrupts into
   notifications, runs alarms, and copies granted memory.  When to restart,
   what to publish, what to do about a crash: that is policy, and lives in RS
   and DS.
2. Nothing from the wire is trusted.  Frames are validated by minikern.proto.codec;
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
import os
import resource
import secrets
import signal
import socket
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import zmq

from minikern import domain, events, params
from minikern.proto import bus as wire, codec, image, routing, startup
from minikern.proto.peercred import PeerCred
from minikern.const import (CLOCK, HW, NONE, NR_PROCS, NR_SCHED_QUEUES, PROTO, RS, Call, Err,
                            KCall, Kind, KMsg, Wait, err_name)
from minikern.kernel import grant, ipc, system
from minikern.kernel.bus import Bus
from minikern.kernel.priv import Priv
from minikern.kernel.proc import Proc, ProcTable
from minikern.kernel.spawn import Spawner

_NB = int(zmq.NOBLOCK)
_MORE_NB = int(zmq.NOBLOCK) | int(zmq.SNDMORE)
_POLLIN = int(zmq.POLLIN)


def _owner_only(path: str, flags: int) -> int:  # a link planted in the run directory: refused
    return os.open(path, flags | os.O_NOFOLLOW, 0o600)


class Kernel:
    _send = staticmethod(zmq.backend.Socket.send)

    def __init__(self, run_dir: Path, console_fd: int) -> None:
        self.run_dir = run_dir
        self.table = ProcTable()
        self.counters: Counter[str] = Counter()
        self.irq_holders: dict[int, set[int]] = {}
        self.alarms: list[tuple[float, int]] = []  # heap of (due, endpoint); lazily pruned
        self.pidfds: dict[int, Proc] = {}
        self.shutting_down = False
        self.started = time.monotonic()  # GETINFO's ticks count from here (params.CLOCK_HZ)
        self.events = events.EventLog(run_dir, "kernel")
        self.audit = events.Audit(self.events)
        self.spawner = Spawner(console_fd, params.TEMPLATE_POOL)
        self.address = "ipc://" + str(run_dir / params.KERNEL_SOCKET)
        self.ctx = zmq.Context()
        routing.seed_routing_ids()  # before any ROUTER: the ids it hands out are not guessable
        self.admission = routing.Admission(self.ctx)
        self.sock = self.ctx.socket(zmq.ROUTER)
        for opt, value in ((zmq.ROUTER_MANDATORY, 1), (zmq.LINGER, 0),
                           (zmq.MAXMSGSIZE, params.MAX_MESSAGE + params.MAX_HEADER),
                           (zmq.RCVHWM, params.SOCKET_HWM), (zmq.SNDHWM, params.SOCKET_HWM)):
            self.sock.setsockopt(opt, value)
        limit = min(params.MAX_CONNECTIONS, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2)
        self.bounded = self.admission.guard(  # before bind; pids: the started, the admitted
            self.sock, "kernel", limit, lambda: {p.pid for p in self.table.live()})
        self.sock.bind(self.address)
        self.operator_key = secrets.token_bytes(32)
        with open(run_dir / (params.OPERATOR_KEY + ".new"), "wb", opener=_owner_only) as f:
            f.write(self.operator_key)  # then renamed: a tool never reads a key half written
        os.replace(run_dir / (params.OPERATOR_KEY + ".new"), run_dir / params.OPERATOR_KEY)
        self.bus = Bus(self, self.ctx, "ipc://" + str(run_dir / params.BUS_SOCKET))
        self.domains = domain.Allocator.claim() if domain.active(run_dir) else None  # as root
        domain.prepare(run_dir, run_dir / params.KERNEL_SOCKET)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.bus.sock, zmq.POLLIN)
        self.guards = (self.admission.sock, self.bounded.monitor, self.bus.bounded.monitor)
        for sock in self.guards:
            self.poller.register(sock, zmq.POLLIN)
        self.wake_r, self.wake_w = socket.socketpair()  # a signal's number arrives here
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
            send(self.sock, hdr, _NB if body is None else _MORE_NB)
            if body is not None:
                send(self.sock, body, _NB)
        except zmq.ZMQError:
            self.count("reply_undeliverable")

    def refuse(self, caller: Proc, call: Call | KCall, target: int,
               err: Err = Err.ECALLDENIED) -> Err:
        """Count and record a call outside the caller's capabilities; return the error to
        answer it with."""
        self.count("denied_" + err.name)
        self.audit.denied(caller.label, caller=caller.endpoint, call=call.name, target=target,
                          error=err.name)
        return err

    # -- processes ------------------------------------------------------------------

    def start(self, a: dict[str, Any], manager: int) -> tuple[int, dict[str, Any]]:
        """Start the process a PRIVCTL or a boot image entry describes (label, module, args,
        privilege; optionally incarnation and a fixed slot), with ``manager`` told of its death."""
        label, module, args = a.get("label"), a.get("module"), a.get("args", [])
        priv = Priv.from_wire(a.get("priv"))
        if (type(label) is not str or not 0 < len(label) <= 32 or type(module) is not str
                or type(args) is not list or not all(type(x) is str for x in args) or priv is None):
            return Err.EINVAL, {}
        if (ids := self.domains.ids(label, a.get("uid")) if self.domains else []) is None:
            return Err.EPERM, {}  # a uid outside the components' range, or another label's
        s = self.table.free_slot(system.int_arg(a, "slot", 0))
        if s is None:
            self.count("no_free_slot")
            return Err.EAGAIN, {}
        p = self.table.add(s, label, 0, priv, manager)
        p.credential, p.incarnation = secrets.token_bytes(32), system.int_arg(a, "incarnation", 0) or 0
        p.memory = seg = grant.Segment(label, params.MEMORY_SIZE)
        record: startup.StartupRecord = {"module": module, "args": args, "label": label,
                                          "endpoint": p.endpoint, "credential": p.credential,
                                          "address": self.address, "run_dir": str(self.run_dir),
                                          "incarnation": p.incarnation, "memory_size": seg.size}
        if ids:
            record["domain"] = ids
        if type(q := a.get("priority")) is int and 0 <= q < NR_SCHED_QUEUES:  # set before the drop
            record["priority"] = q
        if s == HW:  # the board: it alone gets the credential for the bus, and its socket
            record["bus"], record["bus_credential"] = self.bus.address, self.bus.expect_board()
            domain.give_board(self.run_dir, ids, args)
        spawned = self.spawner.spawn(record, seg.fd)
        if spawned is None:
            self.table.remove(p)
            seg.close()
            return Err.EAGAIN, {}
        p.pid, p.pidfd = spawned
        p.child = True
        self._watch(p)
        self.log(f"started {label} endpoint {p.endpoint} pid {p.pid}")
        return Err.OK, {"endpoint": p.endpoint, "pid": p.pid}

    def _watch(self, p: Proc) -> None:
        p.started = time.monotonic()
        self.pidfds[p.pidfd] = p
        self.poller.register(p.pidfd, zmq.POLLIN)

    def hello(self, peer: PeerCred | None, ident: bytes, cred: bytes, pid: int,
              label: str | None, wire_priv: dict[str, Any] | None) -> None:
        """Admit a connection: a started process's credential, or the operator key from a
        process of the kernel's own uid (``peer``: what the OS says of the connection)."""
        pid = peer.pid if peer else pid
        for p in self.table.live():
            if p.credential is not None and secrets.compare_digest(p.credential, cred):
                if p.pid != pid:
                    break
                return self._admit(p, ident)
        if (not secrets.compare_digest(cred, self.operator_key) or self.shutting_down
                or peer is None or peer.uid != os.geteuid()):
            return self.count("hello_refused")
        priv, s = Priv.from_wire(wire_priv), self.table.free_slot()
        if priv is None or s is None or not label or len(label) > 32:
            return self.count("hello_refused")
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return self.count("hello_refused")
        p = self.table.add(s, label, pid, priv, manager=NONE)
        p.pidfd = pidfd
        self._watch(p)
        self._admit(p, ident)

    def _admit(self, p: Proc, ident: bytes) -> None:
        p.ident, p.credential = ident, None  # a start-up credential admits once
        self.table.by_ident[ident] = p
        self.answer(p, Err.OK, p.endpoint)

    def reap(self, pidfd: int) -> None:
        p = self.pidfds.get(pidfd)
        if p is None:
            return
        try:
            info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:  # an operator tool: not our child, so no status
            return self.exited(p, 0, 0)
        if info is not None:  # else not dead after all
            signalled = info.si_code != os.CLD_EXITED
            self.exited(p, 0 if signalled else info.si_status, info.si_status if signalled else 0)

    def exited(self, p: Proc, status: int, signo: int) -> None:
        ipc.clear_endpoint(self, p)
        for line, holders in self.irq_holders.items():
            if p.endpoint in holders:
                holders.discard(p.endpoint)
                if not holders:  # no one left to take it (IRQ 0: the board may sleep): mask it
                    self.bus.send(wire.IrqCtl(line, False))
        if p.slot == HW:
            self.bus.board_died()
        else:
            self.bus.send(wire.Gone(p.endpoint))
        self.table.remove(p)
        self.poller.unregister(p.pidfd)
        del self.pidfds[p.pidfd]
        os.close(p.pidfd)
        if isinstance(p.memory, grant.Segment):
            p.memory.close()
        if p.child:  # operator tools come and go unlogged
            how = f"signal {signal.Signals(signo).name}" if signo else f"status {status}"
            self.log(f"{p.label} (endpoint {p.endpoint}, pid {p.pid}) exited with {how}")
        if p.slot == RS and p.child and self.domains:  # RS's guardian, in RS's domain, cannot ask
            self.events.write("fatal", "rs", detail="the Reincarnation Server died")
            self.request_shutdown()
        manager = self.table.lookup(p.manager)
        if manager is not None:
            ipc.kernel_message(self, manager, KMsg.EXIT, {
                "endpoint": p.endpoint, "label": p.label, "pid": p.pid,
                "status": status, "signal": signo})

    # -- the loop -------------------------------------------------------------------

    def handle(self, frames: list[bytes], peer: PeerCred | None = None) -> None:
        ident = frames[0]
        p = self.table.by_ident.get(ident)
        req = codec.decode_request(frames[1:])
        if req is None:
            return self.count("malformed" if p else "unadmitted")
        if req[0] == Call.HELLO:
            return self.hello(peer, ident, *req[1:]) if p is None else self.count("hello_twice")
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

    def set_alarm(self, p: Proc, due: float | None) -> None:
        p.alarm = due
        if due is not None:
            heapq.heappush(self.alarms, (due, p.endpoint))
        if len(self.alarms) > 2 * NR_PROCS:  # replaced alarms linger in the heap: drop them
            self.alarms = [(q.alarm, q.endpoint) for q in self.table.live() if q.alarm]
            heapq.heapify(self.alarms)

    def run_alarms(self) -> int | None:
        """Notify each process whose alarm is due; return the milliseconds to the next one."""
        while self.alarms:
            due, e = self.alarms[0]
            p, left = self.table.lookup(e), due - time.monotonic()
            if p is not None and p.alarm == due and left > 0:
                return int(left * 1000) + 1
            heapq.heappop(self.alarms)
            if p is not None and p.alarm == due:  # else replaced, cancelled or its process gone
                p.alarm = None
                ipc.notify(self, CLOCK, p)
        return None

    def request_shutdown(self) -> None:
        """Tell every process SHUTDOWN; the loop ends once none is left.  Making a process
        that does not exit go is its owner's business (minikern.boot's halt, RS): a process
        the kernel started dies with it in any case (PR_SET_PDEATHSIG)."""
        if self.shutting_down:
            return
        self.log("shutting down")
        self.shutting_down = True
        self.bus.send(wire.Shutdown())
        for p in self.table.live():
            if p.child:
                ipc.kernel_message(self, p, KMsg.SHUTDOWN, {})
            else:  # an operator tool is not part of the system: detach it, do not kill it
                if p.wait is not Wait.READY:
                    self.answer(p, Err.EDEADSRCDST)
                self.exited(p, 0, 0)

    def boot(self, image: list[dict[str, Any]]) -> None:
        """Start the boot image in order, waiting for nothing: when a process may start its
        work is for its manager to say (RS starts the drivers once the board is up)."""
        self.spawner.fill()
        for entry in image:
            manager = entry.get("manager")  # an endpoint (RS's fixed one), told when it dies
            status, _ = self.start(entry, manager if type(manager) is int else NONE)
            if status != Err.OK:
                self.log(f"boot image entry {entry.get('label')!r} not started: {err_name(status)}")

    def run(self, image: list[dict[str, Any]]) -> None:
        for signo in (signal.SIGTERM, signal.SIGINT):  # either asks for the shutdown
            signal.signal(signo, lambda *_: None)  # Python writes its number to the wakeup fd
        signal.set_wakeup_fd(self.wake_w.fileno())
        self.log(f"listening on {self.address} (protocol {PROTO}, pid {os.getpid()})")
        self.boot(image)
        timeout = None
        while True:
            events = dict(self.poller.poll(timeout))
            if events.pop(self.sock, 0):  # one frame a poll: deaths and alarms are never starved
                try:
                    frames, refused, peer = routing.receive(self.sock, self.table.by_ident.__contains__)
                    self.handle(frames, peer) if refused is None else self.count(refused)
                except Exception:  # a kernel bug: say so loudly, but keep serving
                    self.count("kernel_bug")
                    self.log("BUG handling a frame:\n" + traceback.format_exc())
            if events.pop(self.bus.sock, 0):  # a bounded batch: the bus never starves the rest
                for _ in range(params.BUS_BATCH):
                    if not int(self.bus.sock.get(zmq.EVENTS)) & _POLLIN:
                        break
                    frames, refused, _ = routing.receive(self.bus.sock, self.bus.is_board)
                    self.bus.handle(frames) if refused is None else self.count("bus_" + refused)
            if events and [events.pop(s, 0) for s in self.guards] != [0, 0, 0]:
                for domain in self.admission.on_requests(params.ADMISSION_BATCH):
                    self.count(domain + "_connection_refused")
                    if self.counters[domain + "_connection_refused"] == 1:  # logged once
                        self.log(f"{domain} socket full: connections refused (counted)")
            for fd in events:
                if fd == self.wake_r.fileno():
                    self.wake_r.recv(64)
                    self.request_shutdown()
                elif isinstance(fd, int):
                    self.reap(fd)
            timeout = self.run_alarms()
            if self.admission.pending:  # connections not admitted yet: cut those overdue
                timeout = self.admission.sweep(timeout, self.count)
            if self.shutting_down and not self.pidfds:
                break
        self.close()

    def close(self) -> None:
        self.audit.flush()
        self.spawner.close()
        self.admission.close()
        self.sock.close(0)
        self.bus.sock.close(0)
        self.ctx.term()
        for name in (params.KERNEL_SOCKET, params.BUS_SOCKET, params.OPERATOR_KEY,
                     params.KERNEL_PIDFILE):
            (self.run_dir / name).unlink(missing_ok=True)
        self.log("halted; counters " + (" ".join(f"{k}={v}" for k, v in sorted(self.counters.items()))
                                        or "none"))


def main() -> None:
    run_dir = Path(sys.argv[1])
    if (entries := image.decode((run_dir / "boot.image").read_bytes())) is None:
        sys.exit(f"kernel: refused {run_dir / 'boot.image'}: {dict(codec.refused)}")
    with open(run_dir / params.KERNEL_PIDFILE, "w", opener=_owner_only) as f:
        f.write(str(os.getpid()))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # descriptors: connections are bounded
    Kernel(run_dir, sys.stdout.fileno()).run([dict(e) for e in entries])


if __name__ == "__main__":
    main()
