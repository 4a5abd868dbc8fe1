"""The network application's Linux peer (experiment/rig.py, ``--net-peer``): as root, system
A's board is on a TAP in a network namespace the rig makes, and Linux's own TCP echoes the
16 KiB blocks; the report's meta says which peer was used.  The namespace and its TAP are
gone after the campaign, whether it ends well, fails, or is stopped by Ctrl-C.  Without
root, ``auto`` falls back to the UDP wire and ``linux-tap`` refuses, saying why."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from experiment import main as exp
from experiment import rig as exprig
from experiment import trial
from experiment.plan import make_plan
from experiment.workload import Load
from minikern import cli
from minikern.deadline import wait_for
from tests.net import lab, netns

ROOT_REASON = ("needs root, /dev/net/tun and the ip command: the rig makes a network "
               "namespace and a TAP device")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or shutil.which("ip") is None,
    reason=ROOT_REASON)
EXPERIMENT = [sys.executable, str(cli.REPO_ROOT / "bin" / "experiment")]


def namespaces() -> set[str]:
    """The namespaces the experiment's rigs made that exist now."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return {w for w in out.stdout.split() if w.startswith(exprig.NETNS_PREFIX)}


def gone(made: dict[str, str]) -> bool:
    return not netns.Namespace(made["name"], made["tap"]).exists()


@needs_root
@pytest.mark.timeout(120)
def test_a_campaign_echoes_through_linux_tcp_and_leaves_no_namespace(tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = subprocess.run([*EXPERIMENT, "--seed", "3", "--faults", "5", "--drivers", "rtl8139",
                        "--net-peer", "linux-tap", "--out", str(out), "--json"],
                       capture_output=True, text=True, timeout=110)
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0, (summary, r.stderr[-3000:])
    assert summary["faults"] == 5 and summary["kernel_crashes"] == 0
    assert summary["bytes_corrupted"] == 0 and summary["recovered"] == summary["detected"]
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["net_peer"] == "linux-tap"
    assert "net_peer linux-tap" in (out / "report.md").read_text()
    t = report["trials"][0]
    assert t["net_peer"] == "linux-tap"
    assert t["netns"]["name"].startswith(exprig.NETNS_PREFIX)
    ops = t["loads"]["rtl8139"]["ops"]
    assert len(ops) > 5 and all(n == 16 * 1024 for _, n in ops)  # blocks echoed whole
    assert gone(t["netns"])


@needs_root
@pytest.mark.timeout(120)
def test_a_failed_trial_deletes_its_namespace(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[exprig.Rig] = []  # held: the rig's halt deletes it, not the garbage collector

    def fail(rig: exprig.Rig, _conn: object, _watch: object, loads: dict[str, Load],
             *_: object) -> dict[str, Any]:
        assert rig.netns is not None and rig.netns.exists()
        made.append(rig)
        wait_for(lambda: loads["rtl8139"].ops, 60, "a block echoed by Linux")
        raise RuntimeError("planted: the campaign fails here")

    monkeypatch.setattr(trial, "inject_one", fail)
    with pytest.raises(RuntimeError, match="planted"):
        trial.run_trial(make_plan(1, 1, ["rtl8139"], ["process"]), ["rtl8139"], 1, 300,
                        tmp_path / "t", "linux-tap")
    ns = made[0].netns
    assert ns is not None and not ns.exists()


@needs_root
@pytest.mark.timeout(120)
def test_ctrl_c_deletes_the_namespace(tmp_path: Path) -> None:
    before = namespaces()
    proc = subprocess.Popen([*EXPERIMENT, "--seed", "1", "--faults", "200", "--drivers",
                             "rtl8139", "--net-peer", "linux-tap", "--out",
                             str(tmp_path / "report")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        ns = wait_for(lambda: namespaces() - before, 60, "the rig's namespace").pop()
        probe = netns.Namespace(ns, "")

        def attached() -> bool:  # the board's TAP moved in, Linux's address on it
            return lab.LINUX_IP in probe.ip("addr", "show", check=False).stdout
        wait_for(attached, 60, "the TAP in the namespace")
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
    assert ns not in namespaces()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=30)
    assert f" {exprig.TAP_PREFIX}{ns.removeprefix(exprig.NETNS_PREFIX)}" not in links.stdout


def test_without_root_auto_takes_the_udp_wire_and_linux_tap_says_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for peer in ("auto", "udp"):
        with netns.peer_namespace(peer, "experiment") as ns:
            assert ns is None
    with pytest.raises(SystemExit, match="experiment: needs root"), \
            netns.peer_namespace("linux-tap", "experiment"):
        pass


def test_the_meta_says_which_peer() -> None:
    assert exp._net_peer([{"net_peer": "udp"}, {"net_peer": "udp"}]) == "udp"
    assert exp._net_peer([{"net_peer": "linux-tap"}]) == "linux-tap"
    assert exp._net_peer([{"net_peer": None}, {}]) is None  # no network application
    assert exp.parser().parse_args([]).net_peer == "auto"
