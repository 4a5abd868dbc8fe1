"""ICMP (RFC 792): answer echo requests, send our own, and record the echo replies we get.

Only unicast echo requests are answered (as Linux does by default, to avoid
broadcast amplification).  Other ICMP types are counted and ignored.
"""
from __future__ import annotations

import struct
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from services.inet.stack.checksum import checksum, verify
from services.inet.stack.ip import PROTO_ICMP, IpPacket

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMP_HEADER_LEN = 8
ICMP_REPLIES_KEPT = 64        # echo replies remembered for ``Stack.echo_replies``

_ECHO = struct.Struct("!BBHHH")

IpOutput = Callable[[int, int, bytes], None]   # (destination, protocol, payload)


@dataclass(frozen=True, slots=True)
class EchoReply:
    src: int
    ident: int
    seq: int
    data: bytes


def build_echo(icmp_type: int, ident: int, seq: int, data: bytes) -> bytes:
    header = _ECHO.pack(icmp_type, 0, 0, ident, seq)
    return _ECHO.pack(icmp_type, 0, checksum(header + data), ident, seq) + data


class Icmp:
    def __init__(self, ip_output: IpOutput, drops: Counter[str]) -> None:
        self._ip_output = ip_output
        self.drops = drops
        self.replies: deque[EchoReply] = deque(maxlen=ICMP_REPLIES_KEPT)
        self.echo_requests_answered = 0

    def input(self, packet: IpPacket, unicast: bool) -> None:
        buf = packet.payload
        if len(buf) < ICMP_HEADER_LEN:
            self.drops["icmp_short"] += 1
            return
        if not verify(buf):
            self.drops["icmp_bad_checksum"] += 1
            return
        icmp_type, _code, _csum, ident, seq = _ECHO.unpack_from(buf)
        if icmp_type == ICMP_ECHO_REQUEST:
            if not unicast:
                self.drops["icmp_broadcast_echo"] += 1
                return
            self._ip_output(packet.src, PROTO_ICMP,
                            build_echo(ICMP_ECHO_REPLY, ident, seq, bytes(buf[ICMP_HEADER_LEN:])))
            self.echo_requests_answered += 1
        elif icmp_type == ICMP_ECHO_REPLY:
            self.replies.append(EchoReply(packet.src, ident, seq, bytes(buf[ICMP_HEADER_LEN:])))
        else:
            self.drops["icmp_ignored_type"] += 1

    def ping(self, dst: int, ident: int, seq: int, data: bytes) -> None:
        self._ip_output(dst, PROTO_ICMP, build_echo(ICMP_ECHO_REQUEST, ident & 0xFFFF, seq & 0xFFFF, data))
