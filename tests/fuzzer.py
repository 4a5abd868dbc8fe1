"""Hypothesis strategies for every frame kind the kernel and the board read from a socket,
and a ``Fuzzer`` that sends them to a booted system and checks after each example that
the kernel and the board still serve a legitimate round trip.

Used by tests/kernel/test_fuzz_sockets.py (a modest number of examples, in the suite) and
by ``bin/bench fuzz`` (a longer run that reports frames sent per kind, refusals counted
and the kernel's state after).  Frame kinds (docs/PROTOCOL.md sections 3-11):

- ``trap:<Call>``: a request header of every trap (HELLO on a connection not admitted yet,
  the rest on an admitted one), its arguments well formed but wrong, or of wrong types;
- ``kcall:<KCall>``: a SENDREC to SYSTEM whose body names each kernel call, its argument
  map drawn from the call's own keys and from anything;
- ``bus:<Verb>``: a bus frame of every verb, from a peer that is not the board;
- ``fastpath:<Op>``: a frame of every op of the board's attach socket (ATTACH is the
  only one: port I/O goes through the ring), and ``fastpath:unattached`` a frame of
  any op on it;
- ``ring``: raw request slots written into an attached driver's ring, then its bell;
- ``control``: a board control line.

Each message may then be mangled: truncated msgpack, a part replaced by a huge one, extra
parts.  The fuzzing connection holds a driver's privileges but not KILL, PRIVCTL or
SHUTDOWN: a fuzzed call of those must be refused (ECALLDENIED), never carried out.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import zmq
from hypothesis import strategies as st

from minikern import devio, params, sysconf
from minikern.boardctl import BoardCtl
from minikern.const import ANY, PROTO, SYSTEM, Call, Err, KCall
from minikern.proto import bus, codec, fastpath, ring

FUZZ_CONF = """
service fuzzer { system GETINFO SETALARM SETGRANT REVOKE SAFECOPYFROM SAFECOPYTO DEVIO VDEVIO
                        SDEVIO IRQCTL IOMAP; ipc ALL; io 0x3f8:8; irq 4; };
"""
PRIV = sysconf.parse(FUZZ_CONF).services["fuzzer"].priv()
SCRATCH = 0x3FF  # the UART's scratch register: the board's legitimate round trip
DEADLINE = 10.0  # seconds a legitimate round trip may take on a loaded machine
READ_S = 0.02  # seconds an example waits for what the fuzzed peer is answered

KCALL_KEYS: dict[KCall, tuple[str, ...]] = {
    KCall.PRIVCTL: ("label", "module", "args", "priv", "incarnation", "slot"),
    KCall.KILL: ("endpoint", "signal"),
    KCall.GETINFO: (),
    KCall.SETALARM: ("ms",),
    KCall.IRQCTL: ("op", "irq"),
    KCall.DEVIO: ("port", "size", "value"),
    KCall.VDEVIO: ("ops",),
    KCall.SDEVIO: ("port", "size", "count", "data"),
    KCall.IOMAP: (),
    KCall.SETGRANT: ("grantee", "offset", "length", "access"),
    KCall.REVOKE: ("grant",),
    KCall.SAFECOPYFROM: ("granter", "grant", "goffset", "offset", "length"),
    KCall.SAFECOPYTO: ("granter", "grant", "goffset", "offset", "length"),
    KCall.SHUTDOWN: ("reason",),
}
KINDS = ([f"trap:{c.name}" for c in Call] + [f"kcall:{k.name}" for k in KCall]
         + [f"bus:{v.name}" for v in bus.Verb] + [f"fastpath:{o.name}" for o in fastpath.Op]
         + ["fastpath:unattached", "ring", "control"])

# -- values ---------------------------------------------------------------------------

INTS = st.one_of(st.integers(-300, 70_000), st.sampled_from(
    [0, -1, -2, -3, ANY, 1 << 15, (1 << 31) - 1, 1 << 31, 1 << 32, (1 << 63) - 1, -(1 << 63),
     (1 << 64) - 1]))
SCALARS = st.one_of(INTS, st.none(), st.booleans(), st.floats(), st.text(max_size=24),
                    st.binary(max_size=48))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)),
    max_leaves=24)
HUGE = st.sampled_from([70_000, 300_000, 1 << 20, (1 << 20) + 1, 3 << 20])


def args_for(draw: st.DrawFn, keys: tuple[str, ...]) -> Any:
    """A kernel call's argument map: its own keys (some left out) with any values, and
    now and then a key of no call, or no map at all."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(VALUES)
    fields = {k: draw(VALUES) for k in keys if draw(st.booleans())}
    if choice == 1:
        fields.update(draw(st.dictionaries(st.text(max_size=8), VALUES, max_size=3)))
    return fields


