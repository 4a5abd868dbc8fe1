"""Every protocol constant of minikern, in one place.

IPC trap numbers, error codes and well-known endpoints carry MINIX 3's names
and numbers (minix/include/minix/ipcconst.h, endpoint.h, sys/errno.h) so that
a reader who knows MINIX recognises them.  The wire format that carries them
is described in docs/PROTOCOL.md; minikern/proto/codec.py is the only code that
builds or parses frames.
"""
from __future__ import annotations

from enum import Enum, IntEnum, IntFlag

PROTO = 1  # protocol version, first field of every header
# The type a receiver gives a message whose body does not decode (the kernel forwards bodies
# unread; minikern/ipc.py): no handler has it, so a server answers EBADREQUEST, as it answers
# any request it does not know, and the sender of a SENDREC is not left waiting.
UNDECODABLE = 0x7FFFFFFF


class Call(IntEnum):
    """IPC traps (a process's request to the kernel)."""

    SEND = 1
    RECEIVE = 2
    SENDREC = 3
    NOTIFY = 4
    SENDNB = 5
    REPLYRECV = 7  # minikern: SENDNB the reply, then RECEIVE, in one trap (L4's reply-and-wait)
    CANCEL = 8  # minikern: end one's own pending RECEIVE with EINTR (too late: dropped)
    HELLO = 64  # minikern: admission of a new connection
    BYE = 65  # minikern: an operator tool's connection detaches (its slot is freed)


class Err(IntEnum):
    """Call results.  0 is OK; failures are negative, with MINIX's numbers."""

    OK = 0
    EPERM = -1
    ENOENT = -2
    ESRCH = -3
    EINTR = -4  # a RECEIVE ended by the receiver's own CANCEL
    EIO = -5
    ENXIO = -6
    E2BIG = -7
    EBADF = -9
    EAGAIN = -35
    ENOMEM = -12
    EACCES = -13
    EFAULT = -14
    EBUSY = -16
    EEXIST = -17
    EXDEV = -18
    ENODEV = -19
    ENOTDIR = -20
    EISDIR = -21
    EINVAL = -22
    ENFILE = -23
    EMFILE = -24
    ENOTTY = -25
    EFBIG = -27
    ENOSPC = -28
    ESPIPE = -29
    EROFS = -30
    EMLINK = -31
    ELOOP = -62
    ENAMETOOLONG = -63
    ENOTEMPTY = -66
    ENOSYS = -78
    EPIPE = -32
    EADDRINUSE = -48
    EISCONN = -56
    ECONNRESET = -54
    ENOTCONN = -57
    ETIMEDOUT = -60
    ECONNREFUSED = -61
    ERESTART = -200
    ENOTREADY = -201
    EDEADSRCDST = -202
    EDONTREPLY = -203
    EBADREQUEST = -212  # the destination cannot handle the request
    ELOCKED = -208
    EBADCALL = -209
    ECALLDENIED = -210
    ETRAPDENIED = -211


class Kind(IntEnum):
    """How a delivered message came: the receiver's status word."""

    REPLY = 0  # the answer to the caller's own trap, no message
    MESSAGE = 1  # a message from SEND / SENDREC / SENDNB / REPLYRECV
    NOTIFY = 2  # a notification (no payload; timestamp or IRQ bitmap in aux)
    KERNEL = 3  # a message from the kernel itself (source SYSTEM)


class Wait(Enum):
    """What a process is blocked in (the kernel's table; GETINFO's ``wait``, ``peer`` on whom)."""
    READY = "ready"  # not in a trap
    SEND = "send"  # SEND blocked until peer receives
    RECV = "recv"  # RECEIVE blocked until peer (or ANY) sends
    SENDREC_SEND = "sendrec-send"  # SENDREC, request not yet taken
    SENDREC_RECV = "sendrec-recv"  # SENDREC, request taken, waiting for the reply
    KCALL = "kcall"  # kernel call forwarded to the board, waiting for its answer


ON_PEER = frozenset({Wait.SEND.value, Wait.SENDREC_SEND.value, Wait.SENDREC_RECV.value})  # waits
# that last until ``peer`` takes the message or answers


