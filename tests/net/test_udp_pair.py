"""Two systems joined by the NIC's UDP wire on 127.0.0.1: runs anywhere, no privileges.

bin/nc in system A (10.0.0.2) sends to bin/nc -l in system B (10.0.0.3),
first a short transfer with nothing injected, then 20 MB while A's rtl8139
driver is SIGKILLed every second; both must arrive whole (identical sha256),
and A's recovery log must show every kill repaired.
"""
from __future__ import annotations

import pytest

from tests.net import lab
from tests.net.conftest import TRANSFER_BYTES, check_recovered, check_transfer

pytestmark = pytest.mark.timeout(300)


def test_20_mb_between_two_systems_while_the_sender_driver_is_killed(
        udp_pair: tuple[lab.Node, lab.Node]) -> None:
    a, b = udp_pair
    r = lab.system_to_system(a, b, 1_000_000, 21, 7000)
    check_transfer(r, 1_000_000, 21)
    with lab.injecting(a, "sigkill") as inj:
        r = lab.system_to_system(a, b, TRANSFER_BYTES, 22, 7001)
    check_transfer(r, TRANSFER_BYTES, 22)
    check_recovered(a, inj, "signal", "SIGKILL")
    hit = [e for e in b.events() if e.get("label") == lab.DRIVER and e.get("event") != "up"]
    assert b.service(lab.DRIVER)["incarnation"] == 0, f"B's driver was not hit, yet: {hit}"
