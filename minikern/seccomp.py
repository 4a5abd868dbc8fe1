"""A seccomp filter for every component: system calls no component needs answer EPERM.

Runs in the template (``domain.enter``, after no_new_privs and before any component
code), so it holds for every process the kernel starts, the board included, and for
every process they start (a filter is inherited across fork and exec, and with
no_new_privs nothing exec'd can shed it).  The kernel itself, bin/boot and the operator
tools are not filtered.  Built without a libseccomp binding (there is none well kept on
PyPI: README, "Protection domains"), as Chrome's and many sandboxes' are: a classic-BPF
program assembled here from ``struct sock_filter`` instructions and installed with
seccomp(2), SECCOMP_SET_MODE_FILTER with SECCOMP_FILTER_FLAG_TSYNC so that every thread
of the process (ZeroMQ's I/O threads may have started) gets it at once.

The policy is a deny-list, checked in this order on each call's ``seccomp_data``:

1. the call's ABI (``arch``) is not the one the filter was built for: EPERM (on x86_64,
   ``int 0x80`` would reach the i386 table, where the numbers below mean other calls);
   on x86_64 a number with the x32 bit (``X32_BIT``) set: EPERM, the x32 ABI as a whole;
2. a number in DENIED: EPERM.  These widen the host kernel's attack surface or reach
   other processes, and no component, nor anything it runs, needs them: tracing and
   reading another process (ptrace, process_vm_*), loading code into the host kernel
   (kexec, modules, bpf), mounts and namespaces (the new mount API included), swap,
   reboot, keyrings, accounting, the clock, file handles (they bypass path checks) and
   host I/O ports (the emulated devices are reached through the kernel and the board);
   perf_event_open and userfaultfd are favourite exploit primitives;
3. personality: allowed only to read the persona (0xffffffff) or set the default one
   (PER_LINUX, 0), not to turn off address-space randomisation for what it execs;
4. clone with a namespace flag (CLONE_NS_FLAGS in the low word of its first argument):
   EPERM, as unshare is; clone3, whose flags are in memory a filter cannot read: ENOSYS,
   so that the C library falls back to clone (glibc does; Docker's filter does the same);
5. everything else is allowed.

Only the architectures in ARCHES are known; on any other host ``install`` installs
nothing (the kernel says so once on the console at boot: ``unsupported``).  A failed
install raises OSError: the template then dies before the component runs, as for any
step of its domain.  ``params.SECCOMP`` (MINIKERN_SECCOMP=0) turns it off for debugging.
"""
from __future__ import annotations

import ctypes
import errno
import platform
import struct
import sys
from dataclasses import dataclass

from minikern import params

# Classic BPF (linux/filter.h, linux/bpf_common.h)
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = 32-bit word at offset k of seccomp_data
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K: A == k ? jt : jf
BPF_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K: A & k ? jt : jf
BPF_RET_K = 0x06  # BPF_RET | BPF_K: return k
SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
DATA_NR, DATA_ARCH, DATA_ARG0_LOW = 0, 4, 16  # the low word of args[0] (little-endian hosts)

# linux/seccomp.h
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000  # | the errno, in the low 16 bits

X32_BIT = 0x40000000  # __X32_SYSCALL_BIT: x32 system calls are numbered from here
PER_LINUX, PERSONALITY_QUERY = 0, 0xFFFFFFFF
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (linux/sched.h)
CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "swapon", "swapoff", "reboot", "acct", "keyctl", "add_key", "request_key",
    "settimeofday", "clock_settime", "adjtimex", "clock_adjtime",
    "perf_event_open", "userfaultfd", "open_by_handle_at", "name_to_handle_at",
    "iopl", "ioperm",
)


@dataclass(frozen=True)
class Arch:
    """One architecture's ABI: its AUDIT_ARCH_* value and its system call numbers (from
    the kernel's syscall table; a DENIED name missing here does not exist there)."""
    name: str
    audit: int
    x32: bool  # numbers with X32_BIT set reach the x32 ABI
    numbers: dict[str, int]


