"""A driver that tries the system calls the components' seccomp filter denies
(minikern/seccomp.py), started by RS with a driver's privileges (the ``sandboxed`` entry
of tests/kernel/test_seccomp_live.py), and still does its normal work.

TRY {victim}: PTRACE_ATTACH on ``victim`` (a sibling component's pid), bpf(), userfaultfd(),
unshare(CLONE_NEWUSER), each through libc's syscall(); then the same four from a child
process it starts (which inherits the filter).  The answer maps each attempt to the errno
it got (0 when it was carried out, which the test treats as a failure), and ``child`` to
the child's own answer.  READ answers ``data``: the driver works on.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

from minikern import seccomp, sef
from minikern.const import CharReq, Err
from minikern.proto import Message

TRY = 1
CLONE_NEWUSER = 0x10000000
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
WALL = 0x40000000  # waitpid's __WALL: a tracee that is not our child
CHILD_TIMEOUT = 30.0  # seconds for the child to answer


def attempts(victim: int) -> dict[str, int]:
    """Each denied call, its errno (0: it was carried out; a trace is undone at once)."""
    arch = seccomp.host_arch()
    if arch is None:
        return {}
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long

    def errno_of(name: str, *args: int) -> int:
        result = libc.syscall(ctypes.c_long(arch.numbers[name]), *map(ctypes.c_long, args))
        if result >= 0 and name == "ptrace":  # a planted bug must not leave a sibling stopped:
            os.waitpid(victim, WALL)  # its attach stop, then let it go
            libc.syscall(ctypes.c_long(arch.numbers[name]), ctypes.c_long(PTRACE_DETACH),
                         ctypes.c_long(victim), ctypes.c_long(0), ctypes.c_long(0))
        elif result >= 0 and name == "userfaultfd":
            os.close(result)
        return 0 if result >= 0 else ctypes.get_errno()

    return {"ptrace": errno_of("ptrace", PTRACE_ATTACH, victim, 0, 0),
            "bpf": errno_of("bpf", 0, 0, 0), "userfaultfd": errno_of("userfaultfd", 0),
            "unshare": errno_of("unshare", CLONE_NEWUSER)}


def try_denied(m: Message) -> Message:
    victim = m.get("victim")
    if type(victim) is not int or victim <= 1:
        return Message(Err.EINVAL, {})
    out: dict[str, object] = dict(attempts(victim))
    child = subprocess.run([sys.executable, "-m", __name__, str(victim)], text=True,
                           capture_output=True, timeout=CHILD_TIMEOUT, stdin=subprocess.DEVNULL)
    out["child"] = json.loads(child.stdout) if child.returncode == 0 else child.stderr
    return Message(Err.OK, out)


def main() -> None:
    if len(sys.argv) == 2 and sys.argv[0] != __name__:  # the child: python -m ... VICTIM
        print(json.dumps(attempts(int(sys.argv[1]))))
        return
    ctx = sef.startup()
    sef.serve(ctx, {TRY: try_denied,
                    CharReq.READ: lambda m: Message(Err.OK, {"data": "still working"})})


if __name__ == "__main__":
    main()
