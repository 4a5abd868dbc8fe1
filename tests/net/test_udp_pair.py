"""Two systems joined by the NIC's UDP wire on 127.0.0.1: runs anywhere, no privileges.

bin/nc in system A (10.0.0.2) sends to bin/nc -l in system B (10.0.0.3),
first a short transfer with nothing injected, then 20 MB while A's rtl8139
driver is SIGKILLed every second (or raises, or hangs: the checks of the
Linux-peer tests); both must arrive whole (identical sha256), A's recovery
log must show every fault repaired, and B's driver is never hit.
"""
from __future__ import annotations

import pytest

from tests.net import lab
from tests.net.conftest import FAULTS, TRANSFER_BYTES, check_recovered, check_transfer

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_20_mb_between_two_systems_while_the_sender_driver_fails(
        udp_pair: tuple[lab.Node, lab.Node], fault: str) -> None:
    a, b = udp_pair
    seed = 31 + list(FAULTS).index(fault)
    r = lab.system_to_system(a, b, 1_000_000, seed, 7000 + seed)
    check_transfer(r, 1_000_000, seed)
    reason, signal, interval = FAULTS[fault]
    with lab.injecting(a, fault, interval) as inj:
        r = lab.system_to_system(a, b, TRANSFER_BYTES, seed + 10, 7100 + seed)
    check_transfer(r, TRANSFER_BYTES, seed + 10)
    check_recovered(a, inj, reason, signal)
    hit = [e for e in b.events() if e.get("label") == lab.DRIVER and e.get("kind") != "up"]
    assert b.service(lab.DRIVER)["incarnation"] == 0, f"B's driver was not hit, yet: {hit}"
