"""Ethernet II framing: the one module that reads and writes the 14-byte MAC header.

Frames arrive without preamble or FCS (devices.md 7).  Frames we send are
padded to the 60-byte minimum because the RTL8139 does not pad short frames
itself; receivers trim the padding with the IP total length.
"""
from __future__ import annotations

import struct

ETH_HEADER_LEN = 14
ETH_MIN_FRAME = 60            # without FCS
ETH_MTU = 1500                # largest payload
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
BROADCAST_MAC = b"\xff" * 6
MAC_LEN = 6

_HEADER = struct.Struct("!6s6sH")


def parse_mac(text: str) -> bytes:
    """``"52:54:00:12:34:56"`` -> 6 bytes; ValueError when malformed."""
    parts = text.split(":")
    if len(parts) != MAC_LEN:
        raise ValueError(f"bad MAC address {text!r}")
    return bytes(int(p, 16) for p in parts)


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def is_multicast(mac: bytes) -> bool:
    return bool(mac[0] & 1)


def parse_header(frame: memoryview) -> tuple[bytes, bytes, int] | None:
    """(destination, source, ethertype), or None when the frame is too short for a header."""
    if len(frame) < ETH_HEADER_LEN:
        return None
    dst, src, ethertype = _HEADER.unpack_from(frame)
    return dst, src, ethertype


def build(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    frame = _HEADER.pack(dst, src, ethertype) + payload
    if len(frame) < ETH_MIN_FRAME:
        frame += bytes(ETH_MIN_FRAME - len(frame))
    return frame
