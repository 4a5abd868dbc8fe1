"""TCP's retransmission timer against RFC 6298's numbers (not the module's constants), driven
through the sender on a fake clock: the initial RTO, the estimator's formulas, the floor
(the README: 200 ms, as Linux, instead of the RFC's 1 s), backoff, and Karn's rule (no
round-trip sample from a segment that was sent more than once)."""
from __future__ import annotations

import pytest

from services.inet.stack.tcp_rto import RtoEstimator
from services.inet.stack.tcp_segment import SYN
from services.inet.stack.tcp_send import Emit, Sender

INITIAL_RTO = 1.0  # RFC 6298 2.1: "set RTO <- 1 second" before any sample
RTO_FLOOR = 0.2  # the README: a 200 ms floor (RFC 6298 2.4 would say 1 s)
MAX_AT_LEAST = 60.0  # RFC 6298 2.5: a maximum MAY be placed, "provided it is at least 60 s"
ISS, PEER_SEQ, MSS, WINDOW = 1000, 5000, 1000, 65535

Sent = list[tuple[float, int, int, bytes]]


def connected(sent: Sent, clock: list[float]) -> tuple[Sender, Emit]:
    """A sender whose SYN went out at t=0; the caller decides when (or whether) it is acked."""
    s = Sender(ISS, MSS)

    def emit(seq: int, flags: int, payload: bytes | bytearray | memoryview) -> None:
        sent.append((clock[0], seq, flags, bytes(payload)))
    s.output(clock[0], emit)
    return s, emit


def test_the_first_rto_is_one_second() -> None:
    assert RtoEstimator().rto == INITIAL_RTO
    sent: Sent = []
    s, _ = connected(sent, [0.0])
    assert [(t, flags & SYN) for t, _, flags, _ in sent] == [(0.0, SYN)]
    assert s.next_deadline() == pytest.approx(INITIAL_RTO)


def test_samples_follow_the_rfc_formulas() -> None:
    est = RtoEstimator()
    est.sample(0.5)  # 2.2: SRTT <- R, RTTVAR <- R/2, RTO <- SRTT + max(G, K*RTTVAR), K = 4
    assert est.rto == pytest.approx(0.5 + 4 * 0.25)
    est.sample(0.9)  # 2.3: beta = 1/4, alpha = 1/8
    rttvar = 0.75 * 0.25 + 0.25 * abs(0.5 - 0.9)
    srtt = 0.875 * 0.5 + 0.125 * 0.9
    assert est.rto == pytest.approx(srtt + 4 * rttvar)


def test_the_rto_never_falls_below_200_ms() -> None:
    est = RtoEstimator()
    est.sample(0.010)  # 10 ms: RFC's formula alone would give 40 ms
    assert est.rto == pytest.approx(RTO_FLOOR)
    for _ in range(50):
        est.sample(0.0001)
    assert est.rto == pytest.approx(RTO_FLOOR)


def test_a_timeout_doubles_the_rto_up_to_a_maximum_of_at_least_60_s() -> None:
    est = RtoEstimator()
    est.backoff()
    assert est.rto == pytest.approx(2 * INITIAL_RTO)  # 5.5: RTO <- RTO * 2
    for _ in range(20):
        est.backoff()
    assert est.rto >= MAX_AT_LEAST


def test_karn_no_sample_from_a_retransmitted_syn() -> None:
    clock: list[float] = [0.0]
    sent: Sent = []
    s, emit = connected(sent, clock)
    clock[0] = 1.0  # the first RTO expires: the SYN goes out again, the RTO backs off to 2 s
    assert s.on_timer(clock[0], emit)
    assert [t for t, *_ in sent] == [0.0, 1.0]
    clock[0] = 1.05  # the ACK: for the first SYN (RTT 1.05) or the second (0.05)? Unknowable,
    s.on_ack(PEER_SEQ, ISS + 1, WINDOW, True, clock[0], emit)
    assert s.rto.rto == pytest.approx(2 * INITIAL_RTO)  # so no sample: it stays backed off
    # A segment sent once is timed again (6298 5.7: the next valid sample replaces the RTO).
    s.write(b"x" * 100)
    clock[0] = 2.0
    s.output(clock[0], emit)
    clock[0] = 2.5
    s.on_ack(PEER_SEQ, ISS + 1 + 100, WINDOW, True, clock[0], emit)
    assert s.rto.rto == pytest.approx(0.5 + 4 * 0.25)


def test_karn_no_sample_from_retransmitted_data() -> None:
    clock: list[float] = [0.0]
    sent: Sent = []
    s, emit = connected(sent, clock)
    clock[0] = 0.1
    s.on_ack(PEER_SEQ, ISS + 1, WINDOW, True, clock[0], emit)
    after_syn = s.rto.rto  # one sample of 100 ms taken from the SYN sent once
    assert after_syn == pytest.approx(max(RTO_FLOOR, 0.1 + 4 * 0.05))
    s.write(b"y" * 100)
    s.output(clock[0], emit)
    clock[0] = 0.1 + after_syn  # lost: it times out and is sent again
    assert s.on_timer(clock[0], emit)
    assert sent[-1][1] == ISS + 1 and len(sent) == 3
    clock[0] += 0.02
    s.on_ack(PEER_SEQ, ISS + 1 + 100, WINDOW, True, clock[0], emit)
    assert s.rto.rto == pytest.approx(2 * after_syn)  # backed off, not re-estimated


def test_karn_no_sample_from_a_retransmission_that_carries_new_data_too() -> None:
    """After a timeout the resent segment may run past what was ever sent (more was queued
    meanwhile); its ACK is still ambiguous for the part sent twice, so it is not timed."""
    clock: list[float] = [0.0]
    sent: Sent = []
    s, emit = connected(sent, clock)
    clock[0] = 0.1
    s.on_ack(PEER_SEQ, ISS + 1, WINDOW, True, clock[0], emit)
    after_syn = s.rto.rto
    s.write(b"a" * 100)
    s.output(clock[0], emit)
    s.write(b"b" * 100)  # queued while the first segment is in flight, not sent yet
    clock[0] = 0.1 + after_syn
    assert s.on_timer(clock[0], emit)
    assert (sent[-1][1], len(sent[-1][3])) == (ISS + 1, 200)  # old and new bytes in one
    clock[0] += 0.02
    s.on_ack(PEER_SEQ, ISS + 1 + 200, WINDOW, True, clock[0], emit)
    assert s.rto.rto == pytest.approx(2 * after_syn)
