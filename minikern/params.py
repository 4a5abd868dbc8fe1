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
BOOT_ID = "boot.id"  # this boot's id, drawn by the kernel as it starts, stamped on every event
CRASH_DIR = "crash"  # <pid>.json: why a component died (panic reason, traceback), read by RS
EXIT_PANIC = 70  # exit status of panic() (EX_SOFTWARE)
EXIT_EXCEPTION = 71  # exit status after an unhandled exception

MAX_MESSAGE = 64 * 1024  # largest message body a process may send (bulk data goes through grants)
MAX_HEADER = 256  # largest request header, in bytes
SOCKET_HWM = 1000  # ZeroMQ high-water mark: frames queued per peer before the socket drops
MAX_KERNEL_QUEUE = 1024  # kernel messages queued for one process before new ones are dropped
MAX_GRANTS = 256  # grant table entries per process
MEMORY_SIZE = 4 * 1024 * 1024  # default private memory segment per process (sparse memfd)
MAX_DENIED_EVENTS = 100_000  # denied events one process writes per boot; further ones are counted

TEMPLATE_POOL = 2  # pre-started template processes (imported, never ran component code)
SHUTDOWN_GRACE = 2.0  # seconds processes get to exit after SHUTDOWN before halt kills them
INIT_TIMEOUT = 10.0  # seconds a boot process may take to report init done (MINIX RS_INIT_T)
CALL_TIMEOUT = 30.0  # seconds the library waits for the kernel before declaring it gone
FOLLOW_SETTLE = 0.2  # seconds bin/logs -f holds an event back, so a racing writer's comes first
BOOT_SETTLE = 1.0  # seconds every service must stay up, not restarted, for boot --detach's "up"

# Reincarnation Server (services/rs)
ALERT_LOG = "alerts.log"  # records written by recovery_scripts/alert, for a person to read
SCRIPT_DIR = "scripts"  # run_dir/scripts/<label>.<n>.out: a recovery script's captured output
DEFAULT_PERIOD = 5.0  # seconds between RS heartbeat pings when system.conf gives no period
HEARTBEAT_MISSES = 2  # no ping answer within this many periods: the service is hung
BACKOFF_BASE = 1.0  # seconds: the first delayed restart; each further one doubles (MINIX)
BACKOFF_CAP = 30.0  # seconds: the longest restart delay (MINIX rs/const.h)
STABLE_TIME = 10.0  # seconds up after which a service's failure count starts again from zero
INTENSITY_RESTARTS = 10  # default intensity limit: more than this many restarts ...
INTENSITY_WINDOW = 60.0  # ... within this many seconds marks the service FAILED
RESOURCE_CHECK = 1.0  # seconds between psutil memory / CPU checks of limited services
DOWN_GRACE = 2.0  # seconds a stopped service gets after SIGTERM before SIGKILL (MINIX down)
RS_RETRY = 0.005  # seconds before RS retries a non-blocking send the peer was not ready for

# Storage (minikern/bdev.py, services/mfs, services/vfs)
BDEV_EIO_RETRIES = 3  # an EIO from a block driver is retried this many times, then returned
BDEV_RECOVERY_WAIT = 30.0  # seconds a file server waits for a dead block driver's successor
BDEV_RECOVERY_CHECK = 0.05  # seconds between DS checks while waiting (besides DS's notifications)
FS_REQUEST_TIMEOUT = 120.0  # seconds VFS waits for a file server's answer (covers a driver recovery)
