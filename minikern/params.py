"""Tunables: every timing and size constant of the system, one commented line each."""
from __future__ import annotations

import os

DEFAULT_RUN_DIR = os.environ.get("MINIKERN_RUN_DIR", "/tmp/minikern-" + str(os.getuid()))
KERNEL_SOCKET = "kernel.sock"  # the kernel's ROUTER socket, inside the run directory
BUS_SOCKET = "bus.sock"  # the kernel's link to the board (only the board may join)
OPERATOR_KEY = "operator.key"  # credential file for operator tools (0600, in the 0700 run dir)
KERNEL_PIDFILE = "kernel.pid"
CONSOLE_LOG = "console.log"  # the components' stdout and stderr, as they print it
EVENT_LOG = "events.log"  # the event stream: one JSON line per event (minikern/events.py)
COM1_SOCKET = "com1.sock"  # COM1's host end (the board's --serial socket; bin/console)
LPT1_PAPER = "lpt1.out"  # the paper of the board's printer on LPT1: what it printed
BOOT_ID = "boot.id"  # this boot's id, drawn by the kernel as it starts, stamped on every event
SWIFI_DIR = "swifi"  # <injection id>.json: where and when an injected SWIFI fault fired
SWIFI_LEAK_CHUNK = 8 << 20  # bytes a "leak" resource fault allocates (and touches) per step
SWIFI_LEAK_CAP = 768 << 20  # ... and never more than this in all: the host must live on
SWIFI_LEAK_STEP = 0.05  # seconds between two leak steps (160 MB/s: a leak, not a CPU hog)
SWIFI_SPIN_MAX = 20.0  # seconds a "spin" fault burns CPU at most, if nothing ends it
SWIFI_FD_LEAK = 256  # descriptors an "fdleak" fault opens and never closes
CRASH_DIR = "crash"  # <pid>.json: why a component died (panic reason, traceback), read by RS
EXIT_PANIC = 70  # exit status of panic() (EX_SOFTWARE)
EXIT_EXCEPTION = 71  # exit status after an unhandled exception

MAX_MESSAGE = 64 * 1024  # largest message body a process may send (bulk data goes through grants)
MAX_KERNEL_ANSWER = 1024 * 1024  # largest body of a kernel call's answer (GETINFO of a full table)
MAX_HEADER = 256  # largest request header, in bytes
MAX_CONNECTIONS = int(os.environ.get("MINIKERN_MAX_CONNECTIONS", "1000"))  # open connections to
#   the kernel socket (at most half its descriptor limit); further ones are refused (ZAP)
MAX_CONNECTIONS_PER_UID = int(os.environ.get("MINIKERN_MAX_CONNECTIONS_PER_UID", "64"))  # open
#   connections of one uid other than the kernel's own (which only MAX_CONNECTIONS bounds)
MAX_CONNECTIONS_PER_PID = int(os.environ.get("MINIKERN_MAX_CONNECTIONS_PER_PID", "16"))  # open
#   connections of one process, whatever its uid (a process needs one)
UNADMITTED_DEADLINE = 2.0  # seconds a connection may stay unadmitted before the kernel cuts it
UNADMITTED_MAX_BYTES = 4096  # bytes of one message from a peer not admitted (a HELLO is ~600)
UNADMITTED_MAX_PARTS = 2  # parts of one message from a peer not admitted (HELLO has one)
ATTACH_TIMEOUT = 2.0  # seconds a fast-path connection may wait to ATTACH before the board drops it
MAX_BUS_CONNECTIONS = 8  # open connections to the bus (the board needs one); further ones refused
BUS_BATCH = 64  # bus frames the kernel takes per loop turn (then one frame of the kernel socket)
BUS_WELCOME_WAIT = 5.0  # seconds the board waits for the kernel to take its hello (< INIT_TIMEOUT)
ADMISSION_BATCH = 64  # connection requests (ZAP) the kernel answers per loop turn
SOCKET_HWM = 1000  # ZeroMQ high-water mark: frames queued per peer before the socket drops
MAX_KERNEL_QUEUE = 1024  # kernel messages queued for one process before new ones are dropped
MAX_GRANTS = 256  # grant table entries per process
MEMORY_SIZE = 4 * 1024 * 1024  # default private memory segment per process (sparse memfd)
CLOCK_HZ = 60  # the kernel's GETINFO ticks per second, counted from its clock (MINIX DEFAULT_HZ)
DENIED_PER_WINDOW = 100  # denied events one writer records per caller and window; the rest
DENIED_WINDOW = 1.0  # ... (seconds) are counted, and summed up in one denied-suppressed event
EVENT_LOG_MAX = 16 * 1024 * 1024  # bytes of events.log before it rotates to events.log.1
EVENT_LOG_KEEP = 4  # rotated event logs kept (events.log.1 newest ... .4); older ones go

