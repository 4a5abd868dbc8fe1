"""RS's pure policy, driven by a fake clock: exact, instant, no processes."""
from __future__ import annotations

import pytest

from minikern import sysconf
from minikern.sysconf import ConfError
from services.rs.policy import Policy, Tracker, backoff_delay, parse_size

pytestmark = pytest.mark.timeout(10)


def policy(keys: str) -> Policy:
    conf = sysconf.parse(f"service x {{ program drivers.hello; {keys} }};")
    return Policy.from_conf(conf.services["x"])


def test_backoff_first_failure_at_once_then_doubling_to_the_cap() -> None:
    assert [backoff_delay(n, 1.0) for n in range(8)] == [0, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(3, 0.25, cap=1.0) == 1.0
    assert backoff_delay(5, None) == 0  # backoff off: always at once


def test_tracker_backoff_sequence_with_a_fake_clock() -> None:
    t = Tracker(policy("backoff 1s; stable 10s; restarts off;"))
    now, delays = 100.0, []
    for _ in range(7):
        t.on_up(now)
        now += 0.5  # crashes half a second after each start: never stable
        d = t.on_failure(now)
        delays.append(d.delay)
        now += d.delay
    assert delays == [0, 1, 2, 4, 8, 16, 30]


def test_counter_resets_after_a_stable_run() -> None:
    t = Tracker(policy("backoff 1s; stable 10s; restarts off;"))
    t.on_up(0.0)
    assert t.on_failure(1.0).delay == 0
    t.on_up(1.0)
    assert t.on_failure(2.0).delay == 1
    t.on_up(3.0)
    assert t.on_failure(12.9).delay == 2  # up 9.9 s: not yet stable
    t.on_up(15.0)
    d = t.on_failure(25.0)  # up exactly 10 s: stable, so at once again
    assert d.delay == 0 and d.failures == 1
    t.on_up(25.0)
    assert t.on_failure(26.0).delay == 1


def test_intensity_limit_more_than_n_within_t_gives_up() -> None:
    t = Tracker(policy("backoff off; restarts 3 10s;"))
    assert [t.on_failure(x).giveup for x in (0.0, 1.0, 2.0)] == [False] * 3
    assert t.on_failure(9.0).giveup  # the 4th within 10 s
    t.reset()  # bin/service up
    assert not t.on_failure(9.5).giveup


def test_intensity_window_slides() -> None:
    t = Tracker(policy("backoff off; restarts 2 5s;"))
    assert not t.on_failure(0.0).giveup
    assert not t.on_failure(4.0).giveup
    assert not t.on_failure(5.5).giveup  # the failure at 0 has left the window
    assert t.on_failure(6.0).giveup


def test_policy_keys_and_defaults() -> None:
    p = policy("period 250ms; backoff 2s; stable 1m; restarts 5 30s; script rs.single; "
               "memory_limit 64M; cpu_limit 90%; depends ds inet; publish drv.chr.x;"
               .replace("1m", "60s"))
    assert (p.period, p.backoff, p.stable, p.restarts, p.window) == (0.25, 2, 60, 5, 30)
    assert (p.script, p.memory_limit, p.cpu_limit) == ("rs.single", 64 << 20, 90.0)
    assert p.depends == ("ds", "inet") and p.publish == "drv.chr.x"
    d = policy("")
    assert d.period == 5.0 and d.restarts == 10 and d.publish == "rs.x" and d.script is None
    assert policy("period off; restarts off;").period is None
    assert policy("restarts off;").restarts is None
    assert parse_size("512KiB") == 512 << 10 and parse_size("1000") == 1000


@pytest.mark.parametrize("keys", ["script ../../bin/sh;", "restarts many;", "cpu_limit x;",
                                  "memory_limit lots;", "period soon;"])
def test_bad_policy_keys_are_refused(keys: str) -> None:
    with pytest.raises(ConfError):
        policy(keys)


def test_the_failures_in_the_window_are_those_the_limit_counts() -> None:
    """bin/status's "failures in the current window": older ones have left it."""
    t = Tracker(Policy(restarts=5, window=10, backoff=None))
    for now in (0.0, 4.0, 8.0):
        t.on_failure(now)
    assert [t.in_window(now) for now in (8.0, 10.0, 14.5, 30.0)] == [3, 3, 1, 0]
