"""The memory driver (MINIX memory): RAM disks on the block driver framework."""
from drivers.memory.memory import main

__all__ = ["main"]
