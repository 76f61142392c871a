"""The local driver on disk: ``<data_root>/volumes/<name>/_data``, names, options, mount(2).

Every function that touches the filesystem blocks: call it through ``anyio.to_thread``.

Safety rules, in code below:
- a name is checked against moby's ``[a-zA-Z0-9][a-zA-Z0-9_.-]+`` before it becomes a path, so
  it is one path component and never ``.``/``..``; nothing is created, chmod'ed or deleted
  outside the volumes directory (a bind volume's device is only ever mounted, never written);
- a volume dir is deleted only when nothing is mounted at or under it (a bind volume whose
  unmount failed would otherwise delete the host directory), by renaming it to
  ``.rm-<name>-<rand>`` first (names cannot start with "."), so a crash leaves either the
  volume or a trash dir that the next start removes;
- mount options (``type``/``device``/``o``) go through an allow-list: tmpfs, and bind mounts of
  an existing absolute host directory; network and block filesystems are refused.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import posixpath
import re
import secrets
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import anyio

import errdefs
import hostfs

__all__ = [
    "MountSpec", "VolumeDirs", "dir_size", "mount", "mount_points", "parse_options", "unmount",
    "validate_name",
]

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
MAX_NAME = 255
DATA = "_data"
TRASH_PREFIX = ".rm-"

# mount(2) flags (linux/mount.h).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

# Flag words of ``o`` (mount(8) names) -> (flags to set, flags to clear).
_FLAG_WORDS: dict[str, tuple[int, int]] = {
    "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY),
    "nosuid": (MS_NOSUID, 0), "suid": (0, MS_NOSUID),
    "nodev": (MS_NODEV, 0), "dev": (0, MS_NODEV),
    "noexec": (MS_NOEXEC, 0), "exec": (0, MS_NOEXEC),
    "noatime": (MS_NOATIME, 0), "atime": (0, MS_NOATIME),
    "nodiratime": (MS_NODIRATIME, 0), "diratime": (0, MS_NODIRATIME),
    "relatime": (MS_RELATIME, 0), "strictatime": (MS_STRICTATIME, 0),
    "sync": (MS_SYNCHRONOUS, 0), "async": (0, MS_SYNCHRONOUS),
}
_SIZE = re.compile(r"[0-9]{1,20}[kKmMgG%]?")
# tmpfs data options and the pattern each value must match.
_TMPFS_DATA: dict[str, re.Pattern[str]] = {
    "size": _SIZE,
    "nr_blocks": _SIZE,
    "nr_inodes": _SIZE,
    "mode": re.compile(r"[0-7]{1,4}"),
    "uid": re.compile(r"[0-9]{1,10}"),
    "gid": re.compile(r"[0-9]{1,10}"),
}
_TMPFS_DEVICE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_VALID_OPTS = ("type", "o", "device", "size")
# moby's mandatoryOpts: an option that needs others.
_MANDATORY = {"device": ("type",), "type": ("device",), "o": ("device", "type")}



def _go_quote(s: str) -> str:
    # Close to Go's %q for the error texts moby prints.
    return json.dumps(s, ensure_ascii=False)


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid local volume name (moby's rule), one path component.

    Raises:
        errdefs.InvalidArgument: moby's text ("... includes invalid characters for a local
            volume name ...") for anything else, including "", ".", "..", "a/b", "-x".
    """
    if (not isinstance(name, str) or len(name) > MAX_NAME or NAME_RE.fullmatch(name) is None
            or name in (".", "..")):
        raise errdefs.InvalidArgument(
            f"{_go_quote(str(name))} includes invalid characters for a local volume name, only "
            f"{_go_quote(NAME_CHARS)} are allowed. If you intended to pass a host directory, "
            "use absolute path"
        )
    return name


@dataclass(frozen=True, slots=True)
class MountSpec:
    """A validated mount of a local volume's ``_data``."""

    fstype: str  # "tmpfs" or "bind"
    source: str  # tmpfs device name, or the host directory to bind
    flags: int  # MS_* flags besides MS_BIND/MS_REC
    data: str  # tmpfs data options ("size=10m,mode=755"); "" for binds
    recursive: bool = False  # rbind

    def describe(self) -> str:
        return f"{self.fstype} {self.source} flags={self.flags:#x} data={self.data!r}"


