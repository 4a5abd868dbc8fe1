"""MFS, the MINIX file system server (MINIX v3 as mkfs.minix -3 lays it out); main.py is the server."""
from services.mfs.main import main

__all__ = ["main"]