class KCall(IntEnum):
    """Kernel calls: requests sent with SENDREC to the SYSTEM endpoint."""

    PRIVCTL = 1  # create a process slot with a privilege structure and start it
    KILL = 2  # send a host signal to a process of the system
    GETINFO = 3  # the process table and the kernel's counters
    SETALARM = 4  # a NOTIFY from CLOCK after a delay
    IRQCTL = 5  # subscribe to / enable / disable an IRQ line held in the caps
    DEVIO = 6  # one port access
    VDEVIO = 7  # a vector of port accesses
    SDEVIO = 8  # string I/O: many accesses of one port (rep insw / outsw)
    IOMAP = 9  # open a direct channel to the board for the held port windows
    SETGRANT = 10  # grant another endpoint access to part of my memory
    REVOKE = 11  # withdraw a grant
    SAFECOPYFROM = 12  # copy from a granter's memory into mine
    SAFECOPYTO = 13  # copy from my memory into a granter's
    SHUTDOWN = 17  # stop the whole system


class KMsg(IntEnum):
    """Types of the messages the kernel itself sends (Kind.KERNEL, source SYSTEM)."""

    EXIT = 1  # to a manager: one of its processes died
    SHUTDOWN = 2  # to every process: exit now


class IrqOp(IntEnum):
    SETPOLICY = 1
    RMPOLICY = 2
    ENABLE = 3
    DISABLE = 4


class CharReq(IntEnum):
    """Requests to a character driver (MINIX CDEV_*; drivers/char, docs/PROTOCOL.md section 22)."""

    OPEN = 0x400
    CLOSE = 0x401
    READ = 0x402
    WRITE = 0x403
    IOCTL = 0x404
    CANCEL = 0x405  # withdraw one of my suspended requests: it is answered EINTR
    SELECT = 0x406
    SEL2_REPLY = 0x482  # driver -> a caller that asked SELECT with SEL_NOTIFY: now ready


class CharFlag(IntFlag):
    """The ``flags`` of a character request (MINIX CDEV_NONBLOCK ...)."""

    NONE = 0
    NONBLOCK = 0x1  # READ / WRITE / IOCTL: answer EAGAIN rather than suspend


class SelOp(IntFlag):
    """SELECT's ``ops`` and the ``ready`` of its answers (MINIX CDEV_OP_* / CDEV_NOTIFY)."""

    NONE = 0
    RD = 0x1
    WR = 0x2
    ERR = 0x4
    NOTIFY = 0x8  # in a request only: tell me later (SEL2_REPLY) if none is ready now


class LpReq(IntEnum):
    """Requests to the printer spooler (services/lpd, docs/PROTOCOL.md section 23)."""

    SUBMIT = 0xD00  # start a job: name and size; answer: its job number
    DATA = 0xD01  # the next bytes of a job being submitted
    STATUS = 0xD02  # the queue and the printer's state (bin/lpq)
    CANCEL = 0xD03  # remove a job (held, queued or printing)


class BdevReq(IntEnum):
    """Requests to a block driver (MINIX BDEV_*; drivers/block, docs/PROTOCOL.md section 19)."""
    OPEN = 0xA00
    CLOSE = 0xA01
    READ = 0xA02
    WRITE = 0xA03
    GATHER = 0xA04  # read into a vector of grants
    SCATTER = 0xA05  # write from a vector of grants
    IOCTL = 0xA06  # DIOCGETP (geometry), DIOCFLUSH


class FsReq(IntEnum):
    """VFS -> a file server (MINIX REQ_*; services/mfs, docs/PROTOCOL.md section 20)."""
    READSUPER = 0xB00
    UNMOUNT = 0xB01
    LOOKUP = 0xB02
    GETNODE = 0xB03
    PUTNODE = 0xB04
    CREATE = 0xB05
    MKDIR = 0xB06
    UNLINK = 0xB07
    RMDIR = 0xB08
    RENAME = 0xB09
    LINK = 0xB0A
    SLINK = 0xB0B
    RDLINK = 0xB0C
    READ = 0xB0D
    WRITE = 0xB0E
    GETDENTS = 0xB0F
    STAT = 0xB10
    CHMOD = 0xB11
    CHOWN = 0xB12
    FTRUNC = 0xB13
    UTIME = 0xB14
    SYNC = 0xB15
    STATVFS = 0xB16


