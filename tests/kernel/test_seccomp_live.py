"""The components' seccomp filter in a booted system (minikern/seccomp.py, issue 13): a
driver started by RS with a driver's privileges (tests/kernel/sandboxed_driver.py) tries
PTRACE_ATTACH on a sibling component, bpf(), userfaultfd() and unshare(CLONE_NEWUSER),
and gets EPERM for each, as does a child process it starts; it goes on serving, and so
does the rest of the system.

Booted by the suite (as root, the run directory under pytest's private temporary root)
the components run as root, not in their own domains: without the filter the trace
would succeed (CAP_SYS_PTRACE outweighs non-dumpability), so this is the case where the
filter alone refuses it.  Booted as a user, non-dumpability refuses it too.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from minikern import seccomp
from minikern.const import CharReq, Err
from tests.conftest import SystemUnderTest
from tests.kernel.sandboxed_driver import TRY
from tests.services.rs_helpers import RS_CONF, wait_state

pytestmark = pytest.mark.timeout(180)

SANDBOXED = """service sandboxed {{ program tests.kernel.sandboxed_driver; ipc SYSTEM USER rs;
    period 5s; }};
"""
DENIED = {"ptrace": errno.EPERM, "bpf": errno.EPERM, "userfaultfd": errno.EPERM,
          "unshare": errno.EPERM}


def untraced(pid: int) -> bool:
    """Neither traced nor stopped."""
    status = dict(line.split(":\t", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    return status["TracerPid"].strip() == "0" and status["State"][0] in "RSD"


@pytest.mark.skipif(seccomp.unsupported() != "", reason=seccomp.unsupported() or "supported")
@pytest.mark.timeout(180)
def test_a_component_and_its_child_get_eperm_and_work_on(
        make_system: Callable[..., SystemUnderTest]) -> None:
    conf = (RS_CONF.replace("{hello}", "period 5s;").replace("{agent}", "period off;")
            .replace("{start}", "hello sandboxed") + SANDBOXED)
    system = make_system("rs ds", conf)
    for label in ("hello", "sandboxed"):
        wait_state(system, label, "up", timeout=30)
    sibling = next(p["pid"] for p in system.info()["procs"] if p["label"] == "hello")

    got = system.ask("sandboxed", TRY, victim=sibling)
    assert got.type == Err.OK
    child = got.fields.pop("child")
    assert got.fields == DENIED
    assert child == DENIED, "a child of a component inherits the filter"

    assert system.ask("sandboxed", CharReq.READ).fields["data"] == "still working"
    r = system.ask("hello", CharReq.READ)  # the sibling is neither stopped nor traced
    assert r.type == Err.OK and r.fields["data"] == "Hello, World!"
    assert untraced(sibling)
    assert wait_state(system, "sandboxed", "up")["state"] == "up"
    assert system.system.kernel.poll() is None


@pytest.mark.timeout(180)
def test_turned_off_the_console_says_so_once_and_nothing_is_denied(
        make_system: Callable[..., SystemUnderTest], monkeypatch: pytest.MonkeyPatch) -> None:
    """MINIKERN_SECCOMP=0 (the kernel passes its environment to the templates): no filter,
    one console line at boot saying so."""
    if seccomp.host_arch() is None:
        pytest.skip("no filter for this architecture")
    monkeypatch.setenv("MINIKERN_SECCOMP", "0")
    conf = (RS_CONF.replace("{hello}", "period 5s;").replace("{agent}", "period off;")
            .replace("{start}", "sandboxed") + SANDBOXED)
    system = make_system("rs ds", conf)
    wait_state(system, "sandboxed", "up", timeout=30)
    victim = next(p["pid"] for p in system.info()["procs"] if p["label"] == "ds")
    got = system.ask("sandboxed", TRY, victim=victim)
    assert got.type == Err.OK
    assert errno.EPERM not in (got.fields["bpf"], got.fields["userfaultfd"])
    assert system.console().count("without a seccomp filter: turned off") == 1
    assert untraced(victim)  # traced, then let go (the driver detaches at once)
