"""The stack as a whole: one object the INET server owns, fed with frames and ticks, holding the sockets.

It is a pure library.  It never blocks, sleeps, or does I/O itself: frames
come in through ``input``, go out through the ``send_frame`` callback, time is
read from the injected ``clock`` (seconds, monotonic), and timers run when
the owner calls ``tick`` (at least every 10-50 ms, or at ``next_deadline``).
Sockets report readiness through ``on_event`` so the server can answer
callers it left blocked.  When the Ethernet driver restarts (minix3.md 5)
the server keeps the same Stack: frames lost meanwhile are recovered by TCP
retransmission, and ``flush_arp`` may be called if the MAC behind an address
could have changed.

Layering, one module each: ether -> arp | ip -> icmp | udp | tcp_layer -> tcp.
Malformed input at any layer is dropped and counted in ``drops`` by reason;
no wire input raises.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from services.inet.stack import ether
from services.inet.stack import ip as ipv4
from services.inet.stack.arp import ArpCache
from services.inet.stack.events import EventHook, SocketEvent
from services.inet.stack.icmp import EchoReply, Icmp
from services.inet.stack.tcp import TcpSocket
from services.inet.stack.tcp_layer import TcpLayer
from services.inet.stack.udp import UdpLayer, UdpSocket


class Stack:
    def __init__(self, mac: bytes | str, ip: str, netmask: str, gateway: str | None,
                 send_frame: Callable[[bytes], None], clock: Callable[[], float], *,
                 isn: Callable[[], int] | None = None, seed: int | None = None) -> None:
        self.mac = _mac_bytes(mac)
        self.ip = ipv4.ip_to_int(ip)
        self.netmask = ipv4.ip_to_int(netmask)
        self.gateway = ipv4.ip_to_int(gateway) if gateway else None
        self.broadcast = self.ip | (~self.netmask & 0xFFFFFFFF)
        self._send_frame = send_frame
        self.clock = clock
        self.on_event: EventHook | None = None
        # The owner's word that frames sent are held, not lost (INET: the driver is being
        # replaced and its frames wait in INET's queue): TCP's timeouts then only back off.
        self.output_held: Callable[[], bool] | None = None
        self.drops: Counter[str] = Counter()
        self.frames_in = 0
        self.frames_out = 0
        self._ident = 0
        rng = random.Random(seed)
        self.arp = ArpCache(self.mac, self.ip, self._emit_frame, self.drops)
        self.icmp = Icmp(self.ip_output, self.drops)
        self.udp = UdpLayer(self.ip, self.ip_output, self.drops, self._notify)
        self.tcp = TcpLayer(self.ip, self.ip_output, clock, self.drops, self._notify, isn, rng)

    # ---- sockets and tools ---------------------------------------------

    def tcp_socket(self) -> TcpSocket:
        return self.tcp.socket()

    def udp_socket(self) -> UdpSocket:
        return UdpSocket(self.udp)

    def ping(self, dst: str, ident: int, seq: int, data: bytes = b"") -> None:
        """Send an ICMP echo request; replies appear in ``echo_replies``."""
        self.icmp.ping(ipv4.ip_to_int(dst), ident, seq, data)

    @property
    def echo_replies(self) -> list[EchoReply]:
        return list(self.icmp.replies)

    def flush_arp(self) -> None:
        self.arp.entries.clear()

    def set_mac(self, mac: bytes | str) -> None:
        """Adopt the MAC address a (restarted) driver reports; later frames use it."""
        self.mac = self.arp.mac = _mac_bytes(mac)

    # ---- events from the owner -----------------------------------------

    def input(self, frame: bytes | bytearray | memoryview) -> None:
        """One Ethernet frame from the driver (no FCS; padding allowed)."""
        self.frames_in += 1
        buf = memoryview(frame)
        header = ether.parse_header(buf)
        if header is None:
            self.drops["eth_short"] += 1
            return
        dst, _src, ethertype = header
        if dst != self.mac and dst != ether.BROADCAST_MAC:
            self.drops["eth_not_for_us"] += 1
            return
        payload = buf[ether.ETH_HEADER_LEN:]
        if ethertype == ether.ETHERTYPE_ARP:
            self.arp.input(payload, self.clock())
        elif ethertype == ether.ETHERTYPE_IPV4:
            self._ip_input(payload, unicast_frame=dst == self.mac)
        else:
            self.drops["eth_unknown_type"] += 1

    def tick(self) -> None:
        now = self.clock()
        self.arp.tick(now)
        self.tcp.tick(now, self.output_held is not None and self.output_held())

    def next_deadline(self) -> float | None:
        """The clock value at which ``tick`` next has work, or None when no timer runs."""
        deadlines = [d for d in (self.arp.next_deadline(), self.tcp.next_deadline()) if d is not None]
        return min(deadlines, default=None)

    # ---- IP -------------------------------------------------------------

    def _ip_input(self, buf: memoryview, unicast_frame: bool) -> None:
        packet = ipv4.parse(buf, self.drops)
        if packet is None:
            return
        unicast = packet.dst == self.ip
        if not unicast and packet.dst not in (self.broadcast, ipv4.LIMITED_BROADCAST):
            self.drops["ip_not_for_us"] += 1
            return
        if packet.proto == ipv4.PROTO_TCP:
            if unicast and unicast_frame:
                self.tcp.input(packet)
            else:
                self.drops["tcp_broadcast"] += 1
        elif packet.proto == ipv4.PROTO_UDP:
            self.udp.input(packet)
        elif packet.proto == ipv4.PROTO_ICMP:
            self.icmp.input(packet, unicast)
        else:
            self.drops["ip_unknown_protocol"] += 1

    def ip_output(self, dst: int, proto: int, payload: bytes) -> None:
        """Send one datagram: broadcast directly, on-link to ``dst``, otherwise through the gateway."""
        self._ident = (self._ident + 1) & 0xFFFF
        packet = ipv4.build(self.ip, dst, proto, self._ident, payload)
        if dst in (self.broadcast, ipv4.LIMITED_BROADCAST):
            self._emit_frame(ether.BROADCAST_MAC, ether.ETHERTYPE_IPV4, packet)
            return
        if dst == self.ip:
            self.drops["ip_to_self"] += 1       # no loopback interface in this stack
            return
        on_link = (dst & self.netmask) == (self.ip & self.netmask)
        if not on_link and self.gateway is None:
            self.drops["ip_no_route"] += 1
            return
        next_hop = dst if on_link or self.gateway is None else self.gateway
        self.arp.output(next_hop, packet, self.clock())

    def _emit_frame(self, dst_mac: bytes, ethertype: int, payload: bytes) -> None:
        self.frames_out += 1
        self._send_frame(ether.build(dst_mac, self.mac, ethertype, payload))

    def _notify(self, sock: object, event: SocketEvent) -> None:
        if self.on_event is not None:
            self.on_event(sock, event)


def _mac_bytes(mac: bytes | str) -> bytes:
    value = ether.parse_mac(mac) if isinstance(mac, str) else bytes(mac)
    if len(value) != ether.MAC_LEN:
        raise ValueError("a MAC address has 6 bytes")
    return value
