"""lpd, the printer spooler: jobs queued and printed once each, across printer driver restarts."""
from services.lpd.main import main

__all__ = ["main"]
