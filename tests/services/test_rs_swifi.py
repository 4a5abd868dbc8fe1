"""SWIFI faults through RS (RsReq.CRASH with a spec, minikern/swifi.py): RS checks the spec,
hands it over with the heartbeat's reply, and the fault fires inside the component, at its own
code or at the messages it sends, leaving an activation record."""
from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from minikern import params
from minikern import rsctl as ctl
from minikern.const import CharReq, Err, RsReq
from minikern.ipc import IpcError
from minikern.proto import Message
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import boot_rs, service, wait_event

pytestmark = pytest.mark.timeout(60)
Make = Callable[..., SystemUnderTest]
GREETING = "Hello, World!"


def read(s: SystemUnderTest) -> Message | None:
    try:
        return s.connect("reader", "operator").sendrec(service(s, "hello")["endpoint"],
                                                       Message(CharReq.READ))
    except IpcError:
        return None


def test_a_code_fault_raises_at_a_line_of_the_driver(make_system: Make) -> None:
    s = boot_rs(make_system, hello="period 200ms; backoff off;")
    pid = service(s, "hello")["pid"]
    spec = {"id": "t1", "kind": "raise", "nth": 1, "module": "drivers.hello"}
    ctl.request(s.run_dir, RsReq.CRASH, label="hello", fault="code", spec=spec)
    record = s.run_dir / params.SWIFI_DIR / "t1.json"
    wait_for(lambda: read(s) is None or record.exists(), 10, "the fault to fire")
    crash = wait_event(s, "crash", "hello")
    assert crash["reason"] == "exception" and crash["pid"] == pid
    assert "InjectedCodeFault" in crash["traceback"]
    fired = json.loads(record.read_text())
    assert fired["pid"] == pid and "drivers/hello/" in fired["where"]
    wait_event(s, "restart", "hello")


def test_an_interface_fault_corrupts_a_field_the_driver_sends(make_system: Make) -> None:
    """The reply to READ is the next message hello sends with fields: sorted, ``data`` is
    the first, and ``zero`` empties it; the driver lives on (nothing detects it)."""
    s = boot_rs(make_system, hello="period 200ms; backoff off;")
    pid = service(s, "hello")["pid"]
    spec = {"id": "t2", "kind": "field", "nth": 1, "pick": 0, "corrupt": "zero"}
    ctl.request(s.run_dir, RsReq.CRASH, label="hello", fault="interface", spec=spec)
    record = s.run_dir / params.SWIFI_DIR / "t2.json"
    seen: list[object] = []

    def corrupted() -> bool:
        m = read(s)
        seen.append(None if m is None else m.get("data"))
        return record.exists()
    wait_for(corrupted, 10, "the fault to fire")
    assert seen[-1] == ""  # the record is written as the reply goes: that reply
    assert "data" in json.loads(record.read_text())["detail"]
    m = read(s)
    assert m is not None and m.get("data") == GREETING  # one-shot: the next reply is sound
    assert service(s, "hello")["pid"] == pid


@pytest.mark.parametrize("fault,spec", [
    ("code", {"id": "x", "kind": "raise"}),
    ("code", {"id": "x/../y", "kind": "raise", "module": "drivers.hello"}),
    ("interface", {"id": "x", "kind": "leak"}),
    ("resource", {"id": "x", "kind": "spin", "nth": -1}),
    ("resource", "spin"),
])
def test_a_bad_spec_is_refused_and_harms_nothing(make_system: Make, fault: str,
                                                 spec: object) -> None:
    s = boot_rs(make_system)
    pid = service(s, "hello")["pid"]
    with pytest.raises(ctl.RsError) as e:
        ctl.request(s.run_dir, RsReq.CRASH, label="hello", fault=fault, spec=spec)
    assert e.value.code == Err.EINVAL
    m = read(s)
    assert m is not None and m.get("data") == GREETING and service(s, "hello")["pid"] == pid
