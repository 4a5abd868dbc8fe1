"""A CI-sized campaign, run as a person runs it: bin/experiment --json on hello, rtl8139 and
at_wini with every fault type (the other drivers: test_devices.py).  The seed's claims must
hold (no kernel crash, no byte corrupted, every detected failure recovered, the disk clean
under fsck.minix -f and read back intact after a reboot) and the report's files must be there,
the figures real PNGs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from minikern import cli
from tests.storage import mountlab

pytestmark = pytest.mark.timeout(600)
PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = ("outcomes_by_type.png", "outcomes_by_driver.png", "recovery.png", "throughput.png")
KEYS = ["faults", "activated", "detected", "recovered", "kernel_crashes", "other_components_hit",
        "app_errors", "bytes_corrupted", "silent_failures", "median_recovery_ms", "report"]


@pytest.mark.skipif(mountlab.tool("fsck.minix") is None, reason="no fsck.minix on this host")
def test_a_small_campaign_keeps_the_claims(tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "experiment"), "--seed", "1",
                        "--faults", "30", "--period", "300", "--drivers", "hello,rtl8139,at_wini",
                        "--out", str(out), "--json"],
                       capture_output=True, text=True, timeout=580)
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert list(summary) == KEYS
    assert r.returncode == 0, (summary, r.stderr[-3000:])
    assert summary["faults"] == 30 and summary["kernel_crashes"] == 0
    assert summary["bytes_corrupted"] == 0
    assert summary["recovered"] == summary["detected"] > 0
    assert 0 < summary["activated"] <= 30
    report = json.loads((out / "report.json").read_text())
    disk = report["trials"][0]["disk"]
    assert disk["fsck_clean"] and disk["verify"]["files"] > 0 and not disk["verify"]["bad"]
    outcomes = report["trials"][0]["injections"]
    assert {o["type"] for o in outcomes} == {"process", "code", "interface", "resource"}
    assert all(o["detected_by"] in ("exit", "signal", "panic", "exception", "heartbeat",
                                    "resource") for o in outcomes if o["detected"])
    assert "## Outcomes by fault type" in (out / "report.md").read_text()
    import matplotlib.image
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == PNG
        assert matplotlib.image.imread(str(out / name)).shape[0] > 100