ARCHES = {a.name: a for a in (
    Arch("x86_64", 0xC000003E, True, {  # arch/x86/entry/syscalls/syscall_64.tbl
        "personality": 135, "clone": 56, "clone3": 435, "seccomp": 317,
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
        "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
        "delete_module": 176, "bpf": 321, "mount": 165, "umount2": 166, "pivot_root": 155,
        "chroot": 161, "unshare": 272, "setns": 308, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
        "swapon": 167, "swapoff": 168, "reboot": 169, "acct": 163, "keyctl": 250,
        "add_key": 248, "request_key": 249, "settimeofday": 164, "clock_settime": 227,
        "adjtimex": 159, "clock_adjtime": 305, "perf_event_open": 298, "userfaultfd": 323,
        "open_by_handle_at": 304, "name_to_handle_at": 303, "iopl": 172, "ioperm": 173}),
    Arch("aarch64", 0xC00000B7, False, {  # include/uapi/asm-generic/unistd.h (no iopl, ioperm)
        "personality": 92, "clone": 220, "clone3": 435, "seccomp": 277,
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
        "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "bpf": 280, "mount": 40, "umount2": 39, "pivot_root": 41,
        "chroot": 51, "unshare": 97, "setns": 268, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
        "swapon": 224, "swapoff": 225, "reboot": 142, "acct": 89, "keyctl": 219,
        "add_key": 217, "request_key": 218, "settimeofday": 170, "clock_settime": 112,
        "adjtimex": 171, "clock_adjtime": 266, "perf_event_open": 241, "userfaultfd": 282,
        "open_by_handle_at": 265, "name_to_handle_at": 264}),
)}


def _stmt(code: int, k: int) -> bytes:
    return SOCK_FILTER.pack(code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> bytes:
    return SOCK_FILTER.pack(code, jt, jf, k)


def _deny(err: int = errno.EPERM) -> bytes:
    return _stmt(BPF_RET_K, SECCOMP_RET_ERRNO | err)


def program(arch: Arch) -> bytes:
    """The filter for ``arch``, as the ``struct sock_filter`` array seccomp(2) takes.
    Each test is a jump over the return just after it, so no offset is ever far."""
    allow = _stmt(BPF_RET_K, SECCOMP_RET_ALLOW)
    code = [_stmt(BPF_LD_W_ABS, DATA_ARCH), _jump(BPF_JEQ_K, arch.audit, 1, 0), _deny(),
            _stmt(BPF_LD_W_ABS, DATA_NR)]
    if arch.x32:
        code += [_jump(BPF_JSET_K, X32_BIT, 0, 1), _deny()]
    for name in DENIED:
        if name in arch.numbers:
            code += [_jump(BPF_JEQ_K, arch.numbers[name], 0, 1), _deny()]
    code += [_jump(BPF_JEQ_K, arch.numbers["clone3"], 0, 1), _deny(errno.ENOSYS),
             # personality: the persona in the low word of args[0] (the kernel reads an int)
             _jump(BPF_JEQ_K, arch.numbers["personality"], 0, 5),
             _stmt(BPF_LD_W_ABS, DATA_ARG0_LOW),
             _jump(BPF_JEQ_K, PERSONALITY_QUERY, 2, 0), _jump(BPF_JEQ_K, PER_LINUX, 1, 0),
             _deny(), allow,
             # clone: its flags in the low word of args[0] (x86_64 and aarch64 alike)
             _jump(BPF_JEQ_K, arch.numbers["clone"], 0, 3),
             _stmt(BPF_LD_W_ABS, DATA_ARG0_LOW), _jump(BPF_JSET_K, CLONE_NS_FLAGS, 0, 1),
             _deny(),
             allow]
    return b"".join(code)


def host_arch() -> Arch | None:
    """This host's entry in ARCHES, or None: a 64-bit little-endian interpreter on a
    machine the table knows (a 32-bit interpreter would make the calls of another ABI)."""
    if struct.calcsize("P") != 8 or sys.byteorder != "little":
        return None
    return ARCHES.get(platform.machine())


def unsupported() -> str:
    """Why no filter will be installed here ("" when one will)."""
    if not params.SECCOMP:
        return "turned off (MINIKERN_SECCOMP=0)"
    if host_arch() is None:
        return (f"{platform.machine()} ({struct.calcsize('P') * 8}-bit, {sys.byteorder}-"
                "endian) is not in minikern/seccomp.py's table")
    return ""


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> bool:
    """Install the filter on every thread of this process; False (nothing done) when
    ``unsupported``.  Needs no_new_privs set first (or CAP_SYS_ADMIN).  OSError if the
    host kernel refuses it."""
    arch = host_arch()
    if not params.SECCOMP or arch is None:
        return False
    data = program(arch)
    code = ctypes.create_string_buffer(data, len(data))
    prog = _SockFprog(len(data) // SOCK_FILTER.size, ctypes.addressof(code))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    result = libc.syscall(ctypes.c_long(arch.numbers["seccomp"]),
                          ctypes.c_ulong(SECCOMP_SET_MODE_FILTER),
                          ctypes.c_ulong(SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(prog))
    if result < 0:
        raise OSError(ctypes.get_errno(), "seccomp")
    if result > 0:  # TSYNC: the id of a thread that could not take the filter
        raise OSError(errno.EAGAIN, f"seccomp: thread {result} could not be synchronised")
    return True
