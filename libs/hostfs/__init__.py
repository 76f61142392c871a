"""Blocking host filesystem calls shared by the services: mount(2), umount2(2), mountinfo, fsync.

Every function blocks: callers run them in a worker thread (anyio.to_thread).
"""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

__all__ = ["MNT_DETACH", "fsync_dir", "mount", "mount_points", "umount"]

MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int


def mount(source: str, target: Path, fstype: str | None, flags: int, data: str) -> None:
    """mount(2); raises OSError with the errno and the target on failure."""
    rc = _libc.mount(source.encode(), os.fsencode(target), fstype.encode() if fstype else None,
                     flags, os.fsencode(data) if data else None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))


def umount(target: Path, flags: int = MNT_DETACH) -> None:
    """umount2(2); raises OSError with the errno and the target on failure."""
    if _libc.umount2(os.fsencode(target), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))


def _unescape_mountinfo(field: bytes) -> str:
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), field))


def mount_points() -> list[str]:
    """The mount points of this mount namespace, from /proc/self/mountinfo."""
    with open("/proc/self/mountinfo", "rb") as f:
        return [_unescape_mountinfo(line.split(b" ")[4]) for line in f if line.strip()]


def fsync_dir(path: Path) -> None:
    """fsync a directory, so a rename or create in it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
