"""bin/halt unmounts what the run directory's mount records name (minikern/mounts.py): a
record naming a process that is not a bin/mount of that run directory is dropped, and that
process is never signalled."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from minikern import mounts

pytestmark = pytest.mark.timeout(60)


def plant(run_dir: Path, point: Path, pid: int) -> None:
    path = mounts.record_path(run_dir, point)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{{"dir": "{point}", "pid": {pid}, "log": ""}}')


def fake_mount(tmp_path: Path) -> Path:
    """A stand-in for bin/mount's serving process: its command line, and it waits."""
    fake = tmp_path / "bin" / "mount"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text("import time\ntime.sleep(60)\n")
    return fake


def test_a_record_naming_another_process_is_dropped_and_the_process_left_alone(
        tmp_path: Path) -> None:
    run_dir, point = tmp_path / "run", tmp_path / "mnt"
    point.mkdir()
    bystander = subprocess.Popen(["sleep", "60"])
    # a bin/mount of another run directory is not this one's either
    other = subprocess.Popen([sys.executable, str(fake_mount(tmp_path)), "--run-dir",
                              str(tmp_path / "elsewhere"), "-f", str(point)])
    try:
        plant(run_dir, point, bystander.pid)
        assert mounts.find(run_dir, point) is None and mounts.recorded(run_dir) == []
        assert not mounts.record_path(run_dir, point).exists()  # the bad record is gone
        plant(run_dir, point, other.pid)
        assert mounts.unmount_all(run_dir) == []
        assert bystander.poll() is None and other.poll() is None  # neither signalled
    finally:
        for p in (bystander, other):
            p.kill()
            p.wait()


def test_a_mount_process_of_this_run_directory_is_recognised(tmp_path: Path) -> None:
    run_dir, point = tmp_path / "run", tmp_path / "mnt"
    point.mkdir()
    proc = subprocess.Popen([sys.executable, str(fake_mount(tmp_path)), "--run-dir", str(run_dir), "--root",
                             "/", "-f", str(point)])
    try:
        plant(run_dir, point, proc.pid)
        found = mounts.find(run_dir, point)
        assert found is not None and found.pid == proc.pid
        assert [m.pid for m in mounts.recorded(run_dir)] == [proc.pid]
    finally:
        proc.kill()
        proc.wait()