@st.composite
def mangled(draw: st.DrawFn, parts: list[bytes]) -> list[bytes]:
    """A message as sent: as built, or with one part truncated, replaced by a huge one, or
    followed by extra parts."""
    how = mostly(draw, "as is", st.sampled_from(["truncated", "huge", "extra", "empty"]))
    parts = list(parts)
    i = draw(st.integers(0, len(parts) - 1))
    if how == "truncated" and len(parts[i]) > 1:
        parts[i] = parts[i][:draw(st.integers(0, len(parts[i]) - 1))]
    elif how == "huge":  # the last part: libzmq (4.3.5) asserts in a sender whose peer
        # closes the connection on an oversized part while later parts of it are queued
        parts[-1] = b"\x91" * draw(HUGE)  # nested msgpack arrays, as deep as it is long
    elif how == "extra":
        parts += draw(st.lists(st.binary(max_size=32), min_size=1, max_size=4))
    elif how == "empty":
        parts[i] = b""
    return parts


@st.composite
def frames(draw: st.DrawFn, kind: str) -> list[list[bytes]]:
    """One to four messages of ``kind`` (each a list of parts)."""
    return [draw(mangled(draw(_message(kind)))) for _ in range(draw(st.integers(1, 4)))]


ARITY = {Call.SEND: 1, Call.RECEIVE: 1, Call.SENDREC: 1, Call.NOTIFY: 1, Call.SENDNB: 1,
         Call.REPLYRECV: 2, Call.CANCEL: 0, Call.HELLO: 4, Call.BYE: 0}
WITH_BODY = {Call.SEND, Call.SENDREC, Call.SENDNB, Call.REPLYRECV}


def mostly(draw: st.DrawFn, right: Any, wrong: st.SearchStrategy[Any]) -> Any:
    """``right`` three times in four, else anything ``wrong`` draws: frames well formed but
    for one field reach further into the receiver than frames wrong everywhere."""
    return right if draw(st.integers(0, 3)) else draw(wrong)


@st.composite
def _message(draw: st.DrawFn, kind: str) -> list[bytes]:
    family, name = kind.split(":") if ":" in kind else (kind, "")
    proto = mostly(draw, PROTO, st.sampled_from([PROTO + 1, 0, "MK", None]))
    if family == "trap":
        call = Call[name]
        n = mostly(draw, ARITY[call], st.integers(0, 6))
        if call == Call.HELLO and n == 4:
            args = [draw(st.binary(min_size=0, max_size=40)), draw(INTS),
                    draw(st.one_of(st.none(), st.text(max_size=40))), draw(VALUES)]
        else:
            args = [mostly(draw, draw(INTS), VALUES) for _ in range(n)]
        body = ([codec.pack([draw(INTS), draw(VALUES)])]
                if mostly(draw, call in WITH_BODY, st.booleans()) else [])
        return [codec.pack([proto, int(call), *args]), *body]
    if family == "kcall":
        kcall = KCall[name]
        return [codec.pack([proto, int(Call.SENDREC), SYSTEM]),
                codec.pack([int(kcall), args_for(draw, KCALL_KEYS[kcall])])]
    if family == "bus":
        verb = mostly(draw, int(bus.Verb[name]), INTS)
        tag = mostly(draw, "MKBUS", st.sampled_from(["MKFP", "", None]))
        return [codec.pack([tag, mostly(draw, 1, INTS), verb,
                            *draw(st.lists(VALUES, max_size=5))])]
    if family == "ring":  # raw words for the request slots of an attached driver's ring
        return [struct.pack("<QQ", draw(st.integers(0, 2**64 - 1)),
                            draw(st.integers(0, 2**64 - 1)))
                for _ in range(draw(st.integers(1, 8)))]
    if family == "fastpath":
        op = int(fastpath.Op[name]) if name != "unattached" else draw(INTS)
        tag = mostly(draw, "MKFP", st.sampled_from(["MKBUS", "", None]))
        fields = draw(st.lists(st.one_of(INTS, INTS, VALUES), max_size=5))
        return [codec.pack([tag, mostly(draw, 1, INTS), op, *fields])]
    line = draw(st.one_of(
        st.builds(lambda verb, knob, value: json.dumps(
            {"proto": "MKCTL", "version": 1, "verb": verb, "knob": knob, "value": value},
            default=repr).encode(),
            st.sampled_from(["stats", "set", "get", ""]),
            st.one_of(st.text(max_size=16), st.sampled_from(["ata.bad_sectors", "nic.link"])),
            VALUES),
        st.binary(max_size=200)))
    return [line.replace(b"\n", b" ") + b"\n"]


