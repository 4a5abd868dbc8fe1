"""Find the processes a run started, wherever they were reparented: each inherits a mark in
its environment (the kernel starts its own session, so a process group is not enough)."""
from __future__ import annotations

import psutil


def marked(var: str, value: str) -> list[psutil.Process]:
    """Live (not zombie) processes whose environment has ``var`` set to ``value``."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(var) == value and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            pass
    return found
