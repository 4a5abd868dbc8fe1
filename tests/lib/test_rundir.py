"""The run directory's rules (minikern/rundir.py; README "Where the logs are"): a boot
creates it 0700 or takes it only when it is a real directory of the booting user that no
one else may write; nothing planted inside is followed; bin/halt signals only the
kernel of that run directory."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minikern import boot, cli, params
from minikern.boot import System
from tests.conftest import TEST_CONF, SystemUnderTest

pytestmark = pytest.mark.timeout(60)
Make = Callable[..., SystemUnderTest]
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a run directory owned by "
                             "another uid is made with os.chown")
OTHER_UID = 65534  # nobody


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "system.conf"
    path.write_text(TEST_CONF.format(boot="echo"))
    return path


def refused(run_dir: Path, conf: Path) -> str:
    """Boot into ``run_dir`` expecting the refusal; its message (no kernel was started)."""
    with pytest.raises(RuntimeError) as e:
        System(run_dir, conf).halt()
    return str(e.value)


def test_a_fresh_run_directory_is_made_0700(tmp_path: Path, make_system: Make) -> None:
    os.umask(0o022)
    s = make_system()
    st = os.lstat(s.run_dir)
    if st.st_gid == params.COMPONENT_GID:  # booted as root, in domains: shared with the group
        assert st.st_uid == 0 and st.st_mode & 0o7777 == 0o1710  # minikern/domain.py
    else:
        assert st.st_mode & 0o777 == 0o700 and st.st_uid == os.geteuid()


def test_a_symlink_planted_inside_is_not_written_through(tmp_path: Path, conf: Path) -> None:
    """As the issue found it: a root boot into a directory prepared with symlinks inside
    overwrote the files they named.  The boot is refused; the victims are untouched."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    for name in (params.CONSOLE_LOG, params.OPERATOR_KEY + ".new", params.KERNEL_PIDFILE,
                 params.EVENT_LOG, "system.conf"):
        run_dir = tmp_path / f"run-{name}"
        run_dir.mkdir(mode=0o700)
        (run_dir / name).symlink_to(victim)
        why = refused(run_dir, conf)
        assert name in why and "symbolic link" in why, why
        assert victim.read_text() == "precious\n"
        assert not (run_dir / "boot.image").exists()  # refused before anything was written


def test_a_hard_link_planted_inside_is_refused(tmp_path: Path, conf: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    os.link(victim, run_dir / params.CONSOLE_LOG)
    assert "link" in refused(run_dir, conf)
    assert victim.read_text() == "precious\n"


def test_a_run_directory_that_is_a_symlink_is_refused(tmp_path: Path, conf: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    link = tmp_path / "run"
    link.symlink_to(real)
    assert "symbolic link" in refused(link, conf)
    assert list(real.iterdir()) == []


def test_a_writable_run_directory_is_refused(tmp_path: Path, conf: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.chmod(run_dir, 0o777)
    assert "writable" in refused(run_dir, conf)
    assert list(run_dir.iterdir()) == []


@AS_ROOT
def test_a_run_directory_owned_by_another_uid_is_refused(tmp_path: Path, conf: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    os.chown(run_dir, OTHER_UID, OTHER_UID)
    assert f"uid {OTHER_UID}" in refused(run_dir, conf)
    assert list(run_dir.iterdir()) == []


@AS_ROOT
def test_a_file_inside_owned_by_another_uid_is_refused(tmp_path: Path, conf: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    (run_dir / params.EVENT_LOG).write_text("")
    os.chown(run_dir / params.EVENT_LOG, OTHER_UID, OTHER_UID)
    assert f"uid {OTHER_UID}" in refused(run_dir, conf)


@AS_ROOT
def test_tools_refuse_a_run_directory_owned_by_another_uid(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    (run_dir / params.EVENT_LOG).write_text("")
    os.chown(run_dir, OTHER_UID, OTHER_UID)
    for tool in ("logs", "ps"):
        r = subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / tool), "--run-dir",
                            str(run_dir)], capture_output=True, text=True, timeout=30)
        assert r.returncode == cli.EXIT_FAILED, (tool, r)
        assert f"uid {OTHER_UID}" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process of the booting user that is no kernel: halt must not signal it."""
    p = subprocess.Popen(["sleep", "60"])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def halt_command(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "halt"), "--run-dir",
                           str(run_dir)], capture_output=True, text=True, timeout=30)


def test_halt_does_not_signal_a_process_the_pid_file_names_wrongly(
        tmp_path: Path, bystander: subprocess.Popen[bytes]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    (run_dir / params.KERNEL_PIDFILE).write_text(str(bystander.pid))
    r = halt_command(run_dir)
    assert r.returncode == cli.EXIT_FAILED, r
    assert str(bystander.pid) in r.stderr and "not" in r.stderr, r.stderr
    with pytest.raises(RuntimeError):
        boot.halt(run_dir)
    assert bystander.poll() is None  # still running: nothing was sent to it


def test_halt_does_not_signal_another_run_directorys_kernel(
        tmp_path: Path, make_system: Make) -> None:
    s = make_system()
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    (other / params.KERNEL_PIDFILE).write_text(str(s.system.kernel.pid))
    r = halt_command(other)
    assert r.returncode == cli.EXIT_FAILED and "not" in r.stderr, r
    assert s.system.kernel.poll() is None
    assert cli.kernel_pid(s.run_dir) == s.system.kernel.pid  # its own run directory: it is


def test_a_stale_pid_file_naming_another_process_does_not_stop_a_boot(
        tmp_path: Path, conf: Path, bystander: subprocess.Popen[bytes]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    (run_dir / params.KERNEL_PIDFILE).write_text(str(bystander.pid))
    assert cli.kernel_pid(run_dir) is None
    system = System(run_dir, conf)
    try:
        assert system.wait_ready(timeout=30)
        assert cli.kernel_pid(run_dir) == system.kernel.pid
    finally:
        system.halt()
    assert bystander.poll() is None


def test_the_kernel_itself_writes_its_files_without_following_a_link(tmp_path: Path,
                                                                      conf: Path) -> None:
    """A link planted after bin/boot looked (the same uid racing the boot): the kernel opens
    its pid file and the operator key O_NOFOLLOW, so it fails to start instead of writing
    through the link."""
    from minikern import sysconf
    from minikern.proto import image
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    for name in (params.KERNEL_PIDFILE, params.OPERATOR_KEY + ".new"):
        run_dir = tmp_path / f"run-{name}"
        run_dir.mkdir(mode=0o700)
        (run_dir / "boot.image").write_bytes(image.encode(boot.boot_image(sysconf.load(conf))))
        (run_dir / name).symlink_to(victim)
        r = subprocess.run([sys.executable, "-m", "minikern.kernel", str(run_dir)],
                           capture_output=True, text=True, timeout=30, cwd=cli.REPO_ROOT)
        assert r.returncode != 0 and "Too many levels of symbolic links" in r.stderr, r.stderr
        assert victim.read_text() == "precious\n"
