"""No peer chooses, predicts or collides with another's routing id on the kernel's sockets
(docs/PROTOCOL.md, "Connections and routing ids").

libzmq's ROUTER names a peer that does not name itself 0x00 followed by a 32-bit counter,
which starts at a value from the C library's rand(): unseeded, the same in every process,
and never checked against the ids peers named themselves.  A peer that claims the next
ids, then one plain connection, made libzmq assert and the kernel die with SIGABRT.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import zmq

from minikern import params
from minikern.proto import codec
from tests.conftest import SystemUnderTest, wait_for
from tests.kernel.test_wire import admitted_raw, getinfo

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def connections_of_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every claiming connection is the test process's own: not bounded per process here
    (before the system fixture boots the kernel, which reads it)."""
    monkeypatch.setenv("MINIKERN_MAX_CONNECTIONS_PER_PID", "100000")


# What an unseeded process's first rand() calls give: libzmq's generate_random() takes two
# per ROUTER, so the n-th ROUTER a process makes starts at the n-th of these.
_UNSEEDED = ("import ctypes; r = ctypes.CDLL(None).rand; v = [r() for _ in range(2 * {n})];"
             "print(*(((v[i + 1] << 31) | v[i]) & 0xffffffff for i in range(0, 2 * {n}, 2)))")
ROUTERS = 4  # the kernel makes at most this many ROUTERs before the one attacked
CLAIMS = 48  # ids claimed from each predicted start on the kernel socket
EARLIER = 24  # at most this many connections before the attack (the boot, the test's own)


def predicted_starts() -> list[int]:
    out = subprocess.run([sys.executable, "-c", _UNSEEDED.format(n=ROUTERS)],
                         capture_output=True, text=True, check=True).stdout.split()
    return [int(v) for v in out]


def auto_id(n: int) -> bytes:
    return b"\x00" + (n & 0xffffffff).to_bytes(4, "big")


def dealer(address: str, routing_id: bytes | None = None) -> zmq.Socket:  # type: ignore[type-arg]
    s: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if routing_id is not None:
        s.setsockopt(zmq.ROUTING_ID, routing_id)
    s.connect(address)
    return s


@contextmanager
def sockets() -> Iterator[list[zmq.Socket]]:  # type: ignore[type-arg]
    held: list[zmq.Socket] = []  # type: ignore[type-arg]
    try:
        yield held
    finally:
        for s in held:
            s.close(0)


def alive_and_serving(system: SystemUnderTest) -> None:
    """The kernel process is alive and answers a fresh connection's GETINFO."""
    assert system.system.kernel.poll() is None, "the kernel died:\n" + system.console()
    s, _ = admitted_raw(system, "probe")
    try:
        assert any(p["label"] == "echo" for p in getinfo(s)["procs"])
    finally:
        s.close(0)


def attack(system: SystemUnderTest, socket_name: str, claims: list[int],
           counters: tuple[str, ...], earlier: int) -> None:
    """Claim the ids the ROUTER would hand out next (each claiming peer says something, so
    the kernel has attached it), then connect plainly.  The kernel is watched through a
    connection admitted before: a plain connection made during the attack would be one
    more victim."""
    address = "ipc://" + str(system.run_dir / socket_name)
    probe, _ = admitted_raw(system, "probe")

    def seen() -> int:  # frames the kernel dropped from the attackers; huge once it is dead
        if system.system.kernel.poll() is not None:
            return 1 << 30
        got = getinfo(probe)["counters"]
        return sum(int(got.get(c, 0)) for c in counters)

    with sockets() as held:
        held.append(probe)
        before = seen()
        for n in claims:  # the first few may be taken already: refused as duplicates
            held.append(dealer(address, auto_id(n)))
            held[-1].setsockopt(zmq.RECONNECT_IVL, 60_000)  # once refused, it stays away
            held[-1].send(b"claim")
        wait_for(lambda: seen() >= before + len(claims) - earlier, 20,
                 "the kernel to take the claiming connections' frames")
        held.append(dealer(address))
        held[-1].send(b"plain")
        wait_for(lambda: seen() > before + len(claims) - earlier, 20,
                 "the kernel to take the plain connection's frame (or die)")
        assert system.system.kernel.poll() is None, "the kernel died:\n" + system.console()
        assert any(p["label"] == "echo" for p in getinfo(probe)["procs"])
    alive_and_serving(system)


@pytest.mark.timeout(120)
def test_claiming_the_next_ids_on_the_bus_does_not_abort_the_kernel(
        system: SystemUnderTest) -> None:
    """Past its few connections the bus refuses the claimants; those it takes are dropped."""
    claims = predicted_starts()  # no board in this boot: the next id is the start itself
    attack(system, params.BUS_SOCKET, claims[:params.MAX_BUS_CONNECTIONS - 1], (
        "bus_malformed", "bus_routing_id_claimed", "bus_unadmitted", "bus_connection_refused"), 0)


@pytest.mark.timeout(120)
def test_claiming_the_next_ids_on_the_kernel_socket_does_not_abort_the_kernel(
        system: SystemUnderTest) -> None:
    claims = [start + n for start in predicted_starts() for n in range(CLAIMS)]
    attack(system, params.KERNEL_SOCKET, claims, ("unadmitted", "routing_id_claimed"), EARLIER)


@pytest.mark.timeout(60)
def test_a_peer_that_names_itself_is_never_admitted(system: SystemUnderTest) -> None:
    """A connection that chose its routing id gets no answer to a valid operator HELLO,
    and the refusal is counted: every admitted identity is one the kernel's ROUTER gave."""
    key = (system.run_dir / params.OPERATOR_KEY).read_bytes()
    hello = codec.encode_hello(key, os.getpid(), "named",
                               system.conf.services["client"].priv())
    with sockets() as held:
        held.append(dealer("ipc://" + str(system.run_dir / params.KERNEL_SOCKET), b"operator"))
        held[-1].send(hello)
        assert not held[-1].poll(1000), "a self-named peer was answered"
    assert system.info()["counters"]["routing_id_claimed"] >= 1
    plain, endpoint = admitted_raw(system, "plain")
    try:
        assert endpoint > 0
        plain.send(codec.encode_bye())
    finally:
        plain.close(0)
