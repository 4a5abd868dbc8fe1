"""A compromised driver, for tests/kernel/test_hostile_host.py: started by RS with a
driver's privileges like any service, it tries, when asked (request ATTACK, field ``key``:
the operator key, as if it had leaked), every host-level attack a driver could make on
the rest of the system, and answers with what each attempt got: "done" (the attack
worked) or the error that refused it (an errno name, or "no answer" for the kernel's
silence).  It never stops at the first refusal: every attempt is made.
"""
from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import zmq

from minikern import ipc, params, sef
from minikern.proto import Message, codec

ATTACK = 1
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
TARGETS = ("hw", "rs", "ds", "hello")  # the components it tries to reach, by label


def components() -> dict[str, int]:
    """The pids of the system's other components, found as any process finds them: in
    /proc, by the name the template gives each (mk-LABEL)."""
    found: dict[str, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            comm = Path(f"/proc/{name}/comm").read_text().strip()
            ppid = int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if comm.startswith("mk-") and ppid == os.getppid():  # this system's, not another's
            found[comm[3:]] = int(name)
    return found


def attempt(fn: Callable[[], object]) -> str:
    try:
        fn()
    except TimeoutError:  # an OSError too: first
        return "no answer"
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e))
    return "done"


def ptrace(pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(PTRACE_ATTACH, pid, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    libc.ptrace(PTRACE_DETACH, pid, 0, 0)


def connect_unix(path: Path, kind: int = socket.SOCK_STREAM) -> None:
    with socket.socket(socket.AF_UNIX, kind) as s:
        s.connect(str(path))
        if path.name == "board.ctl":  # through: set a knob, as bin/hwctl does
            s.sendall(b'{"proto": "MKCTL", "version": 1, "verb": "set", '
                      b'"knob": "ata.bad_sectors", "value": [0]}\n')
            if b'"ok"' not in s.recv(4096):
                raise OSError(errno.EPROTO, "refused by the board")


def bind_unix(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


def operator_hello(address: str, key: bytes) -> None:
    """HELLO with the operator key from this process: admitted only if the kernel answers."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    try:
        sock.connect(address)
        sock.send(codec.encode_hello(key, os.getpid(), "evil", {
            "sys_proc": True, "traps": [1, 2, 3, 4, 5, 7], "ipc": ["ALL"], "kcalls": [2, 17],
            "io": [], "irq": [], "mem": []}))
        if not sock.poll(2000):
            raise TimeoutError
    finally:
        sock.close(linger=0)


def last_descriptor(pid: int) -> str:
    return sorted(os.listdir(f"/proc/{pid}/fd"), key=int)[-1]


def attacks(key: bytes) -> dict[str, str]:
    run = Path(ipc.boot_record["run_dir"])
    kernel, pids = os.getppid(), components()
    out = {"targets": ",".join(sorted(pids))}
    for label in TARGETS:
        pid = pids.get(label, -1)
        out[f"ptrace {label}"] = attempt(lambda pid=pid: ptrace(pid))
        out[f"read {label}'s memory"] = attempt(
            lambda pid=pid: open(f"/proc/{pid}/mem", "rb").close())
        out[f"list {label}'s descriptors"] = attempt(
            lambda pid=pid: os.listdir(f"/proc/{pid}/fd"))
        out[f"open {label}'s shared memory"] = attempt(
            lambda pid=pid: open(f"/proc/{pid}/fd/{last_descriptor(pid)}", "rb").close())
    out["read the operator key"] = attempt(lambda: (run / params.OPERATOR_KEY).read_bytes())
    out["set a board knob"] = attempt(lambda: connect_unix(run / "board.ctl"))
    out["connect to the bus"] = attempt(lambda: connect_unix(run / params.BUS_SOCKET))
    out["write the event log"] = attempt(
        lambda: open(run / params.EVENT_LOG, "ab").close())
    out["read the disk image"] = attempt(lambda: open(run / "disk.img", "rb").close())
    out["make a file in the run directory"] = attempt(
        lambda: os.close(os.open(run / "planted", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)))
    out["make a socket in the run directory"] = attempt(
        lambda: bind_unix(run / "planted.sock"))
    out["list the run directory"] = attempt(lambda: os.listdir(run))
    out["remove the kernel socket"] = attempt(lambda: os.unlink(run / params.KERNEL_SOCKET))
    out["operator HELLO with the key"] = attempt(
        lambda: operator_hello(ipc.boot_record["address"], key))
    for label in TARGETS:  # last: a kill that worked must not hide the other results
        pid = pids.get(label, -1)
        out[f"kill {label}"] = attempt(lambda pid=pid: os.kill(pid, signal.SIGKILL))
    out["kill the kernel"] = attempt(lambda: os.kill(kernel, signal.SIGKILL))
    return out


def main() -> None:
    ctx = sef.startup()

    def do_attack(m: Message) -> Message:
        key = m.fields.get("key")
        return Message(0, attacks(key if isinstance(key, bytes) else b""))

    print(f"hostile: uid {os.getuid()} groups {os.getgroups()}", file=sys.stderr, flush=True)
    sef.serve(ctx, {ATTACK: do_attack})


if __name__ == "__main__":
    main()
