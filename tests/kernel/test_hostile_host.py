"""A compromised driver at the host level (issue 13): booted as root, each component runs
in its own protection domain (minikern/domain.py), and a driver started by RS with a
driver's privileges (tests/kernel/hostile.py) tries to kill the kernel and the other
components, trace them and read their memory, open their shared memory, read the operator
key, set the board's knobs, join the bus, write the event log, read the disk image, make
a file or a socket in the run directory or list it, and connect as an operator with a
leaked key.  Each attempt is refused by the host (an errno) or by the kernel (no answer),
and the system is unharmed: the same processes up, a round trip through the kernel served.
Two systems booted as root at the same time give their components different uids (each
claims its own block: minikern/domain.py), so neither can signal or trace the other's.

Without root none of this is refused (every component is the booting user): skipped, and
README's table says what holds then.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from minikern import domain, params
from tests.conftest import SystemUnderTest, conf_entry, wait_for
from tests.kernel.hostile import ATTACK, TARGETS

pytestmark = pytest.mark.timeout(180)
OPEN_ROOT_HOME = Path(__file__).resolve().parents[2] / "tools" / "open_root_home.sh"

CONF = """
boot hw rs ds;
service operator {{ user yes; system GETINFO KILL SHUTDOWN; ipc ALL; }};
service rs {{ program services.rs.main; args hello hostile; system PRIVCTL KILL GETINFO SHUTDOWN;
             ipc ALL; }};
service hostile {{ program tests.kernel.hostile; system DEVIO SETALARM; ipc SYSTEM USER rs ds;
                  io 0x1f0:8; period 10s; }};
""" + "\n".join(conf_entry(label) for label in ("hw", "ds", "hello"))

# What refuses each attempt: the host's permission checks (uid, mode, sticky bit, dumpable),
# or the kernel's silence for an operator HELLO from another uid.
REFUSED = {"read the operator key": "EACCES", "set a board knob": "EACCES",
           "connect to the bus": "EACCES", "write the event log": "EACCES",
           "read the disk image": "EACCES", "remove the kernel socket": "EACCES",
           "make a file in the run directory": "EACCES", "list the run directory": "EACCES",
           "make a socket in the run directory": "EACCES",
           "operator HELLO with the key": "no answer", "kill the kernel": "EPERM",
           **{f"{what} {label}": "EPERM" for label in TARGETS for what in ("kill", "ptrace")},
           **{f"{what} {label}'s {thing}": "EACCES" for label in TARGETS
              for what, thing in (("read", "memory"), ("list", "descriptors"),
                                  ("open", "shared memory"))}}


NEEDS_ROOT = ("needs root: without it every component runs as the booting user, who may "
              "signal, trace and read them all (README, What a compromised driver can do)")


@contextlib.contextmanager
def booted_as_root() -> Iterator[SystemUnderTest]:
    """A system booted as root with CONF, its components up, in domains."""
    top = Path(tempfile.mkdtemp(prefix="mk-hostile-"))  # in /tmp: other uids may search it
    top.chmod(0o711)
    run_dir = top / "run"
    # A host whose Python lives in root's 0700 home (pyenv) cannot run components under
    # other uids: the system then boots in a mount namespace where /root may be searched.
    wrap = [str(OPEN_ROOT_HOME)] if domain.unreachable(run_dir) else []
    try:
        s = SystemUnderTest(run_dir, CONF.format(), wrap=wrap)
        try:
            wait_for(lambda: {"hello", "hostile"} <= {p["label"] for p in s.info()["procs"]},
                     timeout=30)
            yield s
        finally:
            s.close()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def domains_or_skip() -> None:
    """Skip where components cannot get uids of their own: not root, or the code (this
    checkout, the interpreter) in a folder other users may not enter even with /root
    opened by OPEN_ROOT_HOME (a clone in ``mktemp -d``'s 0700 folder, say)."""
    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)
    if why := domain.code_unreachable(frozenset({Path("/root")})):
        pytest.skip(f"components cannot run as their own uids here: {why}")


@pytest.fixture
def hostile() -> Iterator[SystemUnderTest]:
    domains_or_skip()
    with booted_as_root() as s:
        yield s


def pids(s: SystemUnderTest) -> dict[str, int]:
    return {p["label"]: p["pid"] for p in s.info()["procs"] if not p["operator"]}


def test_each_component_runs_as_its_own_uid_without_privileges(hostile: SystemUnderTest) -> None:
    running = pids(hostile)
    uids = {label: psutil.Process(pid).uids() for label, pid in running.items()}
    assert all(u.real == u.effective == u.saved for u in uids.values())
    assert len({u.real for u in uids.values()}) == len(running)  # no two share one
    assert all(params.DOMAIN_UID_FIRST <= u.real <= params.DOMAIN_UID_LAST for u in uids.values())
    for label, pid in running.items():
        status = Path(f"/proc/{pid}/status").read_text()
        assert "NoNewPrivs:\t1" in status, label
        assert os.stat(f"/proc/{pid}/mem").st_uid == 0, label  # not dumpable: its files are root's
        groups = psutil.Process(pid).gids()
        assert groups.real == uids[label].real
        fds = sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
        assert fds[:3] == [0, 1, 2], label


def test_a_compromised_driver_is_refused_everything_and_harms_nothing(
        hostile: SystemUnderTest) -> None:
    before = pids(hostile)
    key = (hostile.run_dir / params.OPERATOR_KEY).read_bytes()  # as if it had leaked
    got = dict(hostile.ask("hostile", ATTACK, key=key).fields)
    assert set(got.pop("targets").split(",")) >= set(TARGETS)
    assert got == REFUSED
    assert pids(hostile) == before  # nobody killed, nobody restarted
    info = hostile.info()  # the kernel serves a round trip
    assert info["kernel_pid"] == hostile.system.kernel.pid
    assert info["counters"]["hello_refused"] >= 1
    assert (hostile.run_dir / params.KERNEL_SOCKET).exists()


def test_two_systems_booted_as_root_give_their_components_different_uids() -> None:
    domains_or_skip()
    with booted_as_root() as one, booted_as_root() as two:
        first = {label: psutil.Process(pid).uids().real for label, pid in pids(one).items()}
        second = {label: psutil.Process(pid).uids().real for label, pid in pids(two).items()}
        assert set(first) == set(second) >= {"hw", "rs", "ds", "hello", "hostile"}
        assert not set(first.values()) & set(second.values())  # hello of one is not the other's
        assert one.info()["kernel_pid"] != two.info()["kernel_pid"]
