"""A hostile component at the IPC level (issue 13): a driver started by RS with a driver's
privileges (tests/kernel/hostile_driver.py) tries IPC outside its mask, kernel calls it
lacks, ports, IRQs and DMA it does not hold, forged and stale endpoints, and floods.  Each
attempt is refused with the error of docs/PROTOCOL.md section 8 and audited (a ``denied``
event; a flood past the rate is summed up in ``denied-suppressed``), and the system is
unharmed: another driver (hello) keeps serving, RS, DS and the board live on.

Host-level attacks (signals, the operator key, other uids) belong to the protection
domains' tests.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

import pytest

from minikern import params
from minikern import rsctl as ctl
from minikern.const import CharReq, Err, KCall, RsReq
from minikern.events import read_all
from tests.conftest import SystemUnderTest, wait_for
from tests.kernel.hostile_driver import ATTACK
from tests.services.rs_helpers import RS_CONF, service, wait_state

pytestmark = pytest.mark.timeout(180)

HOSTILE = """service hostile {{ program tests.kernel.hostile_driver; ipc SYSTEM USER rs hello;
    system DEVIO VDEVIO IRQCTL IOMAP SETGRANT; io 0x378:3; irq 7; period off; }};
"""
EXPECTED = {  # attempt -> the error it must get
    "sendrec_ds": Err.ECALLDENIED, "notify_ds": Err.ECALLDENIED, "sendnb_board": Err.ECALLDENIED,
    "send_any": Err.EINVAL,
    "kill_rs": Err.ECALLDENIED, "privctl": Err.ECALLDENIED, "shutdown": Err.ECALLDENIED,
    "getinfo": Err.ECALLDENIED, "safecopy": Err.ECALLDENIED,
    "devio_foreign": Err.ECALLDENIED, "vdevio_mixed": Err.ECALLDENIED,
    "irq_foreign": Err.ECALLDENIED,
    "sendrec_forged": Err.EDEADSRCDST, "sendrec_stale": Err.EDEADSRCDST,
    "channel_foreign_port": Err.ECALLDENIED, "channel_dma": Err.EPERM,
    "flood_denied": Err.ECALLDENIED,
}
AUDITED = {"SENDREC", "NOTIFY", "SENDNB", "KILL", "PRIVCTL", "SHUTDOWN", "GETINFO",
           "SAFECOPYFROM", "DEVIO", "IRQCTL", "DMAGRANT"}  # a port refused is DEVIO, by any call


def hello_reads(system: SystemUnderTest) -> None:
    r = system.ask("hello", CharReq.READ)
    assert r.type == Err.OK and r.fields["data"] == "Hello, World!"


@pytest.mark.timeout(180)
def test_a_hostile_driver_is_refused_everything_and_harms_nothing(
        make_system: Callable[..., SystemUnderTest]) -> None:
    conf = (RS_CONF.replace("{hello}", "period 5s;").replace("{agent}", "period off;")
            .replace("{start}", "hello hostile")
            .replace("period 200ms", "period 5s")  # the board's heartbeat: a loaded machine
            + HOSTILE)
    system = make_system("hw rs ds", conf)
    for label in ("hello", "hostile"):
        wait_state(system, label, "up", timeout=30)
    stale = system.endpoint_of("hello")
    ctl.request(system.run_dir, RsReq.REFRESH, label="hello")  # its old endpoint goes stale
    wait_for(lambda: service(system, "hello")["state"] == "up"
             and system.endpoint_of("hello") != stale, 30, "hello restarted")
    victim = system.endpoint_of("hello")

    got = system.ask("hostile", ATTACK, victim=victim, stale=stale)
    assert got.type == Err.OK
    results = {k: Err(v) if v in Err._value2member_map_ else v for k, v in got.fields.items()}
    assert {k: results.get(k) for k in EXPECTED} == EXPECTED
    assert results["flood_notify"] == Err.OK  # allowed by its mask: coalesced, harmless
    assert results["flood_sendnb"] in (Err.OK, Err.ENOTREADY)

    def audited() -> set[str]:
        return {json.loads(e)["call"] for e in system.audit() if '"hostile"' in e}
    wait_for(lambda: audited() >= AUDITED, 30,
             f"every refusal audited (missing: {AUDITED - audited()})")
    def summed_up() -> bool:
        return any(e["kind"] == "denied-suppressed" and e.get("label") == "hostile"
                   for e in read_all(system.run_dir))
    # The audit sums a window's suppressed refusals up at the next refusal after it ends
    # (minikern/audit.py): a flood quicker than one window waits for the next, which this
    # attack makes, after the window.
    with contextlib.suppress(AssertionError):
        wait_for(summed_up, 2 * params.DENIED_WINDOW + 1, "the flood summed up by itself")
    if not summed_up():
        system.ask("hostile", ATTACK, victim=victim, stale=stale)
    wait_for(summed_up, 30, "the flood summed up")

    hello_reads(system)  # the system is unharmed: another driver serves
    assert system.system.kernel.poll() is None
    for label in ("rs", "ds", "hw", "hello", "hostile"):
        assert any(p["label"] == label for p in system.info()["procs"]), f"{label} is gone"
    assert service(system, "hostile")["state"] == "up"
    assert system.connect("op", "operator").kcall(KCall.GETINFO)["procs"]
