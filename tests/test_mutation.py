"""bin/bench mutation on RS's policy with a handful of mutants: the counts add up, the
developer's tree is never touched, and nothing is left behind (no process, no copy)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minikern import cli

pytestmark = pytest.mark.timeout(90)
MODULE = "services/rs/policy.py"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_small_sample_of_rs_policy_adds_up(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    survivors = tmp_path / "survivors.txt"
    before = digest(cli.REPO_ROOT / MODULE)
    out = subprocess.run(
        [sys.executable, str(cli.REPO_ROOT / "bin" / "bench"), "mutation", "--module", MODULE,
         "--sample", "4", "--jobs", "1", "--survivors", str(survivors), "--json"],
        capture_output=True, text=True, timeout=80, env={**os.environ, "TMPDIR": str(tmp)})
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.splitlines()[-1])

    m = r["modules"][MODULE]
    assert m["mutants"] == 4 and m["generated"] > 4
    assert m["killed"] + m["survived"] == m["mutants"]
    assert 0 <= m["timeout"] <= m["killed"]
    assert m["score"] == pytest.approx(m["killed"] / m["mutants"], abs=0.001)
    assert r["total"]["mutants"] == 4 and r["sampled"] and r["sample"] == 4
    assert r["kernel"]["mutants"] == 0 and r["kernel_score"] is None
    assert len(r["survivors"]) == m["survived"]
    listed = [ln for ln in survivors.read_text().splitlines() if ln.startswith(MODULE + ":")]
    assert len(listed) == m["survived"]
    assert MODULE in out.stdout and "sample of 4" in out.stdout  # the readable table

    assert digest(cli.REPO_ROOT / MODULE) == before
    assert list(tmp.iterdir()) == []  # the private copies are gone
