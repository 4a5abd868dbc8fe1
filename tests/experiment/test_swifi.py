"""The SWIFI injector's code faults on small functions: the trace hook really raises, skips,
returns early, corrupts a local and negates a branch; and check_spec refuses bad specs."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from minikern import swifi
from minikern.swifi_trace import CodeFault
from tests.experiment import swifi_targets
from tests.experiment.swifi_targets import counter, target

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def disarm() -> Iterator[None]:
    yield
    sys.settrace(None)
    if swifi._armed is not None:
        swifi._armed.uninstall()
        swifi._armed = None


def arm(tmp_path: Path, kind: str, nth: int = 1, **more: Any) -> None:
    spec = {"id": f"t-{kind}", "kind": kind, "nth": nth, "module": swifi_targets.__name__, **more}
    assert swifi.arm("code", spec, tmp_path, "test") is None


def fired(tmp_path: Path, kind: str) -> bool:
    return (tmp_path / "swifi" / f"t-{kind}.json").exists()


def call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    finally:
        sys.settrace(None)


def test_the_functions_untouched() -> None:
    assert target(1) == "small 4" and target(9) == "big" and counter(4) == 6


def test_raise_throws_at_a_line_of_the_module(tmp_path: Path, disarm: None) -> None:
    arm(tmp_path, "raise", nth=2)
    with pytest.raises(swifi.InjectedCodeFault):
        call(target, 1)
    assert fired(tmp_path, "raise")


def test_skip_jumps_over_the_statement(tmp_path: Path, disarm: None) -> None:
    arm(tmp_path, "skip", nth=3)  # lines: y = ..., if ..., y = y * 2 (skipped)
    assert call(target, 1) == "small 2"
    assert fired(tmp_path, "skip")


def test_return_leaves_the_function_early(tmp_path: Path, disarm: None) -> None:
    arm(tmp_path, "return", nth=1)  # at `y = x + 1`: jump to `return "big"`
    assert call(target, 1) == "big"


def test_corrupt_changes_a_local(tmp_path: Path, disarm: None) -> None:
    arm(tmp_path, "corrupt", nth=1, corrupt="zero")  # at `total = 0`: n becomes 0
    assert call(counter, 4) == 0
    assert "n: 4 -> 0" in (tmp_path / "swifi" / "t-corrupt.json").read_text()


@pytest.mark.parametrize("how,expected", [("off_by_one", 5), ("bitflip", 4 ^ 1 << 3),
                                          ("none", None), ("zero", 0)])
def test_corruptions(how: str, expected: object) -> None:
    assert swifi.corrupt(4, how, pick=3) == expected
    assert swifi.corrupt(b"ab", "bitflip", pick=1) == b"a" + bytes([ord("b") ^ 2])
    assert swifi.corrupt("", "off_by_one") == "x"


def test_negate_takes_the_other_way(tmp_path: Path, disarm: None) -> None:
    arm(tmp_path, "negate", nth=1)
    assert call(target, 1) == "big"  # y = 2: not > 5, yet the branch is taken
    arm(tmp_path, "negate", nth=1)
    assert call(target, 9) == "small 20"


def test_fires_once_then_disarms(tmp_path: Path, disarm: None) -> None:
    arm(tmp_path, "corrupt", nth=1, corrupt="zero")
    assert call(counter, 4) == 0
    sys.settrace(swifi._armed.global_ if isinstance(swifi._armed, CodeFault) else None)
    assert call(counter, 4) == 6


@pytest.mark.parametrize("fault,spec", [
    ("code", {"id": "x", "kind": "raise"}),  # no module
    ("code", {"id": "../etc", "kind": "raise", "module": "m"}),
    ("code", {"id": "x", "kind": "leak", "module": "m"}),
    ("interface", {"id": "x", "kind": "field", "nth": 0}),
    ("interface", {"id": "x", "kind": "field", "extra": 1}),
    ("resource", {"id": "x", "kind": "spin", "nth": "1"}),
    ("resource", ["id"]),
    ("kill", {"id": "x", "kind": "spin"}),
])
def test_bad_specs_are_refused(fault: str, spec: object) -> None:
    assert swifi.check_spec(fault, spec) is not None


def test_an_unloaded_module_is_refused(tmp_path: Path) -> None:
    assert swifi.arm("code", {"id": "x", "kind": "raise", "module": "no.such.mod"},
                     tmp_path, "t") is not None
