"""A clean template process: imports the libraries, then waits to be told what to run.

Started by the kernel (minikern.kernel.spawn) ahead of need.  It has never run
component code; when the kernel hands it a startup record it becomes that
component, a fresh copy.  Booted as root, the kernel starts it in
params.TEMPLATE_QUEUE, below every service (a refill's start and imports would
otherwise run in the kernel's own queue, above the instance just started), and
moves it to the record's queue before it sends the record, so the component's
code runs there from its first line.  It dies with the kernel
(PR_SET_PDEATHSIG), so no component outlives its system.
"""
from __future__ import annotations

import ctypes
import importlib
import os
import signal
import socket
import sys

import zmq  # noqa: F401  (imported ahead of need: this is what the template saves)

from minikern import domain, ipc, params, sched, sef
from minikern.proto import codec, startup

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1


def _prctl(option: int, arg: int | bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, arg, 0, 0, 0)


def main() -> None:
    fd, kernel_pid = int(sys.argv[1]), int(sys.argv[2])
    sched.bound()  # its queue may be real-time: SIGXCPU demotes it (minikern/sched.py)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != kernel_pid:  # the kernel died before the prctl took effect
        os._exit(0)
    sock = socket.socket(fileno=fd)
    for name in params.TEMPLATE_PRELOAD:  # library code only: no component's code runs here
        importlib.import_module(name)
    try:
        data, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    except OSError:
        os._exit(0)
    sock.close()
    if not data:
        os._exit(0)  # the kernel is discarding this template
    record = startup.decode(data)
    if record is None:  # the kernel sees this process die before its HELLO
        print(f"template: refused a startup record {dict(codec.refused)}", flush=True)
        os._exit(1)
    try:  # its own uid and gid (booted as root), no_new_privs, not dumpable, seccomp, no other fd
        domain.enter(record.get("domain"), fds[:1])
    except OSError as e:  # never run a component with more than it was given
        print(f"template: cannot enter {record['label']}'s domain: {e}", flush=True)
        os._exit(1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # again: a change of uid clears it
    if os.getppid() != kernel_pid:
        os._exit(0)
    ipc.boot_record.update(record)
    ipc.boot_memfd = fds[0] if fds else -1
    _prctl(PR_SET_NAME, ("mk-" + record["label"])[:15].encode())
    sys.argv = [record["module"], *record["args"]]
    sef.run_component(lambda: importlib.import_module(record["module"]).main())


if __name__ == "__main__":
    main()
