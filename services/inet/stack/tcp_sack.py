"""Selective acknowledgement (RFC 2018): the sender's scoreboard and the receiver's blocks.

The sender's ``Scoreboard`` records which bytes above SND.UNA the peer said it
holds, as disjoint, sorted ``(left, right)`` ranges (right edge exclusive).
A SACK block is only a claim: one that is empty, reaches below SND.UNA or
beyond SND.MAX is ignored and counted (``rejected``); the rest are merged in.
The scoreboard is advisory: a peer may renege (RFC 2018 8), so data is
dropped from the send buffer only by the cumulative ACK, and a retransmission
timeout forgets the scoreboard.

``receiver_blocks`` is the receiver's side: the blocks to report, built from
the out-of-order segments it holds, the block holding the most recently
arrived segment first (RFC 2018 4).
"""
from __future__ import annotations

from services.inet.stack.tcp_seq import seq_diff, seq_ge, seq_gt, seq_le, seq_lt, seq_max

Block = tuple[int, int]


class Scoreboard:
    def __init__(self) -> None:
        self.blocks: list[Block] = []      # disjoint, sorted by left edge, all above SND.UNA
        self.rejected = 0

    def clear(self) -> None:
        self.blocks.clear()

    @property
    def sacked_bytes(self) -> int:
        return sum(seq_diff(r, left) for left, r in self.blocks)

    @property
    def highest(self) -> int | None:
        """The right edge of the highest SACKed range, or None when nothing is SACKed."""
        return self.blocks[-1][1] if self.blocks else None

    def update(self, una: int, snd_max: int, blocks: tuple[Block, ...] | list[Block]) -> bool:
        """Merge the peer's blocks (SND.UNA = ``una`` after this ACK); True if any was new."""
        self.advance(una)
        new = False
        for left, right in blocks:
            if not (seq_lt(left, right) and seq_ge(left, una) and seq_le(right, snd_max)):
                if not seq_le(right, una):   # a block at or below SND.UNA is a D-SACK: not an error
                    self.rejected += 1
                continue
            if not self.covers(left, right):
                new = True
                self._insert(left, right)
        return new

    def advance(self, una: int) -> None:
        """The cumulative ACK reached ``una``: drop what lies below it."""
        kept: list[Block] = []
        for left, right in self.blocks:
            if seq_le(right, una):
                continue
            kept.append((seq_max(left, una), right))
        self.blocks = kept

    def sacked_below(self, una: int, end: int) -> int:
        """SACKed bytes in [una, end)."""
        total = 0
        for left, right in self.blocks:
            if seq_ge(left, end):
                break
            total += seq_diff(right if seq_lt(right, end) else end, seq_max(left, una))
        return total

    def covers(self, left: int, right: int) -> bool:
        return any(seq_le(bl, left) and seq_ge(br, right) for bl, br in self.blocks)

    def sacked_at(self, seq: int) -> int | None:
        """The right edge of the SACKed range holding ``seq``, or None."""
        for left, right in self.blocks:
            if seq_le(left, seq) and seq_lt(seq, right):
                return right
        return None

    def next_hole(self, start: int, limit: int) -> Block | None:
        """The first un-SACKed range at or after ``start`` that ends before the highest SACKed
        byte (only those are known lost), cut at ``limit`` bytes; None when there is none."""
        seq = start
        for left, right in self.blocks:
            if seq_le(right, seq):
                continue
            if seq_lt(seq, left):
                return seq, left if seq_diff(left, seq) <= limit else (seq + limit) & 0xFFFFFFFF
            seq = right
        return None

    def _insert(self, left: int, right: int) -> None:
        merged: list[Block] = []
        for bl, br in self.blocks:
            if seq_lt(br, left) or seq_gt(bl, right):
                merged.append((bl, br))
            else:                                   # overlapping or touching: absorb it
                left = bl if seq_lt(bl, left) else left
                right = br if seq_gt(br, right) else right
        merged.append((left, right))
        base = merged[0][0]
        merged.sort(key=lambda b: seq_diff(b[0], base))
        self.blocks = merged


def receiver_blocks(held: dict[int, int], latest: int | None, most: int) -> list[Block]:
    """SACK blocks for out-of-order data: ``held`` maps each held segment's sequence number
    to its length; the block holding ``latest`` (the newest arrival) comes first."""
    if not held:
        return []
    base = next(iter(held))
    starts = sorted(held, key=lambda s: seq_diff(s, base))
    ranges: list[Block] = []
    for s in starts:
        end = (s + held[s]) & 0xFFFFFFFF
        if ranges and seq_ge(ranges[-1][1], s):
            if seq_gt(end, ranges[-1][1]):
                ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((s, end))
    if latest is not None:
        for i, (left, right) in enumerate(ranges):
            if seq_le(left, latest) and seq_lt(latest, right):
                ranges.insert(0, ranges.pop(i))
                break
    return ranges[:most]
