"""ARP (RFC 826) for IPv4 over Ethernet: the neighbour cache and the queue of packets awaiting resolution.

Invariants:

* ``entries`` maps an IPv4 address to a resolved MAC and the time it expires
  (``ARP_ENTRY_TTL`` after it was last confirmed by an ARP packet).
* ``pending`` maps an unresolved address to the IP packets waiting for it (at
  most ``ARP_QUEUE_LIMIT``; the oldest is dropped and counted), when to send
  the next request and how many were sent.  After ``ARP_MAX_REQUESTS``
  unanswered requests the queue is dropped and counted; a later packet to
  the same address starts over.
* An address is never in both tables: resolving it flushes its queue.
* Learning follows RFC 826's merge rule: a packet updates an existing entry
  for its sender, and creates one only when it is addressed to us.
"""
from __future__ import annotations

import struct
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from services.inet.stack.ether import BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4, is_multicast

ARP_HTYPE_ETHERNET = 1
ARP_PTYPE_IPV4 = ETHERTYPE_IPV4
ARP_OP_REQUEST = 1
ARP_OP_REPLY = 2
ARP_PACKET_LEN = 28
ARP_ENTRY_TTL = 60.0          # seconds a learnt address stays valid
ARP_RETRY_INTERVAL = 1.0      # seconds between requests for an unresolved address
ARP_MAX_REQUESTS = 3          # requests sent before giving up on an address
ARP_QUEUE_LIMIT = 64          # IP packets held per unresolved address
ARP_CACHE_LIMIT = 256         # resolved entries kept

_PACKET = struct.Struct("!HHBBH6sI6sI")

# (destination MAC, ethertype, payload) -> a frame on the wire
EmitFrame = Callable[[bytes, int, bytes], None]


@dataclass(slots=True)
class ArpPacket:
    op: int
    sender_mac: bytes
    sender_ip: int
    target_mac: bytes
    target_ip: int


def parse(buf: memoryview) -> ArpPacket | None:
    if len(buf) < ARP_PACKET_LEN:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _PACKET.unpack_from(buf)
    if htype != ARP_HTYPE_ETHERNET or ptype != ARP_PTYPE_IPV4 or hlen != 6 or plen != 4:
        return None
    if op not in (ARP_OP_REQUEST, ARP_OP_REPLY):
        return None
    return ArpPacket(op, sha, spa, tha, tpa)


def build(p: ArpPacket) -> bytes:
    return _PACKET.pack(ARP_HTYPE_ETHERNET, ARP_PTYPE_IPV4, 6, 4, p.op,
                        p.sender_mac, p.sender_ip, p.target_mac, p.target_ip)


@dataclass(slots=True)
class _Pending:
    packets: deque[bytes] = field(default_factory=deque)
    next_request: float = 0.0
    requests_sent: int = 0


class ArpCache:
    def __init__(self, mac: bytes, ip: int, emit: EmitFrame, drops: Counter[str]) -> None:
        self.mac = mac
        self.ip = ip
        self._emit = emit
        self.drops = drops
        self.entries: dict[int, tuple[bytes, float]] = {}
        self.pending: dict[int, _Pending] = {}
        self.requests_sent = 0
        self.replies_sent = 0

    def lookup(self, ip: int, now: float) -> bytes | None:
        entry = self.entries.get(ip)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def output(self, next_hop: int, packet: bytes, now: float) -> None:
        """Send an IP packet to ``next_hop`` now, or queue it and resolve the address."""
        mac = self.lookup(next_hop, now)
        if mac is not None:
            self._emit(mac, ETHERTYPE_IPV4, packet)
            return
        pending = self.pending.get(next_hop)
        if pending is None:
            pending = self.pending[next_hop] = _Pending()
            self._request(next_hop, pending, now)
        if len(pending.packets) >= ARP_QUEUE_LIMIT:
            pending.packets.popleft()
            self.drops["arp_queue_full"] += 1
        pending.packets.append(packet)

    def input(self, buf: memoryview, now: float) -> None:
        p = parse(buf)
        if p is None:
            self.drops["arp_malformed"] += 1
            return
        if p.sender_mac == self.mac or is_multicast(p.sender_mac):
            self.drops["arp_bad_sender"] += 1
            return
        for_us = p.target_ip == self.ip
        if p.sender_ip != 0 and (p.sender_ip in self.entries or for_us):
            self._learn(p.sender_ip, p.sender_mac, now)
        if for_us and p.op == ARP_OP_REQUEST:
            reply = ArpPacket(ARP_OP_REPLY, self.mac, self.ip, p.sender_mac, p.sender_ip)
            self._emit(p.sender_mac, ETHERTYPE_ARP, build(reply))
            self.replies_sent += 1

    def tick(self, now: float) -> None:
        for ip, pending in list(self.pending.items()):
            if pending.next_request > now:
                continue
            if pending.requests_sent >= ARP_MAX_REQUESTS:
                self.drops["arp_unresolved"] += len(pending.packets)
                del self.pending[ip]
            else:
                self._request(ip, pending, now)
        for ip in [ip for ip, (_mac, expires) in self.entries.items() if expires <= now]:
            del self.entries[ip]

    def next_deadline(self) -> float | None:
        return min((p.next_request for p in self.pending.values()), default=None)

    def _learn(self, ip: int, mac: bytes, now: float) -> None:
        if ip not in self.entries and len(self.entries) >= ARP_CACHE_LIMIT:
            oldest = min(self.entries, key=lambda k: self.entries[k][1])
            del self.entries[oldest]
        self.entries[ip] = (mac, now + ARP_ENTRY_TTL)
        pending = self.pending.pop(ip, None)
        if pending is not None:
            for packet in pending.packets:
                self._emit(mac, ETHERTYPE_IPV4, packet)

    def _request(self, ip: int, pending: _Pending, now: float) -> None:
        request = ArpPacket(ARP_OP_REQUEST, self.mac, self.ip, bytes(6), ip)
        self._emit(BROADCAST_MAC, ETHERTYPE_ARP, build(request))
        pending.requests_sent += 1
        pending.next_request = now + ARP_RETRY_INTERVAL
        self.requests_sent += 1