class VfsReq(IntEnum):
    """User programs -> VFS: the file API (services/vfs, docs/PROTOCOL.md section 21)."""
    OPEN = 0xC00
    CLOSE = 0xC01
    READ = 0xC02
    WRITE = 0xC03
    LSEEK = 0xC04
    STAT = 0xC05
    FSTAT = 0xC06
    GETDENTS = 0xC07
    MKDIR = 0xC08
    RMDIR = 0xC09
    UNLINK = 0xC0A
    RENAME = 0xC0B
    LINK = 0xC0C
    SYMLINK = 0xC0D
    READLINK = 0xC0E
    TRUNCATE = 0xC0F
    FSYNC = 0xC10
    SYNC = 0xC11
    CHMOD = 0xC12
    UTIMES = 0xC13
    CHDIR = 0xC14
    STATVFS = 0xC15
    MOUNT = 0xC16
    UMOUNT = 0xC17


# Bounds of the storage protocols (docs/PROTOCOL.md sections 19 to 21).
SECTOR_SIZE = 512  # a block driver's unit of position and count
BDEV_MAX_IO = 128 * 1024  # bytes one block request moves at most (256 sectors: one ATA command)
BDEV_MAX_IOV = 64  # grants in one GATHER or SCATTER
FS_MAX_IO = 32 * 1024  # bytes of data one READ or WRITE message carries (VFS and file servers)
NAME_MAX = 60  # longest file name component (MINIX v3 directory entry)
OPEN_MAX = 256  # file descriptors per process
SYMLOOP_MAX = 40  # symlinks followed in one path lookup
PATH_MAX = 1024  # longest path in a VFS request or a symlink's target, in bytes (MINIX's)

CDEV_MAX_IO = 32 * 1024  # bytes one character READ or WRITE moves at most (in the message)
LP_MAX_JOB = 16 * 1024 * 1024  # bytes of one print job
LP_MAX_JOBS = 32  # jobs the spooler holds at once (queued, printing or being submitted)

# Open flags (NetBSD's values, as MINIX 3 uses them).
O_RDONLY = 0
O_WRONLY = 1
O_RDWR = 2
O_ACCMODE = 3
O_APPEND = 0x8
O_NOFOLLOW = 0x100
O_CREAT = 0x200
O_TRUNC = 0x400
O_EXCL = 0x800
O_DIRECTORY = 0x200000


class DsReq(IntEnum):
    """Requests to the Data Store (services/ds; MINIX DS_*)."""

    PUBLISH = 0x600
    RETRIEVE = 0x601
    DELETE = 0x602
    SUBSCRIBE = 0x603
    CHECK = 0x604
    PURGE = 0x605  # minikern: RS only; drop every entry and subscription a label owns
    LIST = 0x606  # minikern: the entries a caller may see, a page at a time (bin/ds)


class DsFlag(IntFlag):
    """Flags of DS requests (MINIX DSF_*); services/ds/store.py says which request takes which."""

    NONE = 0
    OVERWRITE = 0x1  # PUBLISH: replace my entry; SUBSCRIBE: replace my subscription
    PRIVATE = 0x2  # PUBLISH: only the owner may retrieve it (MINIX DSF_PRIV_RETRIEVE)
    INITIAL = 0x4  # SUBSCRIBE: queue the keys that already match, at once


class RsReq(IntEnum):
    """Requests to the Reincarnation Server (services/rs; MINIX RS_*)."""

    UP = 0x700
    DOWN = 0x701
    RESTART = 0x702
    REFRESH = 0x703
    INIT_DONE = 0x704  # SEF: a (re)started component finished its initialization
    STATUS = 0x705  # the service table, for bin/ps
    CRASH = 0x706  # fault injection, for bin/crash
    SHUTDOWN = 0x707
    PING = 0x708  # SEF's answer to RS's heartbeat NOTIFY; RS's reply carries a pending fault


