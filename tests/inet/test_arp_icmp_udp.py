"""ARP resolution and expiry, ICMP echo, UDP sockets, and routing through a gateway."""
from __future__ import annotations

import errno

import pytest

from services.inet.stack import SocketEvent, Stack
from services.inet.stack.arp import ARP_ENTRY_TTL, ARP_MAX_REQUESTS, ARP_RETRY_INTERVAL
from services.inet.stack.ether import BROADCAST_MAC, ETHERTYPE_ARP
from services.inet.stack.ip import ip_to_int
from tests.inet.wire import IP_A, IP_B, MAC_A, NETMASK, FakeClock, Wire


def test_arp_resolves_queues_and_expires() -> None:
    w = Wire()
    a_sock, b_sock = w.a.udp_socket(), w.b.udp_socket()
    b_sock.bind(53)
    for i in range(3):
        a_sock.sendto(b"query %d" % i, (IP_B, 53))
    (request,) = w.sent[0]                                  # the datagrams wait for ARP
    assert request[:6] == BROADCAST_MAC and request[12:14] == ETHERTYPE_ARP.to_bytes(2, "big")
    w.run(lambda: len(b_sock.queue) == 3)
    assert [b_sock.recvfrom() for _ in range(3)] == [(b"query %d" % i, (IP_A, a_sock.port)) for i in range(3)]
    assert w.a.arp.lookup(ip_to_int(IP_B), w.clock.now) is not None
    assert w.b.arp.lookup(ip_to_int(IP_A), w.clock.now) is not None     # learnt from the request
    assert w.a.arp.requests_sent == 1 and w.b.arp.replies_sent == 1
    w.clock.now += ARP_ENTRY_TTL + 1
    w.a.tick()
    assert not w.a.arp.entries
    a_sock.sendto(b"again", (IP_B, 53))
    w.run(lambda: b_sock.readable)
    assert w.a.arp.requests_sent == 2


def test_arp_gives_up_on_a_silent_address() -> None:
    w = Wire()
    sock = w.a.udp_socket()
    for _ in range(2):
        sock.sendto(b"x", ("10.0.0.77", 9))
    start = w.clock.now
    w.run(lambda: not w.a.arp.pending, timeout=30)
    assert w.a.arp.requests_sent == ARP_MAX_REQUESTS
    assert w.a.drops["arp_unresolved"] == 2
    assert w.clock.now - start == pytest.approx(ARP_MAX_REQUESTS * ARP_RETRY_INTERVAL, abs=0.02)
    assert w.a.next_deadline() is None


def test_icmp_echo_both_ways() -> None:
    w = Wire()
    w.a.ping(IP_B, 77, 1, b"hello")
    w.run(lambda: bool(w.a.echo_replies))
    (reply,) = w.a.echo_replies
    assert (reply.src, reply.ident, reply.seq, reply.data) == (ip_to_int(IP_B), 77, 1, b"hello")
    assert w.b.icmp.echo_requests_answered == 1


def test_udp_both_ways_and_drops() -> None:
    w = Wire()
    events: list[SocketEvent] = []
    w.b.on_event = lambda sock, ev: events.append(ev)
    a_sock, b_sock = w.a.udp_socket(), w.b.udp_socket()
    a_sock.bind(1000)
    b_sock.bind(2000)
    a_sock.sendto(b"ping", (IP_B, 2000))
    w.run(lambda: b_sock.readable)
    data, (host, port) = b_sock.recvfrom() or (b"", ("", 0))
    assert data == b"ping" and (host, port) == (IP_A, 1000) and events == [SocketEvent.READABLE]
    b_sock.sendto(b"pong" * 300, (host, port))
    w.run(lambda: a_sock.readable)
    assert a_sock.recvfrom() == (b"pong" * 300, (IP_B, 2000)) and a_sock.recvfrom() is None
    a_sock.sendto(b"nobody", (IP_B, 2001))
    w.run(lambda: w.b.drops["udp_no_socket"] == 1)
    with pytest.raises(OSError) as e:
        a_sock.sendto(bytes(2000), (IP_B, 2000))
    assert e.value.errno == errno.EMSGSIZE
    other = w.b.udp_socket()
    with pytest.raises(OSError):
        other.bind(2000)
    b_sock.close()
    other.bind(2000)


def test_off_link_traffic_goes_through_the_gateway() -> None:
    frames: list[bytes] = []
    clock = FakeClock()
    stack = Stack(MAC_A, IP_A, NETMASK, "10.0.0.254", frames.append, clock)
    stack.udp_socket().sendto(b"far", ("192.0.2.1", 7))
    (request,) = frames
    assert request[38:42] == ip_to_int("10.0.0.254").to_bytes(4, "big")     # ARP target: the gateway
    no_gw = Stack(MAC_A, IP_A, NETMASK, None, frames.append, clock)
    no_gw.udp_socket().sendto(b"far", ("192.0.2.1", 7))
    assert no_gw.drops["ip_no_route"] == 1 and len(frames) == 1


def test_a_new_mac_after_a_driver_restart_is_used_and_learnt() -> None:
    w = Wire()
    client, server = w.connect_pair()
    w.b.set_mac("02:00:00:00:00:bb")
    w.b.udp_socket().sendto(b"announce", (IP_A, 9))       # any frame; ARP on A still has the old MAC
    w.a.flush_arp()                                        # what INET does when the peer's MAC may change
    client.send(b"after restart")
    w.run(lambda: server.readable)
    assert server.recv(100) == b"after restart"
    assert w.a.arp.lookup(ip_to_int(IP_B), w.clock.now) == bytes.fromhex("0200000000bb")
    with pytest.raises(ValueError):
        w.b.set_mac(b"short")


def test_a_connected_udp_socket_has_a_default_peer_and_hears_only_it() -> None:
    w = Wire()
    a_sock, b_sock, stranger = w.a.udp_socket(), w.b.udp_socket(), w.a.udp_socket()
    for method, args in ((a_sock.send, (b"x",)), (a_sock.recv, (10,))):
        with pytest.raises(OSError) as e:
            method(*args)
        assert e.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as e:
        a_sock.connect((IP_B, 0))
    assert e.value.errno == errno.EINVAL
    b_sock.bind(2000)
    a_sock.connect((IP_B, 2000))                           # binds an ephemeral port
    assert a_sock.port is not None and a_sock.peer == (IP_B, 2000)
    b_sock.connect((IP_A, a_sock.port))
    stranger.sendto(b"not from the peer", (IP_B, 2000))
    assert a_sock.send(b"hello") == 5
    w.run(lambda: b_sock.readable)
    assert b_sock.recv(3) == b"hel" and b_sock.recv(100) is None   # the rest of it is gone
    assert w.b.drops["udp_not_from_peer"] == 1
    b_sock.send(b"back")
    w.run(lambda: a_sock.readable)
    assert a_sock.recvfrom() == (b"back", (IP_B, 2000))
