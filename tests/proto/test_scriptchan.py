"""The recovery script channel's lines (minikern/proto/scriptchan.py, PROTOCOL.md section 16)."""
from __future__ import annotations

import pytest

from minikern.const import Err
from minikern.proto import scriptchan as sc

pytestmark = pytest.mark.timeout(10)


def test_a_request_round_trips_and_every_action_is_known() -> None:
    for action in sc.ACTIONS:
        line, rest = sc.split_lines(sc.encode_request(action, "hello"))
        assert rest == b"" and sc.decode_request(line[0]) == sc.Request(action, "hello")


@pytest.mark.parametrize("line, fatal", [
    (b"", False), (b"restart hello", False), (b"MKSC 2 restart hello", False),
    (b"MKSC 1 reboot hello", False), (b"MKSC 1 restart", False),
    (b"MKSC 1 restart a b", False), (b"MKSC 1 restart " + b"x" * 33, False),
    (b"MKSC 1 restart h\xe9llo", True), (b"MKSC 1 restart " + b"x" * 300, True),
])
def test_a_line_of_another_shape_is_refused(line: bytes, fatal: bool) -> None:
    bad = sc.decode_request(line)
    assert isinstance(bad, sc.Bad) and bad.fatal is fatal


def test_an_answer_is_one_line_with_fields_and_the_reason_last() -> None:
    assert sc.encode_answer(Err.OK, {"endpoint": 5, "pid": 7}) == b"MKSC 1 OK endpoint=5 pid=7\n"
    line = sc.encode_answer(Err.EBUSY, {"error": "hello is\nrunning", "x": "a b", "y": None})
    assert line == b"MKSC 1 EBUSY hello is running\n"  # no field with a blank, one line


def test_split_lines_keeps_a_partial_line() -> None:
    assert sc.split_lines(b"a\nb\nc") == ([b"a", b"b"], b"c")
