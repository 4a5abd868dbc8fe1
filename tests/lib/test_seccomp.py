"""The components' seccomp filter (minikern/seccomp.py), read by a classic-BPF interpreter
of the test's own against the documented policy (README, "Protection domains"): another
ABI and the x32 ABI refused, each listed call EPERM, personality only to read or set the
default persona, clone with a namespace flag EPERM, clone3 ENOSYS (the C library falls
back to clone), every other call allowed.  The system call numbers are the test's own,
copied from Linux's tables (arch/x86/entry/syscalls/syscall_64.tbl and
include/uapi/asm-generic/unistd.h), not the module's.
"""
from __future__ import annotations

import errno
import os
import platform
import struct
import subprocess
import sys

import pytest

from minikern import params, seccomp

pytestmark = pytest.mark.timeout(60)

ALLOW, ERRNO = 0x7FFF0000, 0x00050000
EPERM, ENOSYS = ERRNO | errno.EPERM, ERRNO | errno.ENOSYS
AUDIT = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
AUDIT_I386 = 0x40000003
CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS = 0x10000000, 0x40000000, 0x00020000
ADDR_NO_RANDOMIZE = 0x0040000
# What threads and fork/vfork pass to clone (glibc's pthread_create, Python's subprocess)
CLONE_THREAD_FLAGS, CLONE_VFORK_FLAGS = 0x3D0F00, 0x4111

DENIED_NAMES = [
    "ptrace", "process_vm_readv", "process_vm_writev", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "mount", "umount2", "pivot_root", "chroot",
    "swapon", "swapoff", "reboot", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key",
    "request_key", "unshare", "setns", "acct", "settimeofday", "clock_settime", "adjtimex",
    "clock_adjtime", "open_by_handle_at", "name_to_handle_at", "iopl", "ioperm",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"]
X86_64 = {
    "read": 0, "write": 1, "openat": 257, "mmap": 9, "futex": 202, "epoll_wait": 232,
    "sendmsg": 46, "recvmsg": 47, "execve": 59, "kill": 62, "prctl": 157, "seccomp": 317,
    "memfd_create": 319, "pidfd_open": 434, "vfork": 58, "exit_group": 231, "getuid": 102,
    "clone": 56, "clone3": 435, "personality": 135,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kexec_load": 246,
    "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "swapon": 167,
    "swapoff": 168, "reboot": 169, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "keyctl": 250, "add_key": 248, "request_key": 249, "unshare": 272, "setns": 308,
    "acct": 163, "settimeofday": 164, "clock_settime": 227, "adjtimex": 159,
    "clock_adjtime": 305, "open_by_handle_at": 304, "name_to_handle_at": 303, "iopl": 172,
    "ioperm": 173, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442}
AARCH64 = {
    "read": 63, "write": 64, "openat": 56, "mmap": 222, "futex": 98, "epoll_pwait": 22,
    "sendmsg": 211, "recvmsg": 212, "execve": 221, "kill": 129, "prctl": 167, "seccomp": 277,
    "memfd_create": 279, "pidfd_open": 434, "exit_group": 94, "getuid": 174,
    "clone": 220, "clone3": 435, "personality": 92,
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kexec_load": 104,
    "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106,
    "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "swapon": 224, "swapoff": 225,
    "reboot": 142, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219,
    "add_key": 217, "request_key": 218, "unshare": 97, "setns": 268, "acct": 89,
    "settimeofday": 170, "clock_settime": 112, "adjtimex": 171, "clock_adjtime": 266,
    "open_by_handle_at": 265, "name_to_handle_at": 264, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442}
TABLES = {"x86_64": X86_64, "aarch64": AARCH64}


def run_bpf(prog: bytes, nr: int, arch: int, args: tuple[int, ...] = (0,) * 6,
            ip: int = 0x401000) -> int:
    """Classic BPF as the kernel runs a seccomp filter, over one ``struct seccomp_data``
    (loads of aligned 32-bit words, jumps forward only, a return value at the end)."""
    args = args + (0,) * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, ip, *args)
    insns = [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    assert len(prog) % 8 == 0 and 0 < len(insns) <= 4096
    a, pc = 0, 0
    while True:
        assert pc < len(insns), "ran off the end of the program"
        code, jt, jf, k = insns[pc]
        cls = code & 0x07
        if code == 0x20:  # ld [k]
            assert k % 4 == 0 and k + 4 <= len(data)
            a = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif cls == 0x05:  # jmp
            op, src = code & 0xF0, code & 0x08
            assert src == 0, "jumps compare with constants only"
            taken = {0x10: a == k, 0x20: a > k, 0x30: a >= k, 0x40: a & k != 0}[op]
            pc += 1 + (jt if taken else jf)
        elif code == 0x06:  # ret k
            return int(k)
        else:
            raise AssertionError(f"unexpected instruction {code:#x} at {pc}")


@pytest.mark.parametrize("name", sorted(TABLES))
def test_the_filter_checks_the_abi_first(name: str) -> None:
    prog = seccomp.program(seccomp.ARCHES[name])
    table = TABLES[name]
    assert struct.unpack_from("<HBBI", prog, 0) == (0x20, 0, 0, 4), "loads arch first"
    for foreign in (AUDIT_I386, AUDIT["aarch64" if name == "x86_64" else "x86_64"]):
        for nr in (table["read"], table["getuid"], 0, 3):
            assert run_bpf(prog, nr, foreign) == EPERM


@pytest.mark.parametrize("name", sorted(TABLES))
def test_each_listed_call_is_denied_and_others_allowed(name: str) -> None:
    prog, table, arch = seccomp.program(seccomp.ARCHES[name]), TABLES[name], AUDIT[name]
    listed = {table[n] for n in DENIED_NAMES if n in table}
    assert name == "aarch64" or len(listed) == len(DENIED_NAMES)
    for n in DENIED_NAMES:
        if n in table:
            assert run_bpf(prog, table[n], arch, (0, 0, 0)) == EPERM, n
    special = {table["clone"], table["clone3"], table["personality"]}
    for nr in range(0, 600):  # everything else, the calls every component makes among them
        if nr not in listed | special:
            assert run_bpf(prog, nr, arch, (1, 2, 3)) == ALLOW, nr
    for n in ("read", "openat", "mmap", "futex", "execve", "kill", "prctl", "seccomp",
              "memfd_create", "pidfd_open", "exit_group"):
        assert run_bpf(prog, table[n], arch) == ALLOW, n


def test_the_x32_abi_is_denied_as_a_whole() -> None:
    prog = seccomp.program(seccomp.ARCHES["x86_64"])
    for nr in (0, 1, 39, 102, 512, 547):  # x32 read, write, getpid, getuid, its own calls
        assert run_bpf(prog, 0x40000000 | nr, AUDIT["x86_64"]) == EPERM


@pytest.mark.parametrize("name", sorted(TABLES))
def test_personality_may_only_be_read_or_set_to_the_default(name: str) -> None:
    prog, nr, arch = seccomp.program(seccomp.ARCHES[name]), TABLES[name]["personality"], AUDIT[name]
    assert run_bpf(prog, nr, arch, (0xFFFFFFFF,)) == ALLOW
    assert run_bpf(prog, nr, arch, (0,)) == ALLOW
    assert run_bpf(prog, nr, arch, (ADDR_NO_RANDOMIZE,)) == EPERM
    assert run_bpf(prog, nr, arch, (0x8,)) == EPERM  # PER_LINUX32


@pytest.mark.parametrize("name", sorted(TABLES))
def test_clone_into_a_namespace_is_denied_and_clone3_falls_back(name: str) -> None:
    prog, table, arch = seccomp.program(seccomp.ARCHES[name]), TABLES[name], AUDIT[name]
    for flags in (CLONE_THREAD_FLAGS, CLONE_VFORK_FLAGS, 0x11 | 0x01000000):  # threads, forks
        assert run_bpf(prog, table["clone"], arch, (flags,)) == ALLOW
    for ns in (CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS):
        assert run_bpf(prog, table["clone"], arch, (CLONE_VFORK_FLAGS | ns,)) == EPERM
    assert run_bpf(prog, table["clone3"], arch, (0,)) == ENOSYS


def test_an_unknown_architecture_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "riscv64")
    assert seccomp.host_arch() is None
    assert "riscv64" in seccomp.unsupported()
    assert seccomp.install() is False


