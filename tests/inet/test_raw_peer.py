"""One stack against hand-made frames: MSS and window honoured, resets, hostile and malformed input."""
from __future__ import annotations

import random
import struct

import pytest

from services.inet.stack import Stack, TcpState
from services.inet.stack import ether, ip, tcp_segment
from services.inet.stack.arp import ARP_OP_REQUEST, ArpPacket
from services.inet.stack.arp import build as arp_build
from services.inet.stack.checksum import checksum, pseudo_header_sum
from services.inet.stack.icmp import ICMP_ECHO_REQUEST, build_echo
from services.inet.stack.tcp_segment import ACK, FIN, RST, SYN
from services.inet.stack.udp import build as udp_build
from tests.inet.wire import IP_A, MAC_A, NETMASK, FakeClock, tcp_view

PEER_MAC = ether.parse_mac("02:00:00:00:00:99")
PEER_IP = ip.ip_to_int("10.0.0.9")
OUR_MAC = ether.parse_mac(MAC_A)
OUR_IP = ip.ip_to_int(IP_A)
ISS = 5000


class RawPeer:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.clock = FakeClock()
        self.stack = Stack(MAC_A, IP_A, NETMASK, None, self.out.append, self.clock, isn=lambda: ISS)
        # An ARP request from the peer teaches the stack the peer's MAC.
        self.stack.input(self.frame(ether.ETHERTYPE_ARP, arp_build(
            ArpPacket(ARP_OP_REQUEST, PEER_MAC, PEER_IP, bytes(6), OUR_IP))))
        self.out.clear()

    def frame(self, ethertype: int, payload: bytes) -> bytes:
        return ether.build(OUR_MAC, PEER_MAC, ethertype, payload)

    def ip_frame(self, proto: int, payload: bytes) -> bytes:
        return self.frame(ether.ETHERTYPE_IPV4, ip.build(PEER_IP, OUR_IP, proto, 1, payload))

    def tcp(self, sport: int, dport: int, seq: int, ack: int, flags: int, window: int = 65535,
            data: bytes = b"", mss: int | None = None) -> None:
        self.stack.input(self.ip_frame(ip.PROTO_TCP, tcp_segment.build(
            PEER_IP, OUR_IP, sport, dport, seq, ack, flags, window, data, mss)))

    def take(self) -> list[bytes]:
        frames, self.out[:] = list(self.out), []
        return frames


def test_peer_mss_and_window_are_honoured() -> None:
    peer = RawPeer()
    listener = peer.stack.tcp_socket()
    listener.bind(80)
    listener.listen()
    peer.tcp(1234, 80, 2**32 - 1, 0, SYN, mss=536)
    (synack,) = peer.take()
    view = tcp_view(synack)
    assert view is not None and view.flags == SYN | ACK and view.ack == 0 and view.seq == ISS
    assert b"\x02\x04\x05\xb4" in synack                          # our MSS, 1460
    peer.tcp(1234, 80, 0, ISS + 1, ACK, window=2000)
    conn = listener.accept()
    assert conn is not None and conn.state is TcpState.ESTABLISHED
    conn.nodelay = True             # the last 176 bytes go at once (Nagle: test_tcp_options.py)
    assert conn.send(bytes(5000)) == 5000
    sizes = [v.payload_len for f in peer.take() if (v := tcp_view(f)) is not None]
    assert sizes and max(sizes) <= 536 and sum(sizes) <= 2000
    peer.tcp(1234, 80, 0, ISS + 1 + sum(sizes), ACK, window=65535)
    more = [v.payload_len for f in peer.take() if (v := tcp_view(f)) is not None]
    assert sum(sizes) + sum(more) == 5000 and max(more) <= 536


def test_segments_for_no_socket_are_reset() -> None:
    peer = RawPeer()
    peer.tcp(1234, 81, 777, 0, SYN)
    (rst,) = peer.take()
    view = tcp_view(rst)
    assert view is not None and view.flags == RST | ACK and view.ack == 778 and view.seq == 0
    peer.tcp(1234, 81, 777, 4242, ACK, data=b"x")
    view = tcp_view(peer.take()[0])
    assert view is not None and view.flags == RST and view.seq == 4242
    peer.tcp(1234, 81, 777, 0, RST)
    assert peer.take() == [] and peer.stack.drops["tcp_no_socket"] == 3


def test_blind_reset_draws_a_challenge_ack() -> None:
    peer = RawPeer()
    listener = peer.stack.tcp_socket()
    listener.bind(80)
    listener.listen()
    peer.tcp(1234, 80, 100, 0, SYN)
    peer.tcp(1234, 80, 101, ISS + 1, ACK)
    conn = listener.accept()
    assert conn is not None
    peer.take()
    peer.tcp(1234, 80, 5000, 0, RST)                               # in window, not RCV.NXT
    (challenge,) = peer.take()
    view = tcp_view(challenge)
    assert view is not None and view.flags == ACK and view.ack == 101
    assert conn.state is TcpState.ESTABLISHED
    peer.tcp(1234, 80, 101, 0, RST)
    assert conn.state is TcpState.CLOSED
    peer.tcp(1234, 80, 101, ISS + 1, FIN | ACK)                    # after the reset: a stranger
    assert tcp_view(peer.take()[-1]).flags & RST                   # type: ignore[union-attr]


