"""Test helper: unmount whatever a test left mounted under a temporary directory."""

from __future__ import annotations

import errno
from pathlib import Path

from images_svc.snapshots import _umount, mount_points


def unmount_all_under(root: Path) -> None:
    """Unmount every mount at or under ``root`` (deepest first); used in fixture teardown."""
    prefix = str(root) + "/"
    for _ in range(16):
        under = sorted((m for m in mount_points() if m.startswith(prefix)), key=len, reverse=True)
        if not under:
            return
        for m in under:
            try:
                _umount(Path(m))
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
