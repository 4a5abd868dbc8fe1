"""The kernel's size is a headline figure; the code of every process is strictly typed."""
from __future__ import annotations

import subprocess
import sys

import pytest

from minikern.cli import REPO_ROOT
from tools.loc import count_dir

KERNEL_BUDGET = 900  # lines of code in minikern/kernel, per the project's promise
STRICT = ["minikern", "services", "drivers", "hw", "userland"]  # every process's code


def test_kernel_fits_its_budget() -> None:
    counts = count_dir(REPO_ROOT / "minikern" / "kernel")
    assert sum(counts.values()) <= KERNEL_BUDGET, counts


@pytest.mark.timeout(300)
def test_all_process_code_passes_mypy_strict() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (make test installs it)")
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", *STRICT], cwd=REPO_ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

