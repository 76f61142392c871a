"""Paths of the cached test image fixtures, built on first use by scripts/build-fixtures.sh.

The cache is ``$BERTH_TEST_CACHE`` (default ``/var/cache/berth-test``), the same one the script
and ``make images`` use. The script locks per fixture, so parallel callers wait for one build.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = [
    "BIG_IMAGE_REF",
    "BUILD_SCRIPT",
    "FixtureBuildError",
    "big_image_archive",
    "busybox_rootfs_tar",
    "cache_dir",
    "debian_rootfs_tar",
]

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-fixtures.sh"
# The tag inside big-3layer.tar (scripts/make_big_image.py).
BIG_IMAGE_REF = "berth-test/big:latest"
# debootstrap takes minutes on a slow mirror.
_BUILD_TIMEOUT = 1800


class FixtureBuildError(RuntimeError):
    """scripts/build-fixtures.sh failed; the message carries its output."""


def cache_dir() -> Path:
    return Path(os.environ.get("BERTH_TEST_CACHE", "/var/cache/berth-test"))


def _ensure(target: str, name: str) -> Path:
    path = cache_dir() / name
    if path.is_file() and path.stat().st_size > 0:
        return path
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), target],
        capture_output=True,
        text=True,
        timeout=_BUILD_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0 or not path.is_file():
        raise FixtureBuildError(
            f"{BUILD_SCRIPT} {target} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return path


def busybox_rootfs_tar() -> Path:
    """Root filesystem tarball: static busybox, its applet links, /etc/passwd and group."""
    return _ensure("busybox", "busybox-rootfs.tar")


def debian_rootfs_tar() -> Path:
    """Root filesystem tarball of ``debootstrap --variant=minbase bookworm``."""
    return _ensure("debian", "debian-bookworm-minbase.tar")


def big_image_archive() -> Path:
    """``docker save`` archive (Docker 25+ OCI layout) of `BIG_IMAGE_REF`: ~315 MB, 3 layers."""
    return _ensure("big", "big-3layer.tar")
