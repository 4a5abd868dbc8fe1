"""The faster TCP's rules, on fake time: window scaling and SACK negotiation (RFC 7323, RFC 2018),
the SACK scoreboard and a lost burst resent in one round trip (RFC 6675), delayed ACKs
(RFC 1122 4.2.3.2, RFC 5681 4.2) and Nagle (RFC 896)."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from services.inet.stack import TcpState, ip
from services.inet.stack.tcp import DELACK_TIMEOUT, TcpSocket
from services.inet.stack.tcp_recv import TCP_RCVBUF, wscale_for
from services.inet.stack.tcp_sack import Scoreboard, receiver_blocks
from services.inet.stack.tcp_segment import ACK, SYN, parse, sack_option, syn_options
from services.inet.stack import tcp_segment
from tests.inet.test_raw_peer import ISS, OUR_IP, PEER_IP, RawPeer
from tests.inet.wire import LATENCY, Transfer, Wire, tcp_view

pytestmark = pytest.mark.timeout(60)
PEER_ISS = 70_000


def tcp_header(frame: bytes) -> memoryview:
    """The TCP segment in one of our frames (IPv4 without options; Ethernet padding cut off)."""
    total = int.from_bytes(frame[16:18], "big")
    return memoryview(frame)[14 + 20:14 + total]


def our_segments(peer: RawPeer) -> list[tcp_segment.Segment]:
    segs = []
    for f in peer.take():
        seg = parse(tcp_header(f), OUR_IP, PEER_IP, Counter())
        if seg is not None:
            segs.append(seg)
    return segs


def syn(peer: RawPeer, options: bytes, window: int = 65535) -> None:
    peer.stack.input(peer.ip_frame(ip.PROTO_TCP, tcp_segment.build(
        PEER_IP, OUR_IP, 1234, 80, PEER_ISS, 0, SYN, window, options=options)))


def segment(peer: RawPeer, seq: int, ack: int, window: int, data: bytes = b"",
            options: bytes = b"") -> None:
    peer.stack.input(peer.ip_frame(ip.PROTO_TCP, tcp_segment.build(
        PEER_IP, OUR_IP, 1234, 80, seq, ack, ACK, window, data, options=options)))


def accepted(peer: RawPeer, options: bytes, window: int = 65535) -> tuple[TcpSocket, tcp_segment.Segment]:
    listener = peer.stack.tcp_socket()
    listener.bind(80)
    listener.listen()
    syn(peer, options)
    (synack,) = our_segments(peer)
    segment(peer, PEER_ISS + 1, ISS + 1, window)
    conn = listener.accept()
    assert conn is not None and conn.state is TcpState.ESTABLISHED
    return conn, synack


# ---- negotiation ----------------------------------------------------------------------

def test_both_options_hold_when_both_syns_carry_them() -> None:
    peer = RawPeer()
    conn, synack = accepted(peer, syn_options(1460, 7, True), window=100)
    assert synack.wscale == wscale_for(TCP_RCVBUF) and synack.sack_ok and synack.window <= 0xFFFF
    assert conn.sender.snd_wscale == 7 and conn.sender.sack_ok
    assert conn.sender.snd_wnd == 100 << 7                  # the ACK's window field, scaled
    assert conn.receiver.wscale == wscale_for(TCP_RCVBUF)


def test_neither_option_without_the_peers_offer() -> None:
    peer = RawPeer()
    conn, synack = accepted(peer, syn_options(1460, None, False), window=100)
    assert synack.wscale is None and not synack.sack_ok
    assert conn.sender.snd_wscale == 0 and not conn.sender.sack_ok and conn.sender.snd_wnd == 100
    conn.nodelay = True
    conn.send(bytes(50))
    (seg,) = our_segments(peer)
    assert seg.window <= 0xFFFF and conn.receiver.wscale == 0  # our window unscaled as well


def test_window_scale_above_14_is_taken_as_14_and_bad_lengths_are_dropped() -> None:
    drops: Counter[str] = Counter()
    raw = tcp_segment.build(PEER_IP, OUR_IP, 1, 2, 0, 0, SYN, 1, options=bytes((3, 3, 20, 1)))
    seg = parse(memoryview(raw), PEER_IP, OUR_IP, drops)
    assert seg is not None and seg.wscale == 14
    bad = tcp_segment.build(PEER_IP, OUR_IP, 1, 2, 0, 0, SYN, 1, options=bytes((1, 3, 4, 7)))
    assert parse(memoryview(bad), PEER_IP, OUR_IP, drops) is None and drops["tcp_bad_options"] == 1


# ---- the scoreboard and the receiver's blocks -----------------------------------------

def test_scoreboard_merges_blocks_and_refuses_impossible_ones() -> None:
    sb = Scoreboard()
    una, snd_max = 1000, 20_000
    assert sb.update(una, snd_max, [(3000, 4000), (5000, 6000)])
    assert sb.update(una, snd_max, [(4000, 5000)])           # fills the gap: one range
    assert sb.blocks == [(3000, 6000)] and sb.sacked_bytes == 3000
    assert not sb.update(una, snd_max, [(3500, 4500)])       # nothing new
    assert not sb.update(una, snd_max, [(19_000, 21_000), (900, 1500), (7000, 7000)])
    assert sb.rejected == 3                                  # beyond SND.MAX, below SND.UNA, empty
    assert sb.next_hole(una, 1460) == (1000, 2460)
    assert sb.next_hole(2460, 1460) == (2460, 3000)
    assert sb.next_hole(3000, 1460) is None                  # nothing known lost above 6000
    sb.advance(3500)
    assert sb.blocks == [(3500, 6000)]


def test_scoreboard_wraps_with_the_sequence_space() -> None:
    sb = Scoreboard()
    una = 2**32 - 1000
    assert sb.update(una, 5000, [(500, 1500), (2**32 - 200, 100)])
    assert sb.blocks == [(2**32 - 200, 100), (500, 1500)]
    assert sb.next_hole(una, 10_000) == (una, 2**32 - 200)


def test_receiver_reports_the_newest_block_first() -> None:
    held = {3000: 1000, 4000: 1000, 7000: 500, 9000: 100}
    assert receiver_blocks(held, 7000, 4) == [(7000, 7500), (3000, 5000), (9000, 9100)]
    assert receiver_blocks(held, None, 2) == [(3000, 5000), (7000, 7500)]
    assert len(sack_option(receiver_blocks(held, None, 4))) == 4 + 8 * 3


# ---- SACK recovery between two stacks --------------------------------------------------

Resends = dict[int, list[float]]


def lose_a_burst(sack: bool, first: int = 30, count: int = 10) -> tuple[Wire, TcpSocket, Resends]:
    """A 400 kB transfer A -> B that loses data segments first..first+count-1 once; returns
    the fake times at which each lost sequence number was sent again."""
    w = Wire()
    lost: Resends = {}
    seen = {"data": 0}

    def drop_burst(src: int, frame: bytes) -> bool:
        view = tcp_view(frame)
        if src != 0 or view is None or view.payload_len == 0:
            return False
        if view.seq in lost:
            lost[view.seq].append(w.clock.now)
            return False
        seen["data"] += 1
        if first <= seen["data"] < first + count:
            lost[view.seq] = []
            return True
        return False

    listener = w.b.tcp_socket()
    listener.bind(5000)
    listener.listen()
    client = w.a.tcp_socket()
    client.offer_sack = sack
    client.connect(("10.0.0.2", 5000))
    got: list[TcpSocket] = []
    w.run(lambda: bool(got) and client.connected,
          step=lambda: got.extend(s for s in [listener.accept()] if s is not None))
    w.filters.append(drop_burst)
    data = random.Random(3).randbytes(400_000)
    t = Transfer(client, got[0], data)
    w.run(t.done, step=t.step)
    assert bytes(t.received) == data
    assert len(lost) == count and all(lost.values())
    return w, client, lost


def test_a_lost_burst_is_resent_in_one_round_trip_with_sack() -> None:
    w, client, lost = lose_a_burst(sack=True)
    assert client.sender.sack_ok and client.sender.sack_recoveries == 1
    assert client.sender.timeouts == 0
    first_resends = [times[0] for times in lost.values()]
    assert max(first_resends) - min(first_resends) < 2 * LATENCY  # within one round trip
    assert sum(len(times) for times in lost.values()) == len(lost)  # each resent once


def test_without_sack_the_same_burst_takes_a_round_trip_per_segment() -> None:
    w, client, lost = lose_a_burst(sack=False)
    assert not client.sender.sack_ok and client.sender.sack_recoveries == 0
    first_resends = sorted(times[0] for times in lost.values())
    assert first_resends[-1] - first_resends[0] >= (len(lost) - 1) * 2 * LATENCY * 0.9


def test_a_dsack_for_the_segment_a_timeout_resent_undoes_the_collapse() -> None:
    peer = RawPeer()
    conn, _ = accepted(peer, syn_options(1460, 7, True), window=4000)
    conn.send(bytes(5000))
    sent = our_segments(peer)
    assert [len(s.payload) for s in sent] == [1460, 1460, 1460]
    cwnd = conn.sender.cwnd
    deadline = conn.next_deadline()
    assert deadline is not None
    peer.clock.now = deadline                               # no ACK in time: a timeout
    peer.stack.tick()
    (resent,) = our_segments(peer)
    assert resent.seq == ISS + 1 and conn.sender.timeouts == 1 and conn.sender.cwnd == 1460
    # The peer had it all along: a cumulative ACK, and a D-SACK for the copy.
    segment(peer, PEER_ISS + 1, ISS + 1 + 4380, 4000,
            options=sack_option([(ISS + 1, ISS + 1 + 1460)]))
    assert conn.sender.spurious_timeouts == 1 and conn.sender.cwnd >= cwnd


def test_an_ack_without_dsack_after_a_timeout_keeps_the_collapse() -> None:
    peer = RawPeer()
    conn, _ = accepted(peer, syn_options(1460, 7, True), window=4000)
    conn.send(bytes(5000))
    our_segments(peer)
    deadline = conn.next_deadline()
    assert deadline is not None
    peer.clock.now = deadline
    peer.stack.tick()
    our_segments(peer)
    segment(peer, PEER_ISS + 1, ISS + 1 + 1460, 4000)      # only the resent segment arrived
    assert conn.sender.spurious_timeouts == 0 and conn.sender.cwnd <= 2 * 1460


# ---- delayed ACKs ---------------------------------------------------------------------

def test_one_segment_is_acked_after_the_delay_two_at_once() -> None:
    peer = RawPeer()
    conn, _ = accepted(peer, syn_options(1460, 7, True))
    seq = PEER_ISS + 1
    segment(peer, seq, ISS + 1, 1000, bytes(1460))
    assert our_segments(peer) == []                         # the first waits
    deadline = conn.next_deadline()
    assert deadline is not None and deadline == pytest.approx(peer.clock.now + DELACK_TIMEOUT)
    peer.clock.now += DELACK_TIMEOUT / 2
    peer.stack.tick()
    assert our_segments(peer) == []
    peer.clock.now = deadline
    peer.stack.tick()
    (ack,) = our_segments(peer)
    assert ack.ack == seq + 1460 and conn.delayed_acks == 1
    segment(peer, seq + 1460, ISS + 1, 1000, bytes(1460))
    assert our_segments(peer) == []
    segment(peer, seq + 2920, ISS + 1, 1000, bytes(1460))
    (ack,) = our_segments(peer)                             # the second full segment: at once
    assert ack.ack == seq + 3 * 1460 and conn.next_deadline() is None


def test_out_of_order_data_is_acked_at_once_with_a_sack_block() -> None:
    peer = RawPeer()
    conn, _ = accepted(peer, syn_options(1460, 7, True))
    seq = PEER_ISS + 1
    segment(peer, seq + 1460, ISS + 1, 1000, bytes(1460))   # the first segment is missing
    (ack,) = our_segments(peer)
    assert ack.ack == seq and ack.sack == ((seq + 1460, seq + 2920),)
    segment(peer, seq, ISS + 1, 1000, bytes(1460))          # fills the hole: at once too
    (ack,) = our_segments(peer)
    assert ack.ack == seq + 2920 and ack.sack == ()


def test_no_sack_blocks_unless_negotiated() -> None:
    peer = RawPeer()
    accepted(peer, syn_options(1460, 7, False))
    segment(peer, PEER_ISS + 1 + 1460, ISS + 1, 1000, bytes(1460))
    (ack,) = our_segments(peer)
    assert ack.sack == ()


# ---- Nagle ----------------------------------------------------------------------------

def test_nagle_holds_a_small_segment_while_data_is_unacknowledged() -> None:
    peer = RawPeer()
    conn, _ = accepted(peer, syn_options(1460, 7, True))
    conn.send(b"a" * 100)
    (first,) = our_segments(peer)                           # nothing in flight: sent at once
    conn.send(b"b" * 100)
    assert our_segments(peer) == []                         # held behind the unacked 100
    segment(peer, PEER_ISS + 1, ISS + 1 + 100, 1000)
    (second,) = our_segments(peer)
    assert bytes(second.payload) == b"b" * 100 and first.seq + 100 == second.seq


def test_nodelay_sends_small_segments_at_once() -> None:
    peer = RawPeer()
    conn, _ = accepted(peer, syn_options(1460, 7, True))
    conn.nodelay = True
    conn.send(b"a" * 100)
    conn.send(b"b" * 100)
    assert [len(s.payload) for s in our_segments(peer)] == [100, 100]


def test_a_full_segment_is_never_held_by_nagle() -> None:
    peer = RawPeer()
    conn, _ = accepted(peer, syn_options(1460, 7, True))
    conn.send(b"a" * 100)
    our_segments(peer)
    conn.send(b"b" * 3000)
    assert [len(s.payload) for s in our_segments(peer)] == [1460, 1460]  # the 80-byte tail waits
