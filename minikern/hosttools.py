"""Host programs the system uses (util-linux's mkfs.minix and fsck.minix), found where they
live: on the PATH, or in sbin, which is often not on a user's PATH."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

SBIN = ("/usr/sbin", "/sbin")


def find(name: str) -> str | None:
    """The path of host program ``name``, or None if this host has none."""
    found = shutil.which(name)
    for d in SBIN:
        if found is None and os.access(Path(d, name), os.X_OK):
            found = str(Path(d, name))
    return found
