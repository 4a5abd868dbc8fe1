"""One socket cannot starve another: the kernel bounds the work it does per loop turn on
each socket (docs/PROTOCOL.md section 3, "Work per loop turn").

Each turn the kernel takes at most one frame of its own socket and at most
params.BUS_BATCH frames of the bus, and ZeroMQ's ROUTER takes its connections' frames in
turn (fair queueing).  So while one socket, or one connection, is flooded, a process
whose requests are queued on the kernel socket has each of them served after at most one
turn's worth of the flood: BUS_BATCH bus frames, or one frame of the chatty connection.

The tests queue a run of GETINFO requests (each answered at once, with the kernel's
counters as they are at that moment) behind a flood that a process of its own keeps
going, and read the flood's counter in each answer: between two consecutive answers it
grows by at most the bound, and it keeps growing (the flood was going all along, and was
served too).  Order and counts, never wall-clock time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import zmq

from minikern import params
from minikern.cli import REPO_ROOT
from minikern.const import SYSTEM, Call, Err, KCall
from minikern.proto import codec
from tests.conftest import SystemUnderTest, wait_for
from tests.kernel.test_hostile_peers import reap
from tests.kernel.test_routing_ids import alive_and_serving
from tests.kernel.test_wire import admitted_raw, getinfo

pytestmark = pytest.mark.timeout(120)

QUEUED = 40  # GETINFO requests the victim queues at once
UNDER_WAY = 2000  # flood frames counted before the victim queues its requests

# Sends one-part frames to ADDRESS as fast as the socket takes them until stdin closes;
# with a key (argv[2]) it is first admitted as an operator tool (then it is a legitimate,
# very chatty process: every frame after its HELLO is a malformed request, counted).
FLOODER = """
import json, os, sys, threading, zmq
from minikern.proto import codec
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.RECONNECT_IVL, 1)  # the kernel cuts a bus peer that is not the board after
s.connect(sys.argv[1])  # 2 s (params.UNADMITTED_DEADLINE): the flood goes on at once
if len(sys.argv) > 2:
    s.send(codec.encode_hello(open(sys.argv[2], "rb").read(), os.getpid(), "chatty",
                              json.loads(sys.argv[3])))
    assert s.poll(10_000) and codec.decode_reply(s.recv())[0] == 0, "not admitted"
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
print("flooding", flush=True)
while not stop.is_set():
    try:
        s.send(b"\\xc1", zmq.NOBLOCK)  # msgpack's one never-used byte: nothing decodes it
    except zmq.Again:
        s.poll(10, zmq.POLLOUT)
"""


@contextmanager
def flood(*args: str) -> Iterator[None]:
    p = subprocess.Popen([sys.executable, "-c", FLOODER, *args], cwd=REPO_ROOT, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "flooding"
        yield
    finally:
        reap(p)


def queued_round_trips(system: SystemUnderTest, names: tuple[str, ...]) -> list[int]:
    """A HELLO and QUEUED GETINFO requests, all queued before the connection is made, so
    they reach the kernel together (one write, read at once); then the answers: the sum of
    the counters ``names`` in each, in the order the kernel served them."""
    s: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    later = system.run_dir.parent / "later.sock"  # nothing there yet: ZeroMQ keeps trying,
    s.connect("ipc://" + str(later))  # and what is sent meanwhile waits in the socket
    try:
        key = (system.run_dir / params.OPERATOR_KEY).read_bytes()
        s.send(codec.encode_hello(key, os.getpid(), "victim", system.conf.services["client"].priv()))
        for _ in range(QUEUED):
            s.send_multipart([codec.encode_request(Call.SENDREC, SYSTEM),
                              codec.encode_body(KCall.GETINFO, {})])
        later.symlink_to(system.run_dir / params.KERNEL_SOCKET)  # now the kernel, all at once
        assert s.poll(30_000), "the HELLO was never answered"
        assert codec.decode_reply(s.recv())[0] == Err.OK  # type: ignore[index]
        seen = []
        for _ in range(QUEUED):
            assert s.poll(30_000), "a queued request was never served"
            body = codec.decode_body(s.recv_multipart()[1], params.MAX_KERNEL_ANSWER)
            counters = body[1]["counters"]  # type: ignore[index]
            seen.append(sum(int(counters.get(n, 0)) for n in names))
        return seen
    finally:
        s.close(0)
        later.unlink(missing_ok=True)


def served_in_turns(system: SystemUnderTest, names: tuple[str, ...], bound: int) -> None:
    probe, _ = admitted_raw(system, "probe")
    try:
        wait_for(lambda: sum(int(getinfo(probe)["counters"].get(n, 0)) for n in names) >= UNDER_WAY,
                 60, "the flood to get under way")
    finally:
        probe.close(0)
    for _ in range(5):  # the flooder may be between two connections (the kernel cut it)
        seen = queued_round_trips(system, names)
        if seen[-1] > seen[0]:
            break
    steps = [b - a for a, b in zip(seen[:-1], seen[1:], strict=True)]
    assert max(steps) <= bound, f"flood frames served between two queued requests: {steps}"
    assert seen[-1] > seen[0], "the flood was not served meanwhile (or had stopped)"


def test_a_flooded_bus_does_not_starve_the_kernel_socket(system: SystemUnderTest) -> None:
    names = ("bus_unadmitted", "bus_unadmitted_oversized", "bus_routing_id_claimed")
    with flood("ipc://" + str(system.run_dir / params.BUS_SOCKET)):
        served_in_turns(system, names, params.BUS_BATCH)
    alive_and_serving(system)


def test_a_chatty_admitted_process_does_not_starve_another(system: SystemUnderTest) -> None:
    with flood("ipc://" + str(system.run_dir / params.KERNEL_SOCKET),
               str(system.run_dir / params.OPERATOR_KEY),
               json.dumps(system.conf.services["client"].priv())):
        served_in_turns(system, ("malformed",), 1)
    alive_and_serving(system)
