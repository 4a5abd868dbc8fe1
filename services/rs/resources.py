"""Resource limits: is a service's process over its memory or CPU limit?  Runs inside RS.

RSS is compared with ``memory_limit`` at every check; CPU is the share of
one CPU used since the previous check (params.RESOURCE_CHECK apart), so a
short burst does not count but a spinning loop does within one period.
"""
from __future__ import annotations

import psutil

from services.rs.policy import Policy
from services.rs.service import Instance


def over_limit(pol: Policy, inst: Instance, now: float) -> str | None:
    """A description of the excess, or None; updates the instance's CPU sample."""
    if pol.memory_limit is None and pol.cpu_limit is None:
        return None
    try:
        proc = psutil.Process(inst.pid)
        with proc.oneshot():
            rss = proc.memory_info().rss
            t = proc.cpu_times()
    except psutil.Error:
        return None  # it is exiting: the kernel's exit notice will say why
    cpu = t.user + t.system
    last, inst.cpu_sample = inst.cpu_sample, (now, cpu)
    if pol.memory_limit is not None and rss > pol.memory_limit:
        return f"memory {rss} bytes over the limit of {pol.memory_limit}"
    if last is not None and pol.cpu_limit is not None:
        percent = (cpu - last[1]) / max(now - last[0], 1e-3) * 100
        if percent > pol.cpu_limit:
            return f"CPU {percent:.0f}% over the limit of {pol.cpu_limit:g}%"
    return None