# The faults RsReq.CRASH injects (its ``fault`` field): kill and segv are signals RS sends
# through the kernel; the others the component does to itself (minikern/sef.py).
FAULTS = ("kill", "segv", "exit", "exception", "panic", "hang")
# SWIFI faults (bin/experiment, minikern/swifi.py): RsReq.CRASH with one of these as ``fault``
# carries ``spec``, a small dict saying which kind and where (swifi.check_spec validates it);
# RS hands both over with the next PING's reply, like the faults above.
SWIFI_FAULTS = ("code", "interface", "resource")
CODE_KINDS = ("raise", "skip", "return", "corrupt", "negate")
INTERFACE_KINDS = ("field", "endpoint", "port", "register", "dma")
RESOURCE_KINDS = ("leak", "spin", "fdleak")
CORRUPTIONS = ("off_by_one", "bitflip", "none", "zero")  # what a corrupted value becomes


class NetReq(IntEnum):
    """Between a network driver and INET.  Drivers call INET (SENDREC); INET only notifies
    drivers, so a hung or dead driver can never block INET (see drivers/net/framework.py)."""

    HELLO = 0x800  # driver -> INET after (re)init: my MAC and link; answer: the mode to set
    PULL = 0x801  # driver -> INET: frames received, transmit completions; answer: frames to send


class SockReq(IntEnum):
    """User processes -> INET: the sockets interface (services/inet)."""

    SOCKET = 0x900
    BIND = 0x901
    LISTEN = 0x902
    ACCEPT = 0x903
    CONNECT = 0x904
    SEND = 0x905
    RECV = 0x906
    CLOSE = 0x907
    SENDTO = 0x908
    RECVFROM = 0x909
    IFSTAT = 0x90A  # the interface as INET sees it: address, link, driver, counters (ifconfig)
    SETOPT = 0x90B  # a TCP socket's options: nodelay (TCP_NODELAY: no Nagle)


# Grant access bits (MINIX safecopies.h).
CPF_READ = 0x1
CPF_WRITE = 0x2

# Endpoints: endpoint = (generation << ENDPOINT_SHIFT) + slot, as in MINIX.
ENDPOINT_SHIFT = 15
GENERATION_SIZE = 1 << ENDPOINT_SHIFT
MAX_NR_TASKS = 1023
NR_TASKS = 3
NR_PROCS = 256

HARDWARE = -1  # source of interrupt notifications (MINIX: HARDWARE == KERNEL)
SYSTEM = -2  # the kernel-call endpoint
CLOCK = -3  # source of alarm notifications
ANY = 0x7ACE
NONE = 0x6ACE
SELF = 0x8ACE

# Fixed slots for the boot image servers every process must be able to find.
RS = 0
DS = 1
HW = 2
FIRST_DYNAMIC_SLOT = 8

# Names of the send-mask groups in a privilege structure (system.conf "ipc").
IPC_ALL = "ALL"
IPC_ALL_SYS = "ALL_SYS"
IPC_SYSTEM = "SYSTEM"
IPC_USER = "USER"
IPC_NONE = "NONE"


def make_endpoint(generation: int, slot: int) -> int:
    return (generation << ENDPOINT_SHIFT) + slot


def endpoint_slot(endpoint: int) -> int:
    return ((endpoint + MAX_NR_TASKS) & (GENERATION_SIZE - 1)) - MAX_NR_TASKS


def endpoint_generation(endpoint: int) -> int:
    return (endpoint + MAX_NR_TASKS) >> ENDPOINT_SHIFT


def err_name(code: int) -> str:
    try:
        return Err(code).name
    except ValueError:
        return str(code)

# Scheduling queues (MINIX 3 proc.h): 0 is the highest, USER_Q user programs' default,
# IDLE_Q the lowest.  system.conf's ``priority`` names one; minikern/sched.py maps it onto
# the host's scheduler.
NR_SCHED_QUEUES = 16
KERNEL_Q = 0  # the kernel (minikern's broker) and, in MINIX, the clock and system tasks
USER_Q = 7  # a user program
IDLE_Q = 15