# Protection domains (minikern/domain.py): booted as root, each component runs as its own uid
DOMAINS = os.environ.get("MINIKERN_DOMAINS", "1") != "0"  # "0": components run as the booter
COMPONENT_GID = 61000  # every component's extra group: may enter the run directory, reach kernel.sock
EVENT_LOG_GID = 61001  # the event log's writers' extra group (domain.EVENT_WRITERS)
DOMAIN_UID_FIRST = 61002  # components' uids (gid = uid) are allocated per label from here ...
DOMAIN_UID_LAST = 61999  # ... to here, in blocks of DOMAIN_UID_BLOCK: one block per system
DOMAIN_UID_BLOCK = 64  # uids one booted system holds (system.conf's uid key: an index in them)
SECCOMP = os.environ.get("MINIKERN_SECCOMP", "1") != "0"  # "0": no seccomp filter (minikern/seccomp.py)
DOMAIN_LOCKS = os.environ.get("MINIKERN_DOMAIN_LOCKS", "/run/minikern-uids")  # root's directory of
#   one lock file per block of uids: a kernel holds an flock on its block's until it exits

TEMPLATE_POOL = 2  # pre-started template processes (imported, never ran component code)
# ... and the libraries a template imports ahead of need besides its own (the driver
# frameworks, the port I/O channel and PCI access every device driver uses, and the clients
# most components load: ~13 ms of a driver's restart on a quiet machine, paid before it)
TEMPLATE_PRELOAD = ("minikern.ds", "minikern.bdev", "minikern.devio", "drivers.pci",
                    "drivers.char.framework", "drivers.block.framework",
                    "drivers.net.framework")
# ... imported in this scheduling queue (booted as root): below every service's queue, so a
# refill's imports never outweigh the instance being restarted; above the user programs'
TEMPLATE_QUEUE = 5
SHUTDOWN_GRACE = 2.0  # seconds processes get to exit after SHUTDOWN before halt kills them
HALT_SYNC_TIMEOUT = 30.0  # seconds bin/halt waits for VFS to sync the file systems before SIGTERM
INIT_TIMEOUT = 10.0  # seconds a boot process may take to report init done (MINIX RS_INIT_T)
CALL_TIMEOUT = 30.0  # seconds the library waits for the kernel before declaring it gone
FOLLOW_SETTLE = 0.2  # seconds bin/logs -f holds an event back, so a racing writer's comes first
BOOT_SETTLE = 1.0  # seconds every service must stay up, not restarted, for boot --detach's "up"

# Reincarnation Server (services/rs)
ALERT_LOG = "alerts.log"  # records written by recovery_scripts/alert, for a person to read
SCRATCH_DIR = "scratch"  # run_dir/scratch: components' temporary files (the RAM disk's mkfs image)
SCRIPT_DIR = "scripts"  # run_dir/scripts/<label>.<n>.out: a recovery script's captured output
DEFAULT_PERIOD = 5.0  # seconds between RS heartbeat pings when system.conf gives no period
HEARTBEAT_MISSES = 2  # no ping answer within this many periods: the service is hung
HEARTBEAT_STARVED_MAX = 4  # more periods a service starved of a CPU may take (rs/starvation.py)
HEARTBEAT_RELIED_EVERY = 0.05  # seconds between RS's reads of the kernel's and board's CPU times
BACKOFF_BASE = 1.0  # seconds: the first delayed restart; each further one doubles (MINIX)
BACKOFF_CAP = 30.0  # seconds: the longest restart delay (MINIX rs/const.h)
STABLE_TIME = 10.0  # seconds up after which a service's failure count starts again from zero
INTENSITY_RESTARTS = 10  # default intensity limit: more than this many restarts ...
INTENSITY_WINDOW = 60.0  # ... within this many seconds marks the service FAILED
# seconds between psutil memory / CPU checks of limited services (bin/experiment: 0.5)
RESOURCE_CHECK = float(os.environ.get("MINIKERN_RESOURCE_CHECK", "1.0"))
DEFAULT_PRIORITY = 4  # scheduling queue of a service whose system.conf entry names none
NICE_PER_QUEUE = 2  # host nice steps per scheduling queue: USER_Q is nice 0, queue 0 nice -14
# the host time slice (Linux's EEVDF custom slice, 6.12 and later) of a process in a queue
# above USER_Q, in microseconds (0: the host's default, 0.7 to 3 ms); minikern/sched.py
SYSTEM_SLICE_US = int(os.environ.get("MINIKERN_SYSTEM_SLICE_US", "300"))
# booted as root, the queues down to TEMPLATE_QUEUE are also SCHED_RR, bounded (minikern/sched.py;
# MINIKERN_REALTIME=0: weights and slices only) ...
REALTIME = os.environ.get("MINIKERN_REALTIME", "1") != "0"
RT_PRIORITY_BASE = 10  # ... at real-time priorities above this one (queue 0 highest) ...
RT_BOUND_US = 500_000  # ... until a thread runs this long without blocking: SIGXCPU, demoted ...
RT_PENALTY = float(os.environ.get("MINIKERN_RT_PENALTY", "5"))  # ... for this long (s; MINIX's
#   sched balances its queues every 5 s) ...
RT_KILL_GRACE_US = 1_000_000  # ... and killed by the host if still real-time this much later
DOWN_GRACE = 2.0  # seconds a stopped service gets after SIGTERM before SIGKILL (MINIX down)
RS_RETRY = 0.005  # seconds before RS retries a non-blocking send the peer was not ready for

