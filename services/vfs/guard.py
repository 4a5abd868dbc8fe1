"""VFS's guard (minikern/guard.py): a malformed (EINVAL, EBADREQUEST) or forbidden (EPERM)
request is logged the first time of its kind, ordinary refusals such as ENOENT are only
counted; an exception no check foresaw fails the one request with EINVAL, never VFS."""
from __future__ import annotations

from minikern import guard
from minikern.const import Err, FsReq, VfsReq


class Guard(guard.Guard):
    def __init__(self) -> None:
        super().__init__("vfs", (VfsReq, FsReq), logged=(Err.EINVAL, Err.EPERM, Err.EBADREQUEST),
                         qualified=True)