def parse_options(opts: dict[str, str]) -> MountSpec | None:
    """Validate the local driver's options; return the mount they ask for, or None (plain dir).

    Accepted (like moby's local driver, minus what this build cannot do safely):
    ``type=tmpfs,device=<name>[,o=size=..,mode=..,uid=..,gid=..,nr_inodes=..,<flags>]`` and
    ``type=none,device=<absolute dir>,o=bind|rbind[,ro,nosuid,nodev,noexec,..]``. Whether the
    bind device exists is checked by :func:`check_device` (it touches the filesystem).

    Raises:
        errdefs.InvalidArgument: unknown keys ('invalid option: "x"'), missing companions
            ('missing required option: "device"'), ``size`` (no quota support), other
            filesystem types (nfs, cifs, ext4, ...), options outside the allow-list, relative
            or non-normalised devices.
    """
    if not opts:
        return None
    for key in opts:
        if key not in _VALID_OPTS:
            raise errdefs.InvalidArgument(f"invalid option: {_go_quote(key)}")
    if "size" in opts:
        raise errdefs.InvalidArgument("quota size requested but no quota support")
    for key, needs in _MANDATORY.items():
        if key in opts:
            for need in needs:
                if need not in opts:
                    raise errdefs.InvalidArgument(f"missing required option: {_go_quote(need)}")
    fstype, device, o = opts["type"], opts["device"], opts.get("o", "")
    if "\x00" in fstype + device + o:
        raise errdefs.InvalidArgument("invalid option: NUL byte in a volume option")
    words = [w for w in o.split(",") if w] if o else []
    if fstype == "tmpfs":
        if _TMPFS_DEVICE.fullmatch(device) is None:
            raise errdefs.InvalidArgument(
                f"invalid device {_go_quote(device)} for a tmpfs volume: use a plain name "
                "such as \"tmpfs\""
            )
        flags, data = _flags_and_data(words, tmpfs=True)
        return MountSpec("tmpfs", device, flags, ",".join(data))
    if fstype in ("none", "bind"):
        binds = [w for w in words if w in ("bind", "rbind")]
        if not binds and fstype == "none":
            raise errdefs.InvalidArgument(
                'invalid option: type "none" needs o=bind (or rbind): only bind mounts of a '
                "host directory are supported"
            )
        norm = posixpath.normpath(device)
        if (not posixpath.isabs(device) or norm.startswith("//")
                or (device != "/" and norm != device.rstrip("/"))):
            raise errdefs.InvalidArgument(
                f"invalid device {_go_quote(device)} for a bind volume: it must be an absolute, "
                "normalised host path (no \"..\" or \".\" components)"
            )
        rest = [w for w in words if w not in ("bind", "rbind")]
        flags, _ = _flags_and_data(rest, tmpfs=False)
        return MountSpec("bind", norm, flags, "",
                         recursive="rbind" in binds)
    raise errdefs.InvalidArgument(
        f"unsupported volume type {_go_quote(fstype)}: the local driver of this berth build "
        "mounts only tmpfs (type=tmpfs) and host directories (type=none,o=bind); network and "
        "block filesystems (nfs, cifs, ext4, ...) are not supported"
    )


def _flags_and_data(words: list[str], *, tmpfs: bool) -> tuple[int, list[str]]:
    flags = 0
    data: list[str] = []
    for w in words:
        if w in _FLAG_WORDS:
            on, off = _FLAG_WORDS[w]
            flags = (flags | on) & ~off
            continue
        key, sep, value = w.partition("=")
        pattern = _TMPFS_DATA.get(key) if tmpfs else None
        if pattern is None or not sep:
            kind = "tmpfs" if tmpfs else "bind"
            raise errdefs.InvalidArgument(
                f"invalid option: {_go_quote(w)} is not an allowed mount option for a {kind} "
                "volume"
            )
        if pattern.fullmatch(value) is None:
            raise errdefs.InvalidArgument(f"invalid option: bad value in {_go_quote(w)}")
        data.append(f"{key}={value}")
    return flags, data


