"""The RTL8139 network driver."""
from drivers.rtl8139.rtl8139 import main

__all__ = ["main"]
