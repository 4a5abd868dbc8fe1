"""Fixtures for the network tests: the rigs of tests/net/lab.py, always torn down.

``linux`` is a system on a TAP device in a fresh namespace of its own
(skipped, with the reason, where that cannot be made: not root, no
/dev/net/tun, ``ip netns add`` refused); ``udp_pair`` is two systems on the
UDP wire and runs everywhere.  Teardown halts every system, reaps every
child and deletes the namespace whether the test passed or not.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minikern.deadline import wait_for
from tests.net import lab, netns
from userland.pattern import chunks

TRANSFER_BYTES = 20_000_000
# The faults injected into the driver during transfers: what RS names each in its log
# (reason, signal), and the seconds the injector waits after each replacement is up.  A hang
# takes the driver away for two heartbeat periods (2 s) before RS notices; hung again 1 s
# after each recovery, the driver would be up one second in three, and a peer's TCP, whose
# retransmission timer doubles during an outage (0.2, 0.4, 0.8, 1.6 s: the fourth try comes
# 3 s after the loss), can keep missing the up-windows for a minute.  With 2 s between hangs
# that try lands in the middle of one.
FAULTS = {"sigkill": ("signal", "SIGKILL", 1.0), "exception": ("exception", None, 1.0),
          "hang": ("heartbeat", None, 2.0)}


def transfer_bytes(fault: str) -> int:
    """Bytes for a transfer with Linux (TAP), which must outlast two faults.  A hang lands
    2 s after each recovery and keeps the driver away about 3 s, so the second lands some
    7 s into the transfer: at 5 MB/s, 20 MB was over before it (a CI run saw 'only 1
    faults landed').  Twice as much, with at most HANGS_AT_MOST hangs (most_faults), ends in
    time on a loaded machine too (three times as much with a hang every 5 s did not).  Since
    INET's window scaling and SACK, 20 MB to Linux takes about 2 s on a quiet machine, so a
    kill a second may land only once in it: every fault gets twice as much, and a hang (whose
    second lands some 7 s in) four times (40 MB ended before it in CI)."""
    return TRANSFER_BYTES * (4 if fault == "hang" else 2)


HANGS_AT_MOST = 3


def most_faults(fault: str) -> int | None:
    """How many faults a transfer with Linux takes at the most (None: one every interval)."""
    return HANGS_AT_MOST if fault == "hang" else None


@pytest.fixture
def linux(tmp_path: Path) -> Iterator[lab.LinuxTap]:
    try:
        with lab.linux_tap(tmp_path) as rig:
            yield rig
    except netns.Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture
def udp_pair(tmp_path: Path) -> Iterator[tuple[lab.Node, lab.Node]]:
    with lab.udp_pair(tmp_path) as pair:
        yield pair


def expected_sha256(nbytes: int, seed: int) -> str:
    h = hashlib.sha256()
    for piece in chunks(nbytes, seed):
        h.update(piece)
    return h.hexdigest()


def check_transfer(r: dict[str, Any], nbytes: int, seed: int) -> None:
    """Every byte arrived, in order, once: both ends' digests agree with the pattern's."""
    assert r["bytes"] == nbytes, r
    assert r["received_sha256"] == r["sent_sha256"] == expected_sha256(nbytes, seed), r


def check_recovered(node: lab.Node, inj: lab.Injector | None, reason: str,
                    signal: str | None = None, least: int = 2) -> None:
    """Each instance hit crashed for ``reason`` and was replaced by a new pid and endpoint,
    and INET took each replacement back (driver-back)."""
    assert inj is not None
    assert not inj.errors, inj.errors
    assert inj.count >= least, f"only {inj.count} faults landed during the transfer"
    for pid in inj.pids:
        crash = wait_for(lambda pid=pid: next((e for e in node.events() if e["kind"] == "crash"
                                               and e["label"] == lab.DRIVER and e.get("pid") == pid),
                                              None), 10, f"the crash of {lab.DRIVER} pid {pid}")
        assert crash["reason"] == reason, crash
        if signal is not None:
            assert crash.get("signal") == signal, crash
        restart = wait_for(lambda pid=pid: next((e for e in node.events() if e["kind"] == "restart"
                                                 and e["label"] == lab.DRIVER
                                                 and e.get("old_pid") == pid), None),
                           10, f"the restart after pid {pid}")
        assert restart["new_pid"] != pid, restart
        assert restart["new_endpoint"] != restart["old_endpoint"], restart
    wait_for(lambda: sum(e["kind"] == "driver-back" and "inet" in (e.get("source"), e["label"])
                         for e in node.events()) >= inj.count, 10,
             f"INET's driver-back after each of the {inj.count} faults")
