"""The stack's building blocks on their own: checksum, sequence arithmetic, RTO estimator, state table."""
from __future__ import annotations

import random

import pytest

from services.inet.stack.checksum import checksum, ones_sum, verify
from services.inet.stack.tcp_rto import RTO_INITIAL, RTO_MAX, RTO_MIN, RtoEstimator
from services.inet.stack.tcp_seq import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt
from services.inet.stack.tcp_state import TcpEvent, TcpState, transition


def slow_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum((data[i] << 8) | data[i + 1] for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_checksum_rfc1071_example() -> None:
    data = bytes([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7])
    assert ones_sum(data) == 0xDDF2
    assert checksum(data) == 0x220D


@pytest.mark.parametrize("length", [0, 1, 2, 3, 20, 1459, 1460, 1500])
def test_checksum_matches_word_by_word_reference(length: int) -> None:
    rng = random.Random(length)
    for _ in range(50):
        data = rng.randbytes(length)
        assert checksum(data) == slow_checksum(data)
    assert checksum(b"\xff\xff" * 4) == slow_checksum(b"\xff\xff" * 4)


def test_checksum_verifies_its_own_result() -> None:
    data = bytearray(random.Random(1).randbytes(40))
    data[10:12] = b"\0\0"
    data[10:12] = checksum(data).to_bytes(2, "big")
    assert verify(data)
    data[3] ^= 0x40
    assert not verify(data)


def test_sequence_comparisons_wrap_modulo_2_32() -> None:
    top = 2**32 - 10
    assert seq_add(top, 20) == 10
    assert seq_lt(top, 10) and seq_gt(10, top)
    assert seq_le(top, top) and seq_ge(top, top)
    assert seq_diff(10, top) == 20 and seq_diff(top, 10) == -20
    assert seq_lt(0, 2**31 - 1) and seq_gt(0, 2**31 + 1)


def test_rto_follows_rfc6298() -> None:
    est = RtoEstimator()
    assert est.rto == RTO_INITIAL
    est.sample(0.5)
    assert est.srtt == 0.5 and est.rttvar == 0.25
    assert est.rto == pytest.approx(0.5 + 4 * 0.25)
    est.sample(0.1)
    assert est.rttvar == pytest.approx(0.75 * 0.25 + 0.25 * 0.4)
    assert est.srtt == pytest.approx(0.875 * 0.5 + 0.125 * 0.1)
    for _ in range(100):
        est.sample(0.001)
    assert est.rto == RTO_MIN
    for _ in range(20):
        est.backoff()
    assert est.rto == RTO_MAX


def test_state_table() -> None:
    assert transition(TcpState.CLOSED, TcpEvent.ACTIVE_OPEN) is TcpState.SYN_SENT
    assert transition(TcpState.FIN_WAIT_1, TcpEvent.RCV_FIN) is TcpState.CLOSING
    assert transition(TcpState.CLOSING, TcpEvent.RCV_ACK_OF_FIN) is TcpState.TIME_WAIT
    assert transition(TcpState.ESTABLISHED, TcpEvent.RCV_RST) is TcpState.CLOSED
    assert transition(TcpState.CLOSED, TcpEvent.RCV_FIN) is None
    assert transition(TcpState.LISTEN, TcpEvent.RCV_ACK_OF_FIN) is None
