"""Memory segments and grants (MINIX SETGRANT / SAFECOPY).

Every process the kernel starts gets a private memory segment: an anonymous
memfd that only it and the kernel map (the fd travels to it once, over its
startup socket).  A process cannot see another's segment.  To share bulk
data it grants a range of its own segment to one named endpoint, and that
endpoint asks the kernel to copy (SAFECOPYFROM / SAFECOPYTO); the kernel
checks the grant on every copy.  A grant id is (sequence << 20) | index, so a
reused table entry never honours an old id.
"""
from __future__ import annotations

import mmap
import os

from minikern.const import CPF_READ, CPF_WRITE, Err
from minikern.kernel.proc import Proc

GRANT_INDEX_BITS = 20


class Segment:
    def __init__(self, label: str, size: int) -> None:
        self.fd = os.memfd_create("minikern-" + label, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.size = size
        self.map = mmap.mmap(self.fd, size)

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


def setgrant(p: Proc, max_grants: int, grantee: int, offset: int, length: int,
             access: int) -> tuple[Err, int]:
    seg = p.memory
    if not isinstance(seg, Segment):
        return Err.EFAULT, 0
    if access & ~(CPF_READ | CPF_WRITE) or not access:
        return Err.EINVAL, 0
    if offset < 0 or length <= 0 or offset + length > seg.size:
        return Err.EFAULT, 0
    index = next((i for i in range(max_grants) if i not in p.grants), None)
    if index is None:
        return Err.ENOSPC, 0
    p.grant_seq = (p.grant_seq + 1) & 0x7FF
    p.grants[index] = (p.grant_seq, grantee, offset, length, access)
    return Err.OK, (p.grant_seq << GRANT_INDEX_BITS) | index


def revoke(p: Proc, gid: int) -> Err:
    index, seq = gid & ((1 << GRANT_INDEX_BITS) - 1), gid >> GRANT_INDEX_BITS
    g = p.grants.get(index)
    if g is None or g[0] != seq:
        return Err.EINVAL
    del p.grants[index]
    return Err.OK


def safecopy(granter: Proc, gid: int, grantee: Proc, goffset: int, offset: int, length: int,
             to_granter: bool) -> Err:
    """Copy between ``grantee``'s segment and the range ``granter`` granted to it."""
    index, seq = gid & ((1 << GRANT_INDEX_BITS) - 1), gid >> GRANT_INDEX_BITS
    g = granter.grants.get(index)
    if g is None or g[0] != seq or g[1] != grantee.endpoint:
        return Err.EPERM
    _, _, gbase, glen, access = g
    if not access & (CPF_WRITE if to_granter else CPF_READ):
        return Err.EPERM
    src, dst = granter.memory, grantee.memory
    if not isinstance(src, Segment) or not isinstance(dst, Segment):
        return Err.EFAULT
    if goffset < 0 or length < 0 or goffset + length > glen or offset < 0 or offset + length > dst.size:
        return Err.EFAULT  # outside the granted range, or outside the grantee's own memory
    if to_granter:
        src.map[gbase + goffset:gbase + goffset + length] = dst.map[offset:offset + length]
    else:
        dst.map[offset:offset + length] = src.map[gbase + goffset:gbase + goffset + length]
    return Err.OK