def test_turned_off_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(params, "SECCOMP", False)
    assert "MINIKERN_SECCOMP=0" in seccomp.unsupported()
    assert seccomp.install() is False


CHILD = """
import ctypes, os, subprocess, sys, threading, time
from minikern import domain, seccomp
victim = subprocess.Popen(["sleep", "30"])  # a process it could trace but for the filter
threading.Thread(target=time.sleep, args=(0.5,)).start()  # a thread running gets it too (TSYNC)
domain.enter(None, [])
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(*args):
    r = libc.syscall(*[ctypes.c_long(a) for a in args])
    return 0 if r >= 0 else ctypes.get_errno()
t = seccomp.ARCHES[sys.argv[1]].numbers
traced = errno_of(t["ptrace"], 16, victim.pid, 0, 0)  # PTRACE_ATTACH
if traced == 0:
    os.waitpid(victim.pid, 0)
    errno_of(t["ptrace"], 17, victim.pid, 0, 0)  # PTRACE_DETACH: a planted bug harms nothing
victim.kill()
victim.wait()
print(traced, errno_of(t["bpf"], 0, 0, 0), errno_of(t["userfaultfd"], 0),
      errno_of(t["unshare"], 0x10000000), flush=True)
out = subprocess.run([sys.executable, "-c", "print(open('/proc/self/status').read())"],
                     capture_output=True, text=True).stdout
print([line for line in out.splitlines() if line.startswith("Seccomp:")][0].split()[1])
"""


@pytest.mark.skipif(seccomp.host_arch() is None, reason="no filter for this architecture")
def test_installed_in_a_process_it_holds_for_its_threads_and_children() -> None:
    """domain.enter installs it (no_new_privs first; no root needed): listed calls fail with
    EPERM, the process goes on working, and a child it starts is filtered too (mode 2)."""
    name = next(n for n, a in seccomp.ARCHES.items() if a is seccomp.host_arch())
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", CHILD, name], capture_output=True, text=True,
                         timeout=30, cwd=root, env={**os.environ, "MINIKERN_SECCOMP": "1"})
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.split("\n")[:2]
    assert first.split() == [str(errno.EPERM)] * 4
    assert second == "2"  # SECCOMP_MODE_FILTER, inherited across fork and exec