def _bad_frames(peer: RawPeer) -> list[tuple[str, bytes]]:
    good_tcp = tcp_segment.build(PEER_IP, OUR_IP, 1, 80, 0, 0, SYN, 1000)
    good_ip = ip.build(PEER_IP, OUR_IP, ip.PROTO_TCP, 1, good_tcp)
    bad_ip_csum = bytearray(good_ip)
    bad_ip_csum[10] ^= 0xFF
    fragment = bytearray(good_ip)
    fragment[6:8] = b"\x20\x00"                                    # MF set
    fragment[10:12] = b"\0\0"
    fragment[10:12] = struct.pack("!H", checksum(fragment[:20]))
    bad_tcp_csum = bytearray(good_tcp)
    bad_tcp_csum[16] ^= 1
    bad_offset = bytearray(good_tcp)
    bad_offset[12] = 0xF0                                          # 60-byte header in a 20-byte segment
    bad_option = tcp_segment.build(PEER_IP, OUR_IP, 1, 80, 0, 0, SYN, 1000, mss=1460)
    bad_option = bad_option[:21] + b"\x07" + bad_option[22:]       # an option length past the header
    udp = bytearray(udp_build(PEER_IP, OUR_IP, 1, 53, b"hello"))
    udp_bad_csum = bytearray(udp)
    udp_bad_csum[8] ^= 1
    udp_bad_len = bytearray(udp)
    udp_bad_len[4:6] = b"\x00\x40"
    icmp = bytearray(build_echo(ICMP_ECHO_REQUEST, 1, 1, b"abc"))
    icmp[9] ^= 1
    return [
        ("eth_short", b"\x01\x02\x03"),
        ("eth_not_for_us", ether.build(b"\x02" * 6, PEER_MAC, ether.ETHERTYPE_IPV4, good_ip)),
        ("eth_unknown_type", peer.frame(0x86DD, good_ip)),
        ("arp_malformed", peer.frame(ether.ETHERTYPE_ARP, b"\x00\x01\x08\x00")),
        ("ip_short", OUR_MAC + PEER_MAC + b"\x08\x00" + good_ip[:12]),          # unpadded
        ("ip_bad_version", peer.frame(ether.ETHERTYPE_IPV4, b"\x65" + good_ip[1:])),
        ("ip_bad_checksum", peer.frame(ether.ETHERTYPE_IPV4, bytes(bad_ip_csum))),
        ("ip_bad_length", OUR_MAC + PEER_MAC + b"\x08\x00" + good_ip[:30]),
        ("ip_fragment", peer.frame(ether.ETHERTYPE_IPV4, bytes(fragment))),
        ("ip_unknown_protocol", peer.ip_frame(99, b"whatever")),
        ("ip_not_for_us", peer.frame(ether.ETHERTYPE_IPV4, ip.build(PEER_IP, OUR_IP + 5, 6, 1, good_tcp))),
        ("tcp_short", peer.ip_frame(ip.PROTO_TCP, good_tcp[:10])),
        ("tcp_bad_checksum", peer.ip_frame(ip.PROTO_TCP, bytes(bad_tcp_csum))),
        ("tcp_bad_offset", peer.ip_frame(ip.PROTO_TCP, bytes(bad_offset))),
        ("tcp_bad_options", peer.ip_frame(ip.PROTO_TCP, _fix_tcp_checksum(bad_option))),
        ("udp_bad_checksum", peer.ip_frame(ip.PROTO_UDP, bytes(udp_bad_csum))),
        ("udp_bad_length", peer.ip_frame(ip.PROTO_UDP, bytes(udp_bad_len))),
        ("udp_short", peer.ip_frame(ip.PROTO_UDP, b"\x00\x01")),
        ("icmp_bad_checksum", peer.ip_frame(ip.PROTO_ICMP, bytes(icmp))),
    ]


def _fix_tcp_checksum(segment: bytes) -> bytes:
    zeroed = segment[:16] + b"\0\0" + segment[18:]
    csum = checksum(zeroed, pseudo_header_sum(PEER_IP, OUR_IP, ip.PROTO_TCP, len(segment)))
    return zeroed[:16] + struct.pack("!H", csum) + zeroed[18:]


def test_malformed_frames_are_dropped_and_counted() -> None:
    peer = RawPeer()
    listener = peer.stack.tcp_socket()
    listener.bind(80)
    listener.listen()
    for reason, frame in _bad_frames(peer):
        before = peer.stack.drops[reason]
        peer.stack.input(frame)
        assert peer.stack.drops[reason] == before + 1, reason
        assert peer.take() == [], reason
    assert listener.accept() is None and not peer.stack.tcp.connections


@pytest.mark.parametrize("seed", range(4))
def test_mutated_frames_never_raise(seed: int) -> None:
    peer = RawPeer()
    listener = peer.stack.tcp_socket()
    listener.bind(80)
    listener.listen()
    rng = random.Random(seed)
    valid = [peer.ip_frame(ip.PROTO_TCP, tcp_segment.build(PEER_IP, OUR_IP, 9, 80, 1, 0, SYN, 100, mss=1460)),
             peer.ip_frame(ip.PROTO_UDP, udp_build(PEER_IP, OUR_IP, 1, 2, b"data")),
             peer.ip_frame(ip.PROTO_ICMP, build_echo(ICMP_ECHO_REQUEST, 1, 2, b"x" * 30)),
             peer.frame(ether.ETHERTYPE_ARP, arp_build(ArpPacket(ARP_OP_REQUEST, PEER_MAC, PEER_IP, bytes(6),
                                                                 OUR_IP)))]
    for _ in range(3000):
        frame = bytearray(rng.choice(valid))
        for _ in range(rng.randint(1, 4)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        if rng.random() < 0.3:
            del frame[rng.randrange(len(frame)):]
        peer.stack.input(bytes(frame))
        peer.clock.now += 0.01
        peer.stack.tick()
    assert sum(peer.stack.drops.values()) > 2000
