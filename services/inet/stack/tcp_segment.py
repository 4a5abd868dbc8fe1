"""TCP segment format (RFC 793 3.1, RFC 9293): parse and checksum-verify on input, build on output.

Options understood: MSS (RFC 9293 3.2), window scale (RFC 7323 2), SACK
permitted and SACK blocks (RFC 2018); others (timestamps, ...) are skipped by
their length field.  A header whose data offset or option lengths run past the
segment, an understood option of the wrong length, or a checksum over the
pseudo-header that fails, drops the segment and is counted.  A window-scale
shift above 14 is taken as 14 (RFC 7323 2.3); SACK blocks are kept as the
peer sent them (at most 4): the sender checks them against its own sequence
space (tcp_sack.py), for they are only a claim.
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
OPT_WSCALE = 3
OPT_WSCALE_LEN = 3
OPT_SACK_OK = 4
OPT_SACK_OK_LEN = 2
OPT_SACK = 5
TCP_MAX_WSCALE = 14           # RFC 7323 2.3
TCP_MAX_SACK_BLOCKS = 4       # 2 + 4 * 8 = 34 of the 40 option bytes
TCP_DEFAULT_MSS = 536         # assumed when the peer sends no MSS option (RFC 9293 3.7.1)
TCP_MIN_MSS = 64              # smaller MSS options are raised to this

_HEADER = struct.Struct("!HHIIHHHH")
_MSS_OPTION = struct.Struct("!BBH")
_SACK_BLOCK = struct.Struct("!II")


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
    wscale: int | None = None                   # the SYN's window-scale shift, if offered
    sack_ok: bool = False                       # SACK-permitted (SYN only)
    sack: tuple[tuple[int, int], ...] = ()      # SACK blocks (left edge, right edge)

    @property
    def seg_len(self) -> int:
        """Sequence space consumed: payload plus one each for SYN and FIN."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)


@dataclass(slots=True)
class Options:
    mss: int | None = None
    wscale: int | None = None
    sack_ok: bool = False
    sack: tuple[tuple[int, int], ...] = ()


def _parse_options(options: memoryview) -> Options | None:
    """The options understood, or None when the list is malformed."""
    i, opts = 0, Options()
    while i < len(options):
        kind = options[i]
        if kind == OPT_END:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2 or i + options[i + 1] > len(options):
            return None
        length = options[i + 1]
        if kind == OPT_MSS:
            if length != OPT_MSS_LEN:
                return None
            opts.mss = max(TCP_MIN_MSS, (options[i + 2] << 8) | options[i + 3])
        elif kind == OPT_WSCALE:
            if length != OPT_WSCALE_LEN:
                return None
            opts.wscale = min(TCP_MAX_WSCALE, options[i + 2])
        elif kind == OPT_SACK_OK:
            if length != OPT_SACK_OK_LEN:
                return None
            opts.sack_ok = True
        elif kind == OPT_SACK:
            if (length - 2) % 8 or length == 2:
                return None
            opts.sack = tuple(_SACK_BLOCK.unpack_from(options, i + 2 + 8 * k)
                              for k in range((length - 2) // 8))[:TCP_MAX_SACK_BLOCKS]
        i += length
    return opts


def syn_options(mss: int, wscale: int | None, sack_ok: bool) -> bytes:
    """The options of a SYN or SYN+ACK: MSS, then SACK-permitted and window scale, padded
    with NOPs to whole words as Linux lays them out."""
    out = _MSS_OPTION.pack(OPT_MSS, OPT_MSS_LEN, mss)
    if sack_ok:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_OK, OPT_SACK_OK_LEN))
    if wscale is not None:
        out += bytes((OPT_NOP, OPT_WSCALE, OPT_WSCALE_LEN, wscale))
    return out


def sack_option(blocks: list[tuple[int, int]]) -> bytes:
    """A SACK option (two NOPs first, for alignment) with at most TCP_MAX_SACK_BLOCKS blocks."""
    blocks = blocks[:TCP_MAX_SACK_BLOCKS]
    if not blocks:
        return b""
    out = bytearray((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks)))
    for left, right in blocks:
        out += _SACK_BLOCK.pack(left, right)
    return bytes(out)


_NO_OPTIONS = Options()


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
    opts = _parse_options(buf[TCP_HEADER_LEN:header_len]) if header_len > TCP_HEADER_LEN else _NO_OPTIONS
    if opts is None:
        drops["tcp_bad_options"] += 1
        return None
    if sport == 0 or dport == 0:
        drops["tcp_port_zero"] += 1
        return None
    return Segment(sport, dport, seq, ack, off_flags & 0x3F, window, opts.mss, buf[header_len:],
                   opts.wscale, opts.sack_ok, opts.sack)


def build(src_ip: int, dst_ip: int, sport: int, dport: int, seq: int, ack: int, flags: int,
          window: int, payload: bytes | bytearray | memoryview = b"", mss: int | None = None,
          options: bytes = b"") -> bytes:
    """``options`` is whole 32-bit words (syn_options, sack_option); ``mss`` alone is the
    plain MSS option."""
    if mss is not None:
        options = _MSS_OPTION.pack(OPT_MSS, OPT_MSS_LEN, mss) + options
    header_len = TCP_HEADER_LEN + len(options)
    off_flags = ((header_len // 4) << 12) | flags
    header = _HEADER.pack(sport, dport, seq, ack, off_flags, window, 0, 0) + options
    # Why two sums: the header has even length, so summing it and the payload
    # separately equals summing their concatenation, without copying the payload twice.
    initial = pseudo_header_sum(src_ip, dst_ip, PROTO_TCP, header_len + len(payload)) + ones_sum(payload)
    csum = checksum(header, initial)
    return _HEADER.pack(sport, dport, seq, ack, off_flags, window, csum, 0) + options + bytes(payload)
