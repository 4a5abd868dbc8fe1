"""IPv4 (RFC 791): header validation on input, header construction on output.

What we accept: version 4, a header of at least 20 bytes whose checksum
verifies, a total length that fits the frame (Ethernet padding beyond it is
trimmed), a non-zero TTL, and an unfragmented datagram.  Options are skipped.
Fragments are dropped and counted: no reassembly (TCP's MSS keeps Linux from
fragmenting towards us, and we send with DF).  Every drop increments a named
counter in the stack's ``drops``; nothing here raises on wire input.
"""
from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from dataclasses import dataclass

from services.inet.stack.checksum import checksum, verify

IP_VERSION = 4
IP_HEADER_LEN = 20
IP_DEFAULT_TTL = 64
IP_FLAG_DF = 0x4000
IP_FLAG_MF = 0x2000
IP_OFFSET_MASK = 0x1FFF
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
LIMITED_BROADCAST = 0xFFFFFFFF

_HEADER = struct.Struct("!BBHHHBBHII")


def ip_to_int(text: str) -> int:
    """Dotted quad -> host integer; ValueError when malformed."""
    return int(ipaddress.IPv4Address(text))


def int_to_ip(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


@dataclass(slots=True)
class IpPacket:
    src: int
    dst: int
    proto: int
    ttl: int
    payload: memoryview


def parse(buf: memoryview, drops: Counter[str]) -> IpPacket | None:
    """Validate one IPv4 datagram; on any fault count it in ``drops`` and return None."""
    if len(buf) < IP_HEADER_LEN:
        drops["ip_short"] += 1
        return None
    ver_ihl, _tos, total_len, _ident, frag, ttl, proto, _csum, src, dst = _HEADER.unpack_from(buf)
    header_len = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != IP_VERSION:
        drops["ip_bad_version"] += 1
        return None
    if header_len < IP_HEADER_LEN or total_len < header_len or total_len > len(buf):
        drops["ip_bad_length"] += 1
        return None
    if not verify(buf[:header_len]):
        drops["ip_bad_checksum"] += 1
        return None
    if frag & (IP_FLAG_MF | IP_OFFSET_MASK):
        drops["ip_fragment"] += 1
        return None
    if ttl == 0:
        drops["ip_ttl_zero"] += 1
        return None
    return IpPacket(src, dst, proto, ttl, buf[header_len:total_len])


def build(src: int, dst: int, proto: int, ident: int, payload: bytes, ttl: int = IP_DEFAULT_TTL) -> bytes:
    """A 20-byte header (DF set, no options) followed by ``payload``."""
    fields = [(IP_VERSION << 4) | 5, 0, IP_HEADER_LEN + len(payload), ident & 0xFFFF, IP_FLAG_DF,
              ttl, proto, 0, src, dst]
    fields[7] = checksum(_HEADER.pack(*fields))
    return _HEADER.pack(*fields) + payload
