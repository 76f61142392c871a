"""Overlay snapshots on disk: ``<data_root>/snapshots/<key>/{upper,work,merged}``, mounted with mount(2).

Every method here blocks (mount(2), directory walks): call them through ``anyio.to_thread``.

Lower dirs: each layer's diff dir is named in the mount options through a short symlink
``<data_root>/l/<26 hex of the chain id>`` -> ``../layers/<chain hex>/diff``, as Docker's
overlay2 ``l/`` dir does. mount(2) takes the options in one page (4096 bytes); with absolute short
links a data root of 20 characters still fits about 90 layers. Docker instead chdir()s into its
root and uses relative ``l/`` paths, but the working directory is process-wide and berth runs
threads, so a deeper stack fails with ``errdefs.InvalidArgument`` ("max depth exceeded") rather
than being mounted some other way. An image without layers gets the empty ``l/empty`` dir as its
only lower.

Mount options add ``index=off,redirect_dir=off,metacopy=off`` (retried without them on kernels
that reject them) so that the upper dir holds whole copied-up files, never redirects or metadata-
only copies: the upper dir alone is the container's diff (docker diff, commit, export).
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import re
import resource
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import errdefs
import hostfs
from images_svc.content import validate_digest
from images_svc.layers import LayerStore
from images_svc.model import Change, ChangeKind

__all__ = ["SnapshotPaths", "Snapshotter", "compute_changes", "mount_points", "validate_key"]

log = logging.getLogger(__name__)

_KEY_RE = re.compile(r"[0-9a-f]{64}")
_LINK_LEN = 26
_OPAQUE = "trusted.overlay.opaque"
_EXTRA_OPTS = "index=off,redirect_dir=off,metacopy=off"
_MNT_DETACH = 2
_UNSAFE_OPT_CHARS = frozenset(",:\\=\n")



def validate_key(key: str) -> str:
    """Return ``key`` if it is 64 lowercase hex (a container id), so it is safe in a path.

    Raises:
        errdefs.InvalidArgument: anything else ("..", "/", upper case, short ids, newlines).
    """
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        raise errdefs.InvalidArgument(
            f"invalid snapshot key {key!r}: must be 64 lowercase hexadecimal characters"
        )
    return key


@dataclass(frozen=True, slots=True)
class SnapshotPaths:
    """The directories of one snapshot."""

    dir: Path
    upper: Path
    work: Path
    merged: Path


def _mount(source: str, target: Path, fstype: str, data: str) -> None:
    hostfs.mount(source, target, fstype, 0, data)


def _umount(target: Path) -> None:
    hostfs.umount(target, _MNT_DETACH)


mount_points = hostfs.mount_points
_fsync_dir = hostfs.fsync_dir


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _same_fs_time(a: int, b: int) -> bool:
    """Docker's sameFsTime on nanosecond mtimes: equal, or same second with one at .0."""
    return a == b or (a // 10**9 == b // 10**9 and (a % 10**9 == 0 or b % 10**9 == 0))


def _lower_stat(lowers: list[Path], parts: list[str]) -> os.stat_result | None:
    """lstat of ``parts`` as the merged lower layers (top first) show it, or None if absent.

    Never follows symlinks: an intermediate component that is not a directory hides the path.
    Whiteouts and opaque directories in a higher layer hide the layers below.
    """
    for layer in lowers:
        cur = str(layer)
        opaque_above = False
        for i, name in enumerate(parts):
            cur = os.path.join(cur, name)
            try:
                st = os.lstat(cur)
            except (FileNotFoundError, NotADirectoryError):
                break
            if _is_whiteout(st):
                return None
            if i == len(parts) - 1:
                return st
            if not stat.S_ISDIR(st.st_mode):
                return None
            if _is_opaque(cur):
                opaque_above = True
        if opaque_above:
            return None
    return None


def compute_changes(upper: Path, lowers: list[Path]) -> list[Change]:
    """docker diff of an overlay upper dir against its lower dirs (top first).

    Follows moby's overlay ``changes`` walk: entries in walk order (names sorted, parents
    first); a whiteout (0/0 char device) is a delete, an opaque dir a modification, anything
    else an add unless the lowers have it (a dir identical in size, mode and mtime is skipped).
    The parent of an add or delete is listed as modified once, and everything under an added
    directory is listed too.
    """
    changes: list[Change] = []
    changed_dirs: set[str] = set()
    stack: list[Iterator[tuple[str, str]]] = []

    def entries(rel: str, full: str) -> Iterator[tuple[str, str]]:
        for name in sorted(os.listdir(full), key=os.fsencode):
            yield posixpath.join(rel, name), os.path.join(full, name)

    stack.append(entries("/", str(upper)))
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        path, full = item
        st = os.lstat(full)
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir:
            stack.append(entries(path, full))
        if _is_whiteout(st):
            kind = ChangeKind.DELETED
        elif is_dir and _is_opaque(full):
            kind = ChangeKind.MODIFIED
        else:
            lower = _lower_stat(lowers, path.strip("/").split("/"))
            if lower is None:
                kind = ChangeKind.ADDED
            else:
                if (is_dir and stat.S_ISDIR(lower.st_mode) and st.st_size == lower.st_size
                        and st.st_mode == lower.st_mode
                        and _same_fs_time(st.st_mtime_ns, lower.st_mtime_ns)):
                    continue  # only a parent of changes; listed below if it has any
                kind = ChangeKind.MODIFIED
        if is_dir:
            changed_dirs.add(path)
        if kind in (ChangeKind.ADDED, ChangeKind.DELETED):
            parent = posixpath.dirname(path)
            if parent != "/" and parent not in changed_dirs:
                changes.append(Change(parent, ChangeKind.MODIFIED))
                changed_dirs.add(parent)
        changes.append(Change(path, kind))
    return changes


class Snapshotter:
    """Snapshot directories and overlay mounts under one data root.

    Knows nothing of records: the service decides which keys exist and calls ``reconcile``.
    """

    def __init__(self, data_root: Path, layers: LayerStore) -> None:
        self.root = Path(data_root) / "snapshots"
        self.links = Path(data_root) / "l"
        self._layers = layers
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        self.links.mkdir(mode=0o700, parents=True, exist_ok=True)

    def paths(self, key: str) -> SnapshotPaths:
        d = self.root / validate_key(key)
        return SnapshotPaths(d, d / "upper", d / "work", d / "merged")

    # -- create / remove ------------------------------------------------------------------

    def create(self, key: str) -> SnapshotPaths:
        """Make the snapshot's dirs (empty upper), durably, replacing an unrecorded leftover.

        The caller has checked that no record holds ``key``.
        """
        p = self.paths(key)
        tmp = self.root / f"tmp-{secrets.token_hex(8)}"
        tmp.mkdir(mode=0o700)
        try:
            self._make_dirs(tmp)
            _fsync_dir(tmp)
            if p.dir.exists() or p.dir.is_symlink():
                log.warning("replacing unrecorded snapshot dir %s", p.dir)
                self._remove_tree(p.dir)
            os.rename(tmp, p.dir)
            _fsync_dir(self.root)
        except BaseException:
            self._remove_tree(tmp)
            raise
        return p

    def _make_dirs(self, d: Path) -> None:
        """Create whichever of upper/work/merged is missing under ``d``; never removes anything."""
        for name in ("upper", "work", "merged"):
            sub = d / name
            try:
                sub.mkdir(mode=0o755)
            except FileExistsError:
                continue
            os.chmod(sub, 0o755)  # not subject to the umask
            if os.geteuid() == 0:
                os.chown(sub, 0, 0)
        os.chmod(d, 0o710)

    def ensure(self, key: str) -> None:
        """Recreate missing dirs of a recorded snapshot; existing content is kept."""
        p = self.paths(key)
        p.dir.mkdir(mode=0o710, exist_ok=True)
        self._make_dirs(p.dir)

    def remove(self, key: str) -> None:
        """Unmount the snapshot and delete its dirs; an absent snapshot is not an error."""
        self._remove_tree(self.paths(key).dir)

    def _remove_tree(self, d: Path) -> None:
        """Unmount everything at or under ``d``, then delete it (renamed away first)."""
        if not (d.exists() or d.is_symlink()):
            return
        self._unmount_under(d)
        if d.is_symlink() or not d.is_dir():
            d.unlink()
            return
        doomed = d
        if not d.name.startswith("tmp-"):
            # Rename first so a crash never leaves a half-deleted dir under a snapshot's key.
            doomed = self.root / f"tmp-del-{secrets.token_hex(8)}"
            os.rename(d, doomed)
        shutil.rmtree(doomed)

    def _unmount_under(self, d: Path) -> None:
        prefix = str(d) + "/"
        for _ in range(64):  # mounts may be stacked; bounded in case one never goes
            under = sorted({m for m in mount_points() if m == str(d) or m.startswith(prefix)},
                           key=len, reverse=True)
            if not under:
                return
            for m in under:
                try:
                    _umount(Path(m))
                except OSError as e:
                    if e.errno != errno.EINVAL:  # EINVAL: gone already
                        raise errdefs.Internal(f"unmount {m}: {e.strerror}") from None
        raise errdefs.Internal(f"could not unmount everything under {d}")

    # -- mounts ---------------------------------------------------------------------------

    def is_mounted(self, key: str, mounts: list[str] | None = None) -> bool:
        merged = str(self.paths(key).merged)
        return merged in (mount_points() if mounts is None else mounts)

    def mount(self, key: str, chain_ids: list[str]) -> None:
        """Mount the overlay at ``merged``; does nothing when it is mounted already.

        Raises:
            errdefs.NotFound: a lower layer is missing on disk.
            errdefs.InvalidArgument: the options do not fit in a page (too many layers), or
                the data root holds characters overlayfs options cannot carry.
            errdefs.Internal: mount(2) failed.
        """
        p = self.paths(key)
        if self.is_mounted(key):
            return
        self.ensure(key)
        lowers = [self._link(c) for c in reversed(chain_ids)] or [self._empty_lower()]
        for path in (*lowers, p.upper, p.work):
            if _UNSAFE_OPT_CHARS & set(str(path)):
                raise errdefs.InvalidArgument(f"path {str(path)!r} cannot be an overlay option")
        base = f"lowerdir={':'.join(str(x) for x in lowers)},upperdir={p.upper},workdir={p.work}"
        if len(os.fsencode(base + "," + _EXTRA_OPTS)) + 1 > resource.getpagesize():
            raise errdefs.InvalidArgument(
                f"max depth exceeded: {len(chain_ids)} layers do not fit in one overlay mount"
            )
        try:
            _mount("overlay", p.merged, "overlay", f"{base},{_EXTRA_OPTS}")
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise errdefs.Internal(f"mount overlay at {p.merged}: {e.strerror}") from None
            try:  # an older kernel that does not know one of the extra options
                _mount("overlay", p.merged, "overlay", base)
            except OSError as e2:
                raise errdefs.Internal(f"mount overlay at {p.merged}: {e2.strerror}") from None

    def unmount(self, key: str) -> None:
        """Unmount ``merged`` (every mount stacked there); does nothing when not mounted."""
        merged = self.paths(key).merged
        for _ in range(64):
            if str(merged) not in mount_points():
                return
            try:
                _umount(merged)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise errdefs.Internal(f"unmount {merged}: {e.strerror}") from None
        raise errdefs.Internal(f"could not unmount {merged}")

    def _link(self, chain_id: str) -> Path:
        """Return the short ``l/`` link to the layer's diff dir, creating it when missing."""
        hexid = validate_digest(chain_id)[7:]
        if not self._layers.has(chain_id):
            raise errdefs.NotFound(f"layer {chain_id} not found")
        link = self.links / hexid[:_LINK_LEN]
        target = f"../layers/{hexid}/diff"
        try:
            if os.readlink(link) == target:
                return link
        except OSError:
            pass
        tmp = self.links / f"tmp-{secrets.token_hex(8)}"
        os.symlink(target, tmp)
        os.replace(tmp, link)
        return link

    def _empty_lower(self) -> Path:
        empty = self.links / "empty"
        empty.mkdir(mode=0o755, exist_ok=True)
        return empty

    # -- diff and reconcile ---------------------------------------------------------------

    def changes(self, key: str, chain_ids: list[str]) -> list[Change]:
        """The docker diff of the snapshot's upper dir against its layers."""
        lowers = [self._layers.diff_dir(c) for c in reversed(chain_ids)]
        return compute_changes(self.paths(key).upper, lowers)

    def reconcile(self, recorded: set[str]) -> None:
        """Match the disk to the records after a crash.

        Dirs of recorded snapshots are kept (missing parts recreated; an upper dir is never
        emptied) and stay mounted if they are: containers outlive berthd. Unrecorded snapshot
        dirs and ``tmp-*`` leftovers are unmounted and removed; dangling ``l/`` links go too.
        """
        for entry in os.scandir(self.root):
            name = entry.name
            if name in recorded:
                continue
            if name.startswith("tmp-") or _KEY_RE.fullmatch(name):
                log.info("removing unrecorded snapshot dir %s", entry.path)
                self._remove_tree(Path(entry.path))
        for key in sorted(recorded):
            p = self.paths(key)
            if not (p.upper.is_dir() and p.work.is_dir() and p.merged.is_dir()):
                log.warning("recreating missing dirs of snapshot %s", key)
                self.ensure(key)
        for entry in os.scandir(self.links):
            if entry.is_symlink() and not os.path.exists(entry.path):
                os.unlink(entry.path)
            elif entry.name.startswith("tmp-"):
                os.unlink(entry.path)
