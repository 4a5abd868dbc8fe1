"""The campaign's plan comes from the seed alone: the same seed gives the same injections (also
as bin/experiment --plan prints them, in another process), another seed others; each fault
kind can reach its driver; cutting the plan into trials loses and reorders nothing."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from experiment import rig
from experiment.plan import TYPES, make_plan, slices
from experiment.targets import TARGETS
from minikern import cli, swifi, sysconf

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


def test_every_driver_of_system_conf_is_a_target() -> None:
    conf = sysconf.load(cli.REPO_ROOT / "etc" / "system.conf")
    drivers = {label for label, s in conf.services.items()
               if (s.get("program") or "").startswith("drivers.")}
    assert drivers == set(TARGETS)


@pytest.mark.parametrize("driver,never,some", [
    ("memory", {"port", "register", "dma"}, set()),  # a shared memory segment, no device
    ("hello", {"port", "register", "dma"}, set()),
    ("printer", {"dma"}, {"port", "register"}),  # LPT1's ports, no DMA
    ("tty", {"dma"}, {"port", "register"}),  # the 16550's ports, no DMA
    ("at_wini", set(), {"port", "register", "dma"}),
])
def test_device_kinds_only_where_the_driver_has_the_device(driver: str, never: set[str],
                                                           some: set[str]) -> None:
    kinds = {i.kind for i in make_plan(4, 400, [driver], ["interface"])}
    assert not kinds & never and some <= kinds
    assert {"field", "endpoint"} <= kinds


@pytest.mark.parametrize("drivers,services", [
    (["tty"], ["tty"]),
    (["printer"], ["printer", "lpd"]),
    (["hello"], ["hello"]),
    (["memory"], ["at_wini", "mfs", "memory", "mfs_ram", "vfs"]),
    (["at_wini", "rtl8139"], ["inet", "rtl8139", "at_wini", "mfs", "vfs"]),
])
def test_the_rig_boots_only_what_its_drivers_need(drivers: list[str],
                                                  services: list[str]) -> None:
    assert rig.boots(drivers) == services
    conf = sysconf.parse(rig.campaign_conf(drivers, 300, only=services))
    assert conf.services["rs"].keys["args"] == services
    for d in drivers:  # the campaign's policy on the targets, as system.conf's keys
        assert conf.services[d].get("period") == "300ms"
        assert conf.services[d].get("restarts") == "off"
    if "vfs" in services:
        mount = ["--mount", "/ram=mfs_ram:memory:0"] if "memory" in services else []
        assert conf.services["vfs"].keys["args"] == ["--root", "at_wini:0", "--fs", "mfs",
                                                     *mount]
        assert conf.services["vfs"].get("system") == "GETINFO"
