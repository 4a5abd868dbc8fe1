"""The system against the Linux kernel's TCP/IP, through the NIC's TAP backend in a namespace.

Linux (10.0.0.1) and the system (10.0.0.2) share only the TAP device, inside
a namespace the fixture creates and deletes; nothing leaves it.  The 20 MB
transfers, in each direction, run while the rtl8139 driver is SIGKILLed from
outside every second, or made to raise an exception, or to hang: TCP must deliver every
byte once and in order (identical sha256 at both ends), and the recovery
log must show each instance's crash, its replacement and INET taking the
replacement back.  Needs root; skipped with the reason otherwise.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.net import lab
from tests.net.conftest import (FAULTS, check_recovered, check_transfer, most_faults,
                                transfer_bytes)

pytestmark = pytest.mark.timeout(300)


def test_ping_command_gets_answers(linux: lab.LinuxTap) -> None:
    if shutil.which("ping") is None:
        pytest.skip("no ping binary (iputils) here; the raw-socket ICMP echo test covers it")
    ping = subprocess.run(["ip", "netns", "exec", linux.ns, "ping", "-c", "3", "-W", "2",
                           lab.SYSTEM_IP], capture_output=True, text=True, timeout=60)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert " 0% packet loss" in ping.stdout, ping.stdout


def test_raw_icmp_echo_gets_answers(linux: lab.LinuxTap) -> None:
    pinger = linux.peer("ping", lab.SYSTEM_IP, 3)
    assert linux.children.read_json(pinger, 60) == {"sent": 3, "received": 3}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("direction", ["from-linux", "to-linux"])
def test_20_mb_while_the_driver_fails_every_second(linux: lab.LinuxTap, direction: str,
                                                   fault: str) -> None:
    seed = (11 if direction == "from-linux" else 21) + list(FAULTS).index(fault)
    reason, signal, interval = FAULTS[fault]
    with lab.injecting(linux.node, fault, interval, most_faults(fault)) as inj:
        if direction == "from-linux":
            r = lab.linux_to_system(linux, transfer_bytes(fault), seed, 5000 + seed)
        else:
            r = lab.system_to_linux(linux, transfer_bytes(fault), seed, 6000 + seed)
    check_transfer(r, transfer_bytes(fault), seed)
    check_recovered(linux.node, inj, reason, signal)
