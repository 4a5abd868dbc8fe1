"""The ATA disk driver (MINIX at_wini), on the block driver framework."""
from drivers.at_wini.at_wini import main

__all__ = ["main"]
