"""Real programs on the system's file system through bin/mount, each also with at_wini
SIGKILLed every second during it (issue 9's "Must show"): tar x and diff -r, git, a
thousand small files, cp of a file with a bad sector.  No error may reach a program
because of a driver death, and after each test fsck.minix -f on the halted image is
clean (never -a or -r: on a v3 image they corrupt it)."""
from __future__ import annotations

import os
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minikern import cli
from tests.storage import mountlab
from tests.storage.mountlab import StorageNode, at_wini_killer

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(mountlab.unavailable() is not None,
                                 reason=str(mountlab.unavailable()))]
KILLS = pytest.mark.parametrize("kills", [False, True], ids=["quiet", "at_wini-killed"])


@pytest.fixture
def storage_system(tmp_path: Path) -> Iterator[StorageNode]:
    """A booted system on a fresh MINIX v3 image; halted (mounts first) and reaped after."""
    node = StorageNode(tmp_path / "rig")
    try:
        node.boot()
        yield node
    finally:
        node.close()


def run(*argv: str, cwd: Path | None = None, check: bool = True,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check:
        assert r.returncode == 0, f"{' '.join(argv)} exited {r.returncode}: {r.stderr}"
    return r


def halted_and_clean(node: StorageNode, kills: mountlab.lab.Injector | None) -> None:
    """bin/halt's way (mounts first), then fsck; the kills landed and were all followed."""
    if kills is not None:
        assert kills.count >= 1, "at_wini was never killed during the test"
        assert not kills.errors, kills.errors
    node.halt()
    clean, said = node.fsck()
    assert clean, said


@KILLS
def test_tar_x_of_a_source_tree_then_diff(storage_system: StorageNode, tmp_path: Path,
                                          kills: bool) -> None:
    tarball = tmp_path / "minikern.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(cli.REPO_ROOT / "minikern", arcname="minikern",
                filter=lambda t: None if "__pycache__" in t.name else t)
    mnt = storage_system.mount(tmp_path / "mnt")
    with at_wini_killer(storage_system, kills) as inj:
        run("tar", "xf", str(tarball), "-C", str(mnt))
        run("diff", "-r", str(cli.REPO_ROOT / "minikern"),
            str(mnt / "minikern"), "-x", "__pycache__")
    halted_and_clean(storage_system, inj)


@KILLS
def test_git_init_add_commit_log(storage_system: StorageNode, tmp_path: Path,
                                 kills: bool) -> None:
    repo = storage_system.mount(tmp_path / "mnt") / "repo"
    git = ["git", "-c", "user.name=Minix Tester", "-c", "user.email=t@example.invalid",
           "-c", "init.defaultBranch=main"]
    with at_wini_killer(storage_system, kills) as inj:
        run(*git, "init", "-q", str(repo))
        for i in range(20):
            (repo / f"file{i}.txt").write_text(f"line {i}\n" * (i + 1))
        run(*git, "add", ".", cwd=repo)
        run(*git, "commit", "-q", "-m", "first", cwd=repo)
        (repo / "file0.txt").write_text("changed\n")
        run(*git, "commit", "-q", "-am", "second", cwd=repo)
        log = run(*git, "log", "--format=%s", cwd=repo).stdout.split()
        fsck = run(*git, "fsck", "--strict", cwd=repo)
    assert log == ["second", "first"]
    assert "error" not in fsck.stderr
    halted_and_clean(storage_system, inj)


@KILLS
def test_a_thousand_small_files(storage_system: StorageNode, tmp_path: Path,
                                kills: bool) -> None:
    d = storage_system.mount(tmp_path / "mnt") / "many"
    names = [f"f{i:04d}" for i in range(1000)]
    with at_wini_killer(storage_system, kills) as inj:
        d.mkdir()
        for n in names:
            (d / n).write_bytes(n.encode() * 10)
        assert sorted(os.listdir(d)) == names
        assert all((d / n).read_bytes() == n.encode() * 10 for n in names[::97])
        for n in names:
            (d / n).unlink()
        assert os.listdir(d) == []
        d.rmdir()
    halted_and_clean(storage_system, inj)


@KILLS
def test_cp_of_a_file_with_a_bad_sector_fails_and_the_disk_stays_clean(
        storage_system: StorageNode, tmp_path: Path, kills: bool) -> None:
    mnt = storage_system.mount(tmp_path / "mnt")
    marker = os.urandom(64 * 1024)  # unique: its place in the image names its sectors
    (mnt / "victim.bin").write_bytes(marker * 4)
    run("sync", str(mnt / "victim.bin"))  # fsync: on the disk now
    at = storage_system.image.read_bytes().find(marker)
    assert at >= 0, "the file's data are not in the image after fsync"
    storage_system.reboot()  # the file server's cache starts empty: the read reaches the disk
    storage_system.set_bad_sectors([at // 512 + 8])  # a sector inside the file's first 64 KiB
    mnt = storage_system.mount(tmp_path / "mnt")
    with at_wini_killer(storage_system, kills) as inj:
        deadline = time.monotonic() + 60
        while True:  # with kills, cp again until one has landed between or during them
            r = run("cp", str(mnt / "victim.bin"), str(tmp_path / "copy.bin"), check=False)
            assert r.returncode != 0 and "Input/output error" in r.stderr, r
            assert (mnt / "victim.bin").stat().st_size == len(marker) * 4  # the rest answers
            if inj is None or inj.count >= 1 or time.monotonic() > deadline:
                break
    storage_system.set_bad_sectors([])
    halted_and_clean(storage_system, inj)