def check_device(spec: MountSpec) -> None:
    """For binds: the device must be an existing directory (followed links allowed, as mount does).

    Raises:
        errdefs.InvalidArgument: it does not exist or is not a directory.
    """
    if spec.fstype != "bind":
        return
    if not os.path.isdir(spec.source):
        raise errdefs.InvalidArgument(
            f"invalid device {_go_quote(spec.source)} for a bind volume: no such directory"
        )


# -- mounts -------------------------------------------------------------------------------


mount_points = hostfs.mount_points
_mount_call = hostfs.mount


def mount(spec: MountSpec, target: Path) -> None:
    """Mount ``spec`` on ``target`` (the volume's ``_data``).

    Raises:
        errdefs.Internal: mount(2) failed ("failed to mount local volume: ...", as moby says).
    """
    try:
        if spec.fstype == "tmpfs":
            _mount_call(spec.source, target, "tmpfs", spec.flags, spec.data)
            return
        check_device(spec)
        _mount_call(spec.source, target, None, MS_BIND | (MS_REC if spec.recursive else 0), "")
        if spec.flags:
            # Bind flags only take effect on a remount of the bind.
            try:
                _mount_call("", target, None, MS_REMOUNT | MS_BIND | spec.flags, "")
            except OSError:
                unmount(target)
                raise
    except OSError as e:
        raise errdefs.Internal(f"failed to mount local volume: {e.strerror}: {target}") from None


def unmount(target: Path) -> None:
    """Detach whatever is mounted on ``target``; a target with no mount is fine."""
    while str(target) in mount_points():
        try:
            hostfs.umount(target, MNT_DETACH)
        except OSError as e:
            if e.errno == errno.EINVAL:
                return
            raise errdefs.Internal(f"failed to unmount local volume {target}: {e.strerror}") from None


def mounted_under(path: Path) -> list[str]:
    """Mount points at or below ``path``."""
    p = str(path)
    return [m for m in mount_points() if m == p or m.startswith(p + "/")]


def dir_size(path: Path) -> int:
    """Bytes of regular files under ``path`` (hard links once), never leaving its filesystem."""
    try:
        dev = os.lstat(path).st_dev
    except FileNotFoundError:
        return 0
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(path)]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != dev:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(e.path)
            elif stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


_fsync_dir = hostfs.fsync_dir


