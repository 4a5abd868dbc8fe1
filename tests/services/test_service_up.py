"""bin/service up PROGRAM: any program, in the repository or out of it, with its own policy and
recovery script; and down then up as a fresh start (MINIX purges a stopped label's DS entries)."""
from __future__ import annotations

import json
import shutil
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minikern import ds, programs, rsctl
from minikern.const import CharReq, Err, RsReq
from minikern.proto import Message
from services.rs import define
from tests.conftest import SystemUnderTest, open_to_components, wait_for
from tests.services.rs_helpers import boot_rs, events, service, wait_event, wait_state
from tests.services.test_commands import BIN

pytestmark = pytest.mark.timeout(60)
Make = Callable[..., SystemUnderTest]

DRIVER = '''"""An out-of-tree driver: READ answers its first argument and its incarnation."""
import sys

from minikern import sef
from minikern.const import CharReq, Err
from minikern.proto import Message


def main() -> None:
    ctx = sef.startup()
    word = sys.argv[1]
    sef.serve(ctx, {CharReq.READ: lambda m: Message(Err.OK, {"data": word,
                                                             "incarnation": ctx.incarnation})})
'''
SCRIPT = '''#!/bin/sh
echo "$1 $2 $3" >> "$MINIKERN_RUN_DIR/outside.log"
exec "$MINIKERN_PYTHON" "$MINIKERN_ROOT/bin/service" --run-dir "$MINIKERN_RUN_DIR" restart "$1"
'''


