"""A connection the kernel does not admit (over its bounds: refused unanswered) is a refusal
the caller can tell from the kernel's death: ETIMEDOUT while the kernel lives, KernelGone
once it does not (minikern/ipc.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from minikern import ipc, params
from minikern.const import Err

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def silent_kernel(tmp_path: Path) -> Iterator[str]:
    """A socket where a kernel would be, that takes connections and never answers."""
    address = f"ipc://{tmp_path}/kernel.sock"
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.bind(address)
    yield address
    sock.close(linger=0)


def test_not_admitted_by_a_live_kernel_is_etimedout(
        silent_kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(params, "CALL_TIMEOUT", 2.0)
    with pytest.raises(ipc.IpcError) as refused:
        ipc.Connection(silent_kernel, b"k" * 32, "t", {}, kernel_pid=os.getpid())
    assert not isinstance(refused.value, ipc.KernelGone)
    assert refused.value.code == Err.ETIMEDOUT


def test_not_answered_by_a_dead_kernel_is_kernel_gone(
        silent_kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(params, "CALL_TIMEOUT", 2.0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with pytest.raises(ipc.KernelGone):
        ipc.Connection(silent_kernel, b"k" * 32, "t", {}, kernel_pid=dead.pid)
