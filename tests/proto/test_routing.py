"""The kernel's ZAP handler (minikern/proto/routing.py) without a kernel: a socket's open
connections stay within its bound, the excess is refused and reported, and a request
that is not ZAP 1.0 is dropped unanswered (docs/PROTOCOL.md section 3)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from minikern.proto import routing
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(30)

LIMIT = 2


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    c: zmq.Context[Any] = zmq.Context()
    yield c
    c.destroy(linger=0)


def test_connections_past_the_bound_are_refused(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    admission = routing.Admission(ctx)
    router = ctx.socket(zmq.ROUTER)
    admission.guard(router, "kernel", LIMIT)
    address = f"ipc://{tmp_path}/r.sock"
    router.bind(address)
    peers = []
    for i in range(LIMIT + 3):
        d = zmq.Context.instance().socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 0)
        d.setsockopt(zmq.RECONNECT_IVL, 60_000)  # refused: stays away
        d.connect(address)
        d.send(b"%d" % i)
        peers.append(d)
    refused: list[str] = []
    heard: set[bytes] = set()

    def settled() -> bool:
        refused.extend(admission.on_requests(64))
        while router.poll(0):
            heard.add(router.recv_multipart()[1])
        return len(refused) + len(heard) == LIMIT + 3

    try:
        # Counted from the monitor, a burst's connections are all open when their requests
        # are answered: more may be refused than the bound needs, never fewer.
        wait_for(settled, 10, "every connection taken or refused")
        assert len(heard) <= LIMIT and set(refused) == {"kernel"}
    finally:
        for d in peers:
            d.close(0)
        admission.close()
        router.close(0)


def test_a_request_that_is_not_zap_is_dropped(ctx: zmq.Context[Any]) -> None:
    admission = routing.Admission(ctx)
    asker = ctx.socket(zmq.DEALER)
    asker.connect(routing.ZAP_ENDPOINT)
    try:
        asker.send_multipart([b"", b"2.0", b"1", b"kernel", b"", b"", b"NULL"])
        asker.send_multipart([b"", b"1.0"])
        wait_for(lambda: admission.on_requests(64) == [] and not admission.sock.poll(0), 5,
                 "the requests to be taken")
        assert not asker.poll(200), "a request that is not ZAP 1.0 was answered"
    finally:
        asker.close(0)
        admission.close()


def test_a_wakeup_by_the_monitor_alone_drains_it(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    """The kernel polls the monitors too and calls on_requests when one is readable: with no
    request waiting, the events must still be read, or the monitor stays readable and the
    kernel's poll returns at once, over and over (a spinning kernel: recovery under load
    took twice as long until the next sweep or request drained it)."""
    admission = routing.Admission(ctx)
    router = ctx.socket(zmq.ROUTER)
    bounded = admission.guard(router, "kernel", LIMIT)
    address = f"ipc://{tmp_path}/r.sock"
    router.bind(address)
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    try:
        d.connect(address)
        d.send(b"hi")

        def heard() -> bool:
            admission.on_requests(64)
            return bool(router.poll(0))
        wait_for(heard, 10, "the connection admitted")
        wait_for(lambda: admission.on_requests(64) == [] and not bounded.monitor.poll(0), 10,
                 "the accept read")
        d.close(0)
        wait_for(lambda: bounded.monitor.poll(0), 10, "the disconnect on the monitor")
        assert admission.on_requests(64) == []  # woken by the monitor, no request waiting
        assert not bounded.monitor.poll(0), "the monitor's events were left unread"
    finally:
        d.close(0)
        admission.close()
        router.close(0)