def service_cmd(s: SystemUnderTest, *args: str, cwd: Path, path: str = ""
                ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != programs.SEARCH_PATH}
    if path:
        env[programs.SEARCH_PATH] = path
    return subprocess.run([sys.executable, str(BIN / "service"), "--run-dir", str(s.run_dir),
                           *args], capture_output=True, text=True, timeout=30, cwd=cwd, env=env)


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A folder outside the repository with a driver and a recovery script."""
    domains = os.environ.get("MINIKERN_TEST_DOMAINS") == "1"  # booted as root: a component's
    top = open_to_components() if domains else tmp_path  # uid must reach it
    folder = top / "outside"
    folder.mkdir()
    (folder / "faraway.py").write_text(DRIVER)
    (folder / "fixit").write_text(SCRIPT)
    (folder / "fixit").chmod(0o755)
    yield folder
    if domains:
        shutil.rmtree(top, ignore_errors=True)


def read(s: SystemUnderTest, label: str) -> dict[str, object]:
    conn = s.connect("reader", "operator")
    return dict(conn.sendrec(service(s, label)["endpoint"], Message(CharReq.READ)).fields)


def test_an_out_of_tree_driver_with_its_own_script_and_policy(make_system: Make,
                                                              outside: Path) -> None:
    s = boot_rs(make_system, ds=True)
    r = service_cmd(s, "up", "./faraway.py", "--args", "bonjour", "--period", "250ms",
                    "--restarts", "5 30s", "--script", "./fixit", "--ipc", "SYSTEM USER rs ds",
                    cwd=outside)
    assert r.returncode == 0, r.stderr
    up = service(s, "faraway")
    assert r.stdout == f"service up faraway: done (endpoint {up['endpoint']}, pid {up['pid']})\n"
    assert (up["program"], up["args"]) == (str(outside / "faraway.py"), ["bonjour"])
    assert (up["period"], up["restarts"], up["window"]) == (0.25, 5, 30)
    assert up["script"] == str(outside / "fixit")
    assert read(s, "faraway") == {"data": "bonjour", "incarnation": 0}
    os.kill(up["pid"], signal.SIGKILL)  # the script restarts it, as rs.restart would
    wait_event(s, "restart", "faraway")
    again = wait_state(s, "faraway", "up")
    assert (s.run_dir / "outside.log").read_text() == "faraway signal 1\n"
    assert read(s, "faraway") == {"data": "bonjour", "incarnation": 1}
    assert again["pid"] != up["pid"]


def test_names_are_found_on_the_search_path(make_system: Make, outside: Path,
                                            tmp_path: Path) -> None:
    s = boot_rs(make_system, ds=True)
    r = service_cmd(s, "up", "faraway", "--label", "near", "--args", "salut", "--script",
                    "fixit", "--ipc", "SYSTEM USER rs ds", cwd=tmp_path,
                    path=f"/nonexistent:{outside}")
    assert r.returncode == 0, r.stderr
    assert service(s, "near")["program"] == str(outside / "faraway.py")
    assert service(s, "near")["script"] == str(outside / "fixit")
    # A module of the repository, under a label of its own.
    r = service_cmd(s, "up", "drivers.hello", "--label", "hello2", "--ipc", "SYSTEM USER rs ds",
                    cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert read(s, "hello2")["data"] == "Hello, World!"


def test_what_is_not_there_is_an_error_at_up(make_system: Make, outside: Path,
                                             tmp_path: Path) -> None:
    s = boot_rs(make_system, ds=True)
    r = service_cmd(s, "up", "./nosuch.py", cwd=outside)
    assert (r.returncode, r.stderr) == (1, f"service: no program file {outside}/nosuch.py\n")
    r = service_cmd(s, "up", "./faraway.py", "--script", "fixme", cwd=outside)
    assert r.returncode == 1
    assert r.stderr.startswith("service: no recovery script 'fixme' in ")
    r = service_cmd(s, "up", "faraway", cwd=tmp_path)  # not on a search path, not a label
    assert r.returncode == 1 and "no service 'faraway'" in r.stderr
    r = service_cmd(s, "up", "./faraway.py", "--system", "NOSUCHCALL", cwd=outside)
    assert (r.returncode, r.stderr) == (
        1, "service: EINVAL: service faraway: unknown kernel call 'NOSUCHCALL'\n")
    r = service_cmd(s, "down", "hello", "--period", "1s", cwd=outside)
    assert r.returncode == 1 and "options are for up PROGRAM" in r.stderr
    # RS checks again what comes on the wire: a file gone since, a core label, a live one.
    def up(label: str, **keys: list[str]) -> rsctl.RsError:
        with pytest.raises(rsctl.RsError) as e:
            rsctl.request(s.run_dir, RsReq.UP, label=label, service=keys)
        return e.value
    gone = up("gone", program=[str(outside / "gone.py")])
    assert (gone.code, gone.reason) == (Err.EINVAL, f"no program file {outside}/gone.py")
    assert up("ds", program=["drivers.hello"]).code == Err.EPERM
    assert up("hello", program=["drivers.hello"]).code == Err.EBUSY
    assert up("x", program=["drivers.hello"], user=["yes"]).code == Err.EINVAL
    assert not any(e["label"] in ("gone", "x") for e in events(s))


def test_down_purges_the_label_and_up_is_a_fresh_start(make_system: Make) -> None:
    """hello keeps its open count in DS, private: after a crash it is restored; after down
    and up it starts again from zero, incarnation 0, as a new service."""
    s = boot_rs(make_system, ds=True)
    conn = s.connect("tester", "operator")
    opened = conn.sendrec(service(s, "hello")["endpoint"], Message(CharReq.OPEN))
    assert opened["open_counter"] == 1
    os.kill(service(s, "hello")["pid"], signal.SIGKILL)
    wait_event(s, "restart", "hello")
    wait_state(s, "hello", "up")
    assert read(s, "hello")["open_counter"] == 1 and service(s, "hello")["incarnation"] == 1
    rd = ["--run-dir", str(s.run_dir)]
    assert subprocess.run([sys.executable, str(BIN / "service"), *rd, "down", "hello"],
                          timeout=30).returncode == 0
    def hello_keys() -> list[str]:
        return [e["key"] for e in ds.list_entries(conn, r"hello.*|drv\.chr\.hello|rs\.hello",
                                                  operator=True)]
    wait_for(lambda: hello_keys() == ["rs.hello"], what="hello's entries purged")
    assert ds.retrieve(conn, "rs.hello") == "down"
    assert subprocess.run([sys.executable, str(BIN / "service"), *rd, "up", "hello"],
                          timeout=30).returncode == 0
    fresh = wait_state(s, "hello", "up")
    assert fresh["incarnation"] == 0 and read(s, "hello")["open_counter"] == 0
    r = subprocess.run([sys.executable, str(BIN / "status"), *rd, "--json", "hello"],
                       capture_output=True, text=True, timeout=30)
    assert json.loads(r.stdout)["incarnation"] == 0


@pytest.mark.parametrize(("label", "keys", "why"), [
    ("rs", {"program": ["drivers.hello"]}, "label:"),
    ("a b", {"program": ["drivers.hello"]}, "label:"),
    ("x", {}, "service: a map"),
    ("x", {"args": ["a"]}, "service: no program"),
    ("x", {"program": ["drivers.hello"], "slot": ["3"]}, "'slot' is not a key"),
    ("x", {"program": ["drivers.hello"], "ipc": "ALL"}, "ipc: a list"),
    ("x", {"program": ["drivers.hello"], "args": ["\n"]}, "args: a list"),
    ("x", {"program": ["drivers.nosuch"]}, "no module 'drivers.nosuch'"),
    ("x", {"program": ["drivers.hello"], "period": ["soon"]}, "not a duration"),
    ("x", {"program": ["drivers.hello"], "script": ["../../bin/sh"]}, "script must be"),
    ("x", {"program": ["drivers.hello"], "script": ["rs.nosuch"]}, "no recovery script"),
])
def test_rs_refuses_a_definition_that_cannot_run(label: str, keys: object, why: str) -> None:
    answer = define.entry(label, keys)
    assert isinstance(answer, str) and why in answer, answer


def test_a_good_definition_is_an_entry_with_its_keys() -> None:
    entry = define.entry("x", {"program": ["drivers.hello"], "script": ["rs.restart"],
                               "ipc": ["SYSTEM", "rs"], "period": ["1s"]})
    assert not isinstance(entry, str)
    assert entry.get("program") == "drivers.hello" and entry.keys["ipc"] == ["SYSTEM", "rs"]
