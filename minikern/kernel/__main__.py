"""``python -m minikern.kernel RUN_DIR``: one boot, between its boot and halt markers.

The boot's id is drawn before the kernel exists, so every process of the boot
(all started by the kernel) finds it in run_dir/boot.id and stamps it on its
events.  The halt marker follows the kernel's last act (every process gone);
a kernel killed outright leaves none, and bin/logs says so at the next boot.
"""
import os
import sys
import time
from pathlib import Path

from minikern import events
from minikern.const import PROTO
from minikern.kernel.main import main

run_dir = Path(sys.argv[1])
marker = events.EventLog(run_dir, "kernel", boot=events.new_boot(run_dir))
started = time.monotonic()
marker.write("boot", "kernel", pid=os.getpid(), protocol=PROTO)
try:
    main()
except BaseException as e:
    marker.write("halt", "kernel", status="error", uptime_s=round(time.monotonic() - started, 3),
                 error=f"{type(e).__name__}: {e}")
    raise
marker.write("halt", "kernel", status="clean", uptime_s=round(time.monotonic() - started, 3))