class VolumeDirs:
    """The volumes directory of one data root; every path it builds comes from a checked name."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def dir(self, name: str) -> Path:
        return self.root / validate_name(name)

    def data(self, name: str) -> Path:
        return self.dir(name) / DATA

    def ensure_root(self) -> None:
        self.root.mkdir(mode=0o701, parents=True, exist_ok=True)
        st = os.lstat(self.root)
        if not stat.S_ISDIR(st.st_mode):
            raise errdefs.Internal(f"volumes root {self.root} is not a directory")

    def create(self, name: str) -> Path:
        """Make ``<name>/_data`` (reusing what exists: data is never reset) and make it durable.

        Raises:
            errdefs.Internal: a path component exists but is not a real directory.
        """
        self.ensure_root()
        d, data = self.dir(name), self.data(name)
        for p, mode in ((d, 0o701), (data, 0o755)):
            try:
                os.mkdir(p, mode)
            except FileExistsError:
                pass
            if not stat.S_ISDIR(os.lstat(p).st_mode):
                raise errdefs.Internal(f"volume path {p} exists and is not a directory")
        _fsync_dir(d)
        _fsync_dir(self.root)
        return data

    def exists(self, name: str) -> bool:
        try:
            return stat.S_ISDIR(os.lstat(self.data(name)).st_mode)
        except FileNotFoundError:
            return False

    def remove(self, name: str) -> None:
        """Delete ``<name>`` and its data; a missing dir is fine.

        Raises:
            errdefs.Internal: something is still mounted at or under it (nothing is deleted).
        """
        d = self.dir(name)
        busy = mounted_under(d)
        if busy:
            raise errdefs.Internal(
                f"remove {name}: volume data is still mounted ({', '.join(busy)}); not deleting"
            )
        trash = self.root / f"{TRASH_PREFIX}{name}-{secrets.token_hex(4)}"
        try:
            os.rename(d, trash)
        except FileNotFoundError:
            return
        _fsync_dir(self.root)
        _remove_trash(trash)

    def listdir(self) -> list[str]:
        """Names of the volume dirs present (trash and stray files skipped)."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries
                      if e.is_dir(follow_symlinks=False) and NAME_RE.fullmatch(e.name))

    def clear_trash(self) -> None:
        """Finish deletions a crash interrupted (``.rm-*`` dirs)."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for e in entries:
            if e.name.startswith(TRASH_PREFIX) and e.is_dir(follow_symlinks=False):
                _remove_trash(Path(e.path))


def _remove_trash(trash: Path) -> None:
    busy = mounted_under(trash)
    if busy:
        log.error("not deleting %s: still mounted at %s", trash, ", ".join(busy))
        return
    shutil.rmtree(trash, ignore_errors=False, onerror=None)


# -- copy-up ------------------------------------------------------------------------------

_MAX_LINKS = 40


def resolve_in_root(root: Path, path: str) -> Path | None:
    """Resolve ``path`` as a process chroot'ed at ``root`` would: symlinks and ".." never leave it.

    Returns:
        The host path, or None when some component does not exist.

    Raises:
        errdefs.InvalidArgument: more than 40 symbolic links on the way (ELOOP).
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    cur: list[str] = []
    links = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if cur:
                cur.pop()
            continue
        full = os.path.join(root, *cur, p)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise errdefs.InvalidArgument(f"{path}: too many levels of symbolic links")
            target = os.readlink(full)
            if target.startswith("/"):
                cur = []
            parts = [x for x in target.split("/") if x not in ("", ".")] + parts
            continue
        cur.append(p)
    return Path(os.path.join(root, *cur))


def copy_up_source(root: Path, path: str, dest: Path) -> Path | None:
    """The directory to fill the empty ``dest`` from: ``path`` resolved inside the rootfs ``root``.

    None when ``dest`` already holds data or the image has no directory there (nothing to copy).
    """
    if any(os.scandir(dest)):
        return None
    src = resolve_in_root(root, path)
    if src is None or not stat.S_ISDIR(os.lstat(src).st_mode):
        return None
    return src


def copy_up_argv(src: Path, dest: Path) -> list[str]:
    """The copy command: GNU cp keeps owners, modes, times, xattrs and hardlinks and never follows links.

    A child process rather than a Python walk: the walk makes ~10 syscalls per file, each one a GIL
    hand-off that a busy daemon turns into a wait (10,000 files: 4.8 s in berthd, 0.6 s with cp).
    """
    return ["cp", "-a", "--no-target-directory", "--", f"{src}/.", str(dest)]


def copy_up(root: Path, path: str, dest: Path) -> bool:
    """Copy the image's content at ``path`` (inside the rootfs ``root``) into an empty ``dest``.

    Ownership, modes and times are kept, symlinks are copied as links (never followed), as
    Docker fills a new volume from the image. Returns whether anything was copied.
    """
    src = copy_up_source(root, path, dest)
    if src is None:
        return False
    proc = subprocess.run(copy_up_argv(src, dest), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise errdefs.Internal(f"copying {path} from the image into the volume: {proc.stderr.strip()}")
    return True


async def copy_up_async(root: Path, path: str, dest: Path) -> bool:
    """`copy_up` for the event loop: the checks in a worker thread, the copy in a child process."""
    src = await anyio.to_thread.run_sync(copy_up_source, root, path, dest)
    if src is None:
        return False
    proc = await anyio.run_process(copy_up_argv(src, dest), check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise errdefs.Internal(f"copying {path} from the image into the volume: {err}")
    return True
