"""TCP segment format (RFC 793 3.1, RFC 9293): parse and checksum-verify on input, build on output.

Only the MSS option is understood; other options are skipped by their length
field.  A header whose data offset or option lengths run past the segment,
or whose checksum over the pseudo-header fails, is dropped and counted.
"""
from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

from services.inet.stack.checksum import checksum, ones_sum, pseudo_header_sum
from services.inet.stack.ip import PROTO_TCP

TCP_HEADER_LEN = 20
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
OPT_END = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_MSS_LEN = 4
TCP_DEFAULT_MSS = 536         # assumed when the peer sends no MSS option (RFC 9293 3.7.1)
TCP_MIN_MSS = 64              # smaller MSS options are raised to this

_HEADER = struct.Struct("!HHIIHHHH")
_MSS_OPTION = struct.Struct("!BBH")


@dataclass(slots=True)
class Segment:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    mss: int | None
    payload: memoryview

    @property
    def seg_len(self) -> int:
        """Sequence space consumed: payload plus one each for SYN and FIN."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)


def _parse_mss(options: memoryview) -> tuple[bool, int | None]:
    """(well formed, the MSS option's value or None when absent)."""
    i, mss = 0, None
    while i < len(options):
        kind = options[i]
        if kind == OPT_END:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2 or i + options[i + 1] > len(options):
            return False, None
        length = options[i + 1]
        if kind == OPT_MSS:
            if length != OPT_MSS_LEN:
                return False, None
            mss = max(TCP_MIN_MSS, (options[i + 2] << 8) | options[i + 3])
        i += length
    return True, mss


def parse(buf: memoryview, src_ip: int, dst_ip: int, drops: Counter[str]) -> Segment | None:
    if len(buf) < TCP_HEADER_LEN:
        drops["tcp_short"] += 1
        return None
    sport, dport, seq, ack, off_flags, window, _csum, _urg = _HEADER.unpack_from(buf)
    header_len = (off_flags >> 12) * 4
    if header_len < TCP_HEADER_LEN or header_len > len(buf):
        drops["tcp_bad_offset"] += 1
        return None
    if ones_sum(buf, pseudo_header_sum(src_ip, dst_ip, PROTO_TCP, len(buf))) != 0xFFFF:
        drops["tcp_bad_checksum"] += 1
        return None
    well_formed, mss = _parse_mss(buf[TCP_HEADER_LEN:header_len])
    if not well_formed:
        drops["tcp_bad_options"] += 1
        return None
    if sport == 0 or dport == 0:
        drops["tcp_port_zero"] += 1
        return None
    return Segment(sport, dport, seq, ack, off_flags & 0x3F, window, mss, buf[header_len:])


def build(src_ip: int, dst_ip: int, sport: int, dport: int, seq: int, ack: int, flags: int,
          window: int, payload: bytes | bytearray | memoryview = b"", mss: int | None = None) -> bytes:
    options = _MSS_OPTION.pack(OPT_MSS, OPT_MSS_LEN, mss) if mss is not None else b""
    header_len = TCP_HEADER_LEN + len(options)
    off_flags = ((header_len // 4) << 12) | flags
    header = _HEADER.pack(sport, dport, seq, ack, off_flags, window, 0, 0) + options
    # Why two sums: the header has even length, so summing it and the payload
    # separately equals summing their concatenation, without copying the payload twice.
    initial = pseudo_header_sum(src_ip, dst_ip, PROTO_TCP, header_len + len(payload)) + ones_sum(payload)
    csum = checksum(header, initial)
    return _HEADER.pack(sport, dport, seq, ack, off_flags, window, csum, 0) + options + bytes(payload)