# Storage (drivers/block, drivers/at_wini, minikern/bdev.py, services/mfs, services/vfs)
ATA_TIMEOUT = 2.0  # seconds at_wini waits for the drive's interrupt before resetting it
ATA_MAX_ERRORS = 4  # attempts at one command (MINIX max_errors); a bad sector gets one only
BDEV_HEARTBEAT_CHECK = 0.5  # seconds of back-to-back block requests before bdev looks for RS's ping
BDEV_RESTART_RETRIES = 10  # driver restarts one request may live through before it fails EIO
BDEV_EIO_RETRIES = 3  # an EIO from a block driver is retried this many times, then returned
BDEV_RECOVERY_WAIT = 30.0  # seconds a file server waits for a dead block driver's successor
BDEV_RECOVERY_CHECK = 0.05  # seconds between DS checks while waiting (besides DS's notifications)
FS_REQUEST_TIMEOUT = 120.0  # seconds VFS waits for a file server's answer (covers a driver recovery)
VFS_SWEEP = 1.0  # seconds between VFS's looks (GETINFO) for dead processes holding descriptors
VFS_IDLE_SWEEP = 10.0  # seconds between VFS's looks while no process is known to it and no mount
#                        needs recovery (a file server's restart comes as DS's notification)
VFS_MOUNT_RETRY = 0.5  # seconds between VFS's tries to mount the root (file server or driver not up)
VFS_MOUNT_RETRY_CAP = 10.0  # seconds: the longest wait between tries of a --mount (doubling)
VFS_NR_FILPS = 1024  # open files in the whole system (ENFILE beyond; MINIX NR_FILPS)
VFS_MAX_PARKED = 256  # requests VFS holds while the root is not mounted yet (EAGAIN beyond)
MFS_CACHE_BLOCKS = 4096  # MFS's buffer cache bound, in 1 KiB blocks (LRU; dirty blocks written on eviction)
MFS_INODE_CACHE = 1024  # unreferenced inodes MFS keeps in memory
MFS_READAHEAD = 128  # blocks MFS reads ahead of a sequential reader (one 128 KiB device request)
MFS_DIRTY_AGE = 2.0  # seconds a dirty block may wait before MFS's timer writes everything back
MFS_SYNC_CHECK = 0.5  # seconds between MFS's checks of the oldest dirty block's age
SHM_DIR = "/dev/shm"  # where the memory driver keeps its RAM disks' segments (POSIX shared memory)
RAM_SIZE = 16 * 1024 * 1024  # the memory driver's RAM disk when system.conf gives no --ram

# The host's FUSE mounts (bin/mount, minikern/mounts.py)
UNMOUNT_TIMEOUT = 30.0  # seconds an unmounted mount's process may take to write back and end
MOUNT_TIMEOUT = 30.0  # seconds bin/mount waits for its mount process to be serving
FUSE_MAX_IO = 128 * 1024  # bytes of one FUSE read or write (the kernel's largest by default)

# Character drivers and the printer (drivers/char, drivers/printer, services/lpd)
CHAR_MAX_OPENS = 1024  # (caller, minor) opens a character driver remembers; the oldest forgotten
CHAR_MAX_SUSPENDED = 256  # requests a character driver holds suspended at once (EAGAIN beyond)
CHAR_MAX_SELECTS = 256  # SELECT notifications a character driver keeps waiting at once
LPT_CHUNK = 64  # bytes the printer driver strobes in one board round trip, tagged in the latch
#                (3 port accesses a byte + 3: one chain of the driver's ring, at most 256 slots)
LPT_INIT_HOLD = 0.05  # seconds the printer driver holds nINIT low to reset the printer (MINIX)
LP_WRITE = 4096  # bytes of one spooler WRITE: short, so the driver answers RS's pings between them
LP_RETRY = 0.5  # seconds between the spooler's looks at a printer that is out of paper or off line
LP_REQUEST_TIMEOUT = 5.0  # seconds the spooler waits for the printer driver's answer

# The console (drivers/tty, userland/sh.py, bin/console)
TTY_RECOVERY_WAIT = 60.0  # seconds a tty client (the shell) waits for a restarted tty driver
TTY_RECOVERY_CHECK = 0.25  # seconds between its DS checks while it waits (DS notifies sooner)