# -- the peer -------------------------------------------------------------------------

def _raw(address: str) -> zmq.Socket[bytes]:
    s: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    s.connect(address)
    return s


class Fuzzer:
    """Sends fuzzed frames to the system in ``run_dir`` (its board included), counts them
    per kind, and checks the system after each example (``check``)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.kernel = "ipc://" + str(run_dir / params.KERNEL_SOCKET)
        self.key = (run_dir / params.OPERATOR_KEY).read_bytes()
        self.kernel_pid = int((run_dir / params.KERNEL_PIDFILE).read_text())
        self.sent: Counter[str] = Counter()
        self.legit = self.admitted("legit")
        self.channel = self._attach(self.legit)
        self.before = self.counters()

    # the legitimate peers

    def admitted(self, label: str) -> zmq.Socket[bytes]:
        s = _raw(self.kernel)
        s.send(codec.encode_hello(self.key, os.getpid(), label, PRIV))
        if not s.poll(int(DEADLINE * 1000)):
            s.close(0)
            raise AssertionError("the kernel did not admit a legitimate connection")
        status, *_ = codec.decode_reply(s.recv()) or (Err.EINVAL,)
        if status != Err.OK:
            s.close(0)
            raise AssertionError(f"the kernel refused a legitimate connection: {status}")
        return s

    def kcall(self, s: zmq.Socket[bytes], call: KCall, **args: Any) -> Any:
        s.send_multipart([codec.encode_request(Call.SENDREC, SYSTEM), codec.encode_body(call, args)])
        if not s.poll(int(DEADLINE * 1000)):
            raise AssertionError(f"the kernel did not answer {call.name}")
        reply = s.recv_multipart()
        body = codec.decode_body(reply[1], params.MAX_KERNEL_ANSWER) if len(reply) == 2 else None
        if body is None:
            raise AssertionError(f"{call.name}: no kernel answer but {reply!r:.200}")
        return body

    def _attach(self, s: zmq.Socket[bytes]) -> devio.Channel:
        status, r = self.kcall(s, KCall.IOMAP)
        if status != Err.OK:
            raise AssertionError(f"IOMAP refused: {status}")
        return devio.Channel(r["path"], r["token"])

    def check(self) -> None:
        """The kernel and the board each serve a legitimate round trip (within DEADLINE)."""
        if not psutil.pid_exists(self.kernel_pid):
            raise AssertionError("the kernel died")
        status, info = self.kcall(self.legit, KCall.GETINFO)
        assert status == Err.OK and any(p["label"] == "hw" for p in info["procs"])
        value = self.sent.total() & 0xFF
        self.channel.outb(SCRATCH, value)
        assert self.channel.inb(SCRATCH) == value, "the board's fast path answered wrong"

    # the fuzzed peers

    def send(self, kind: str, messages: list[list[bytes]]) -> None:
        family = kind.split(":")[0]
        if kind == "trap:HELLO":
            self._to_zmq(self.kernel, messages)
        elif family in ("trap", "kcall"):
            s = self.admitted("fuzzer")
            try:
                self._to(s, messages)
            finally:
                s.send(codec.encode_bye())
                s.close(100)
        elif family == "bus":
            self._to_zmq("ipc://" + str(self.run_dir / params.BUS_SOCKET), messages)
        elif family == "fastpath":  # the attach socket: what it reads before a ring exists
            self._to_board(messages)
        elif family == "ring":
            s = self.admitted("fuzzer")
            try:
                self._to_ring(self._attach(s), messages)
            finally:
                s.send(codec.encode_bye())
                s.close(100)
        else:
            self._to_control(messages)
        self.sent[kind] += len(messages)

    def _to_zmq(self, address: str, messages: list[list[bytes]]) -> None:
        s = _raw(address)
        try:
            self._to(s, messages)
        finally:
            s.close(0)

    @staticmethod
    def _to(s: zmq.Socket[bytes], messages: list[list[bytes]]) -> None:
        for parts in messages:
            s.send_multipart(parts)
        end = time.monotonic() + READ_S
        while s.poll(max(int((end - time.monotonic()) * 1000), 0)):
            s.recv_multipart()  # what the kernel answers: anything, or nothing

    @staticmethod
    def _to_ring(ch: devio.Channel, messages: list[list[bytes]]) -> None:
        """Raw request slots, written as a driver writes them (value first, head last) from
        the ring's next slot on, then the bell: the board must refuse what is malformed or
        outside the windows, and serve the legitimate channel after."""
        try:
            for slots in messages:
                for k, slot in enumerate(slots):
                    # mangled() may have cut or grown the slot: two words of whatever is there
                    head, value = struct.unpack("<QQ", (bytes(slot) + bytes(16))[:16])
                    i = ring.W_REQUESTS + (((ch.seq + k) & ring.MASK) << 1)
                    ch.words[i + 1] = value
                    ch.words[i] = head
                with contextlib.suppress(OSError):
                    ch.bell.send(b"\1", socket.MSG_DONTWAIT)
                time.sleep(READ_S / 10)  # the board reads them (or not) meanwhile
        finally:
            ch.close()

    def _to_board(self, messages: list[list[bytes]]) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(str(self.run_dir / "board.sock"))
            sock.settimeout(READ_S)
            for parts in messages:
                try:
                    sock.send(b"".join(parts))
                    sock.recv(1 << 20)
                except OSError:  # refused and closed, too big to send, or no answer
                    pass
        finally:
            sock.close()

    def _to_control(self, messages: list[list[bytes]]) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self.run_dir / "board.ctl"))
            sock.settimeout(READ_S)
            try:
                sock.sendall(b"".join(b"".join(parts) for parts in messages))
                sock.recv(1 << 16)
            except OSError:
                pass

    # the report

    def counters(self) -> dict[str, Counter[str]]:
        _, info = self.kcall(self.legit, KCall.GETINFO)
        with BoardCtl(self.run_dir) as ctl:
            stats = ctl.stats()
        board: Counter[str] = Counter(stats.get("refused", {}))
        board.update({"fastpath_" + k: v for k, v in stats.get("fastpath", {}).items()})
        board.update({k: v for k, v in stats.items() if type(v) is int and "malformed" in k})
        return {"kernel": Counter(info["counters"]), "board": board}

    def state(self) -> dict[str, Any]:
        """Frames sent per kind, refusals counted since the start, the kernel's state."""
        after = self.counters()
        refused = {side: {k: v - self.before[side].get(k, 0) for k, v in sorted(after[side].items())
                          if v != self.before[side].get(k, 0) and _is_refusal(k)}
                   for side in after}
        kernel = psutil.Process(self.kernel_pid)
        return {"sent": dict(sorted(self.sent.items())), "frames": self.sent.total(),
                "refused": refused, "alive": kernel.is_running(),
                "rss_mib": round(kernel.memory_info().rss / (1 << 20), 1),
                "connections": len(kernel.net_connections(kind="unix")),
                "fds": kernel.num_fds()}

    def close(self) -> None:
        self.channel.close()
        self.legit.send(codec.encode_bye())
        self.legit.close(100)


def _is_refusal(counter: str) -> bool:
    return not counter.startswith(("fastpath_attached", "fastpath_channels"))


def run_examples(fuzzer: Fuzzer, examples: int, seed: int | None = None, kind: str | None = None,
                 on_example: Callable[[str], None] | None = None) -> None:
    """Fuzz with Hypothesis (every kind, or ``kind`` alone), ``examples`` examples in all,
    checking the system after each."""
    kinds = KINDS if kind is None else [kind]
    from hypothesis import HealthCheck, given, seed as fix_seed, settings

    @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(st.data())
    def one(data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(kinds), label="kind")
        fuzzer.send(kind, data.draw(frames(kind), label="frames"))
        fuzzer.check()
        if on_example is not None:
            on_example(kind)

    (fix_seed(seed)(one) if seed is not None else one)()
