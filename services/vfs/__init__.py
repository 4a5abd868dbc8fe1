"""VFS, the virtual file system server: file descriptors, path lookup and mounts (MINIX servers/vfs)."""
from services.vfs.main import main

__all__ = ["main"]
