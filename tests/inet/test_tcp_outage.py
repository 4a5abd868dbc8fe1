"""TCP across a replaced NIC driver, on the in-memory wire and a fake clock.

While INET's driver is being replaced, what TCP sent waits in INET's queue
(``output_held``: timeouts only back off), and the peer's ACKs that arrive
meanwhile are lost with the old driver.  When the new driver is up, INET
calls ``interface_back``: every connection resends its head as a probe, so the
flow resumes within a round trip of the driver's return, not after an RTO
that the outage backed off (services/inet/stack/tcp_send.py)."""
from __future__ import annotations

import hashlib
import random

from services.inet.stack.tcp_rto import RTO_MIN
from tests.inet.wire import LATENCY, Transfer, Wire

OUTAGE = 0.6  # fake seconds the driver is away: longer than the RTO, so timeouts are held


class Outage:
    """Side A's driver dies: A's frames are held (INET's queue), B's frames to A are lost."""

    def __init__(self, w: Wire) -> None:
        self.w, self.on, self.lost = w, False, 0
        self.held: list[bytes] = []
        w.filters.append(self.filter)
        w.a.output_held = lambda: self.on

    def filter(self, src: int, frame: bytes) -> bool:
        if not self.on:
            return False
        if src == 0:
            self.held.append(frame)
        else:
            self.lost += 1
        return True

    def end(self, probe: bool) -> None:
        """The new driver is up: INET resends what it held (and, with ``probe``, tells TCP)."""
        self.on = False
        held, self.held = self.held, []
        for frame in held:
            self.w._send(0, frame)
        if probe:
            self.w.a.tcp.interface_back(self.w.clock.now)


def stall_after_outage(probe: bool) -> tuple[float, dict[str, int]]:
    """Fake seconds from the driver's return until A's last flight is acknowledged.

    The case the probe is for: the old driver transmitted everything A had sent (nothing
    is held for the new one to resend), then died, and the ACKs for that flight were lost
    with it."""
    w = Wire()
    client, server = w.connect_pair()
    data = random.Random(5).randbytes(100_000)
    t = Transfer(client, server, data, close=False)
    w.run(lambda: t.offset == len(data) and client.sender.snd_nxt == client.sender.data_end,
          step=t.step)  # the last flight is on the wire
    outage = Outage(w)
    outage.on = True
    start = w.clock.now
    w.run(lambda: w.clock.now >= start + OUTAGE, step=t.step, timeout=OUTAGE + 1)
    assert outage.lost > 0 and client.sender.timeouts_held > 0  # the outage was felt
    assert client.sender.snd_una != client.sender.snd_max
    back = w.clock.now
    outage.end(probe)
    w.run(lambda: client.sender.snd_una == client.sender.snd_max, step=t.step, timeout=30)
    stall = w.clock.now - back
    w.run(lambda: len(t.received) == len(data), step=t.step, timeout=10)
    assert hashlib.sha256(t.received).digest() == hashlib.sha256(data).digest()
    return stall, client.counters()


def test_the_flow_resumes_within_a_round_trip_of_the_drivers_return() -> None:
    stall, counters = stall_after_outage(probe=True)
    assert stall < RTO_MIN  # a round trip (2 * LATENCY on this wire), not a timeout
    assert stall <= 4 * LATENCY
    assert counters["outage_probes"] == 1 and counters["timeouts"] == 0  # no cwnd collapse


def test_without_the_probe_it_waits_for_the_backed_off_timeout() -> None:
    """The case the probe exists for: the same outage, INET not telling TCP."""
    stall, counters = stall_after_outage(probe=False)
    assert stall >= RTO_MIN and counters["outage_probes"] == 0
