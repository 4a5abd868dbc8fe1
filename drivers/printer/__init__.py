"""The printer driver: LPT1, MINIX's drivers/printer, on the character driver framework."""
from drivers.printer.printer import main

__all__ = ["main"]
