"""The console application's verdict on a line read back (experiment/devloads.py): bytes
lost at a driver's death are an error (the tty's rule: a typed byte is delivered or lost,
never wrong); a byte changed or added is corruption."""
from __future__ import annotations

import pytest

from experiment.devloads import _lost_from

WANT = b"exp 3 17 0000b9c2\n"


@pytest.mark.parametrize("got", [WANT[5:], WANT[:3] + WANT[9:], b"\n"])
def test_bytes_missing_and_none_changed_are_lost(got: bytes) -> None:
    assert _lost_from(got, WANT)


@pytest.mark.parametrize("got", [WANT, WANT[:-1] + b"x\n", b"X" + WANT[1:], WANT + b"!",
                                 WANT[::-1], WANT[5:-1] + b"\r"])
def test_a_byte_changed_added_or_reordered_is_not_loss(got: bytes) -> None:
    assert not _lost_from(got, WANT)
