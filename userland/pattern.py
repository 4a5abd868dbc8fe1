"""The byte pattern bin/nc sends, as a pure function (no minikern imports).

Both ends of a transfer test need the same bytes: bin/nc inside the system and
plain Linux programs outside it (tests/net/peer.py), which must not import
ZeroMQ.  The stream is a 64 KiB block (a SHA-256 of the seed, repeated)
rotated by a different amount each time, so a frame sent twice, dropped or
reordered changes the digest.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator

BLOCK = 64 * 1024


def _block(seed: int) -> bytes:
    return hashlib.sha256(seed.to_bytes(8, "little")).digest() * (BLOCK // 32)


def chunks(n: int, seed: int = 1) -> Iterator[bytes]:
    """The first ``n`` bytes of the pattern, one rotated block at a time (no 20 MB buffer)."""
    block = _block(seed)
    i = sent = 0
    while sent < n:
        piece = block[i % 7:] + block[:i % 7]
        piece = piece[:n - sent]
        sent += len(piece)
        i += 1
        yield piece


def pattern(n: int, seed: int = 1) -> bytes:
    """N bytes that are cheap to make and check: a counter stream seeded per run."""
    return b"".join(chunks(n, seed))
