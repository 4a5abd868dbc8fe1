"""The campaign's plan comes from the seed alone: the same seed gives the same injections (also
as bin/experiment --plan prints them, in another process), another seed others; each fault
kind can reach its driver; cutting the plan into trials loses and reorders nothing."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from experiment.plan import TYPES, make_plan, slices
from experiment.targets import TARGETS
from minikern import cli, swifi

pytestmark = pytest.mark.timeout(60)
DRIVERS = list(TARGETS)


def test_the_same_seed_gives_the_same_plan() -> None:
    a = make_plan(7, 300, DRIVERS, list(TYPES))
    b = make_plan(7, 300, DRIVERS, list(TYPES))
    assert [i.asdict() for i in a] == [i.asdict() for i in b]


def test_the_plan_is_the_same_in_another_process() -> None:
    r = subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "experiment"), "--plan",
                        "--seed", "7", "--faults", "50"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [i.asdict() for i in make_plan(7, 50, DRIVERS, list(TYPES))]


def test_different_seeds_give_different_plans() -> None:
    plans = {json.dumps([i.asdict() for i in make_plan(s, 50, DRIVERS, list(TYPES))])
             for s in range(1, 6)}
    assert len(plans) == 5


def test_a_plan_covers_every_driver_and_type_and_its_specs_are_valid() -> None:
    plan = make_plan(1, 500, DRIVERS, list(TYPES))
    assert {i.driver for i in plan} == set(DRIVERS)
    assert {i.type for i in plan} == set(TYPES)
    for i in plan:
        assert i.kind in TYPES[i.type] and i.kind not in TARGETS[i.driver].no_kinds
        if i.type != "process":
            assert swifi.check_spec(i.type, i.spec()) is None, i


def test_drivers_and_types_are_honoured() -> None:
    plan = make_plan(2, 100, ["hello"], ["code"])
    assert {(i.driver, i.type) for i in plan} == {("hello", "code")}


@pytest.mark.parametrize("trials", [1, 2, 3, 7, 200])
def test_slices_keep_the_plan_in_order(trials: int) -> None:
    plan = make_plan(3, 100, DRIVERS, list(TYPES))
    parts = slices(plan, trials)
    assert [i for p in parts for i in p] == plan
    assert len(parts) == min(trials, 100) and all(parts)
