"""The link follows the cable: the NIC's link-change interrupt reaches INET at once.

A booted system on the UDP wire; the operator pulls the cable with the board's
knob (`bin/hwctl set nic.link false`).  The RTL8139 raises PUN/LinkChg, the
driver reads MSR.LINKB and PULLs, and INET logs a `link` event and shows the
link down in `bin/ifconfig`, with the same driver instance (no restart needed).
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minikern.deadline import wait_for
from tests.net import lab

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[lab.Node]:
    children = lab.Children(tmp_path)
    port, far = lab.free_udp_port(), lab.free_udp_port()
    n = lab.Node(tmp_path, "a", lab.SYSTEM_IP, f"udp:{port}:{far}", children)
    try:
        n.boot()
        yield n
    finally:
        children.reap()
        n.halt()


def command(node: lab.Node, *argv: str) -> str:
    done = subprocess.run([sys.executable, str(lab.REPO / "bin" / argv[0]), "--run-dir",
                           str(node.run_dir), *argv[1:]], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ifconfig(node: lab.Node) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(command(node, "ifconfig", "--json"))
    return answer


def link_events(node: lab.Node) -> list[str]:
    return [e["state"] for e in node.events() if e["kind"] == "link" and e["source"] == "inet"]


def test_a_pulled_cable_is_seen_without_a_driver_restart(node: lab.Node) -> None:
    wait_for(lambda: ifconfig(node)["link"] is True, 10, "the link up after boot")
    driver = node.service(lab.DRIVER)["pid"]
    command(node, "hwctl", "set", "nic.link", "false")
    wait_for(lambda: ifconfig(node)["link"] is False, 10, "ifconfig to show the link down")
    wait_for(lambda: link_events(node) == ["down"], 10, "INET's link event")
    command(node, "hwctl", "set", "nic.link", "true")
    wait_for(lambda: ifconfig(node)["link"] is True, 10, "ifconfig to show the link up")
    wait_for(lambda: link_events(node) == ["down", "up"], 10, "INET's second link event")
    assert node.service(lab.DRIVER)["pid"] == driver  # the same instance saw both changes
