"""COPY and ADD as layer tars: sources from the context or an image, written under the destination.

Every function here blocks: call them in a worker thread. Sources are read from roots berth
owns (the unpacked context, or a temporary read-only view of an image); the layer tar is
unpacked by the layer unpacker, which keeps every entry inside the layer.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import errdefs
from images_svc.build.context import open_archive, resolve_in_root, walk
from images_svc.unpack import clean_entry_name

__all__ = ["CopyPlan", "LayerTar", "is_archive", "lookup_ids"]

_WH_PREFIX = ".wh."


@dataclass(frozen=True, slots=True)
class CopyPlan:
    """One COPY/ADD: resolved sources and where they go."""

    sources: list[tuple[Path, str]]  # (host path, the name the instruction gave it)
    dest: str  # absolute path in the image, as written (may end in "/")
    owner: tuple[int, int] | None  # None: keep the source's owner (COPY --from) or 0:0
    keep_owner: bool
    chmod: int | None
    extract: bool  # ADD: unpack local archives


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a (possibly compressed) tar, as ADD decides to unpack it."""
    try:
        with open(path, "rb") as f:
            plain, _ = open_archive(f)
            with tarfile.open(fileobj=plain, mode="r|") as tf:
                return tf.next() is not None
    except (OSError, EOFError, tarfile.TarError, ValueError, Exception):
        return False


def _parse_db(path: Path) -> list[list[str]]:
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def lookup_ids(image_root: Path | None, chown: str) -> tuple[int, int]:
    """``--chown=user[:group]`` to ids, names looked up in the image's /etc/passwd and /etc/group.

    Raises:
        errdefs.InvalidArgument: an unknown name (Docker's wording).
    """
    user, _, group = chown.partition(":")
    group = group or user
    if not user:
        raise errdefs.InvalidArgument(f"invalid --chown value {chown!r}")

    def find(dbname: str, name: str, what: str) -> int:
        if name.isdigit():
            return int(name)
        if image_root is not None:
            db = resolve_in_root(image_root, f"/etc/{dbname}", strict=False)
            for row in _parse_db(db):
                if len(row) > 2 and row[0] == name and row[2].isdigit():
                    return int(row[2])
        raise errdefs.InvalidArgument(
            f"unable to convert uid/gid chown string to host mapping: can't find {what} "
            f"for {what} name {name}: no such {what}"
        )

    uid = find("passwd", user, "uid")
    if group != user or user.isdigit():
        return uid, find("group", group, "gid")
    try:  # "--chown=name": the group of that name, else the user's primary group
        return uid, find("group", group, "gid")
    except errdefs.InvalidArgument:
        return uid, _primary_gid(image_root, user)


def _primary_gid(image_root: Path | None, user: str) -> int:
    if image_root is not None:
        for row in _parse_db(resolve_in_root(image_root, "/etc/passwd", strict=False)):
            if len(row) > 3 and row[0] == user and row[3].isdigit():
                return int(row[3])
    raise errdefs.InvalidArgument(f"unable to find group for user {user}")


class LayerTar:
    """Writes COPY/ADD results as a layer tar over ``image_root`` (None for an empty image)."""

    def __init__(self, out: Any, image_root: Path | None) -> None:
        self.tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                               encoding="utf-8", errors="surrogateescape")
        self.root = image_root
        self.seen: set[str] = set()
        self.now = int(time.time())

    def close(self) -> None:
        self.tf.close()

    # -- paths in the image -----------------------------------------------------------

    def canonical(self, path: str) -> str:
        """The image path with symlinks of the image resolved (relative, no leading "/")."""
        if self.root is None:
            return posixpath.normpath("/" + path).lstrip("/")
        rel = os.path.relpath(resolve_in_root(self.root, path, strict=False), self.root)
        return "" if rel == "." else rel

    def is_dir(self, rel: str) -> bool:
        if not rel:
            return True
        return self.root is not None and (self.root / rel).is_dir() and not (self.root / rel).is_symlink()

    def _image_stat(self, rel: str) -> os.stat_result | None:
        if self.root is None:
            return None
        try:
            return os.lstat(self.root / rel)
        except OSError:
            return None

    def parents(self, rel: str, owner: tuple[int, int] | None) -> None:
        """Entries for the ancestors of ``rel``: as the image has them, or new 0755 dirs."""
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dir_entry("/".join(parts[:i]), owner)

    def dir_entry(self, rel: str, owner: tuple[int, int] | None, mode: int | None = None,
                  src: os.stat_result | None = None) -> None:
        if not rel or rel in self.seen:
            return
        self.seen.add(rel)
        ti = tarfile.TarInfo(rel)
        ti.type = tarfile.DIRTYPE
        st = self._image_stat(rel)
        if st is not None and stat.S_ISDIR(st.st_mode) and src is None:
            # Copied up unchanged, as an overlay upper dir would have it.
            ti.mode, ti.uid, ti.gid, ti.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, \
                int(st.st_mtime)
        else:
            ti.mode = mode if mode is not None else (stat.S_IMODE(src.st_mode) if src else 0o755)
            ti.uid, ti.gid = owner or (0, 0)
            ti.mtime = int(src.st_mtime) if src else self.now
        self.tf.addfile(ti)

    # -- copying ----------------------------------------------------------------------

    def _owner(self, plan: CopyPlan, st: os.stat_result) -> tuple[int, int]:
        if plan.owner is not None:
            return plan.owner
        return (st.st_uid, st.st_gid) if plan.keep_owner else (0, 0)

    def add_entry(self, plan: CopyPlan, full: str, st: os.stat_result, rel: str) -> None:
        """One source entry (file, dir, symlink, fifo) at ``rel``; dirs are not descended."""
        uid, gid = self._owner(plan, st)
        mode = plan.chmod if plan.chmod is not None else stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            self.seen.discard(rel)
            self.dir_entry(rel, (uid, gid), mode, st)
            return
        self.seen.add(rel)
        ti = tarfile.TarInfo(rel)
        ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, int(st.st_mtime)
        if stat.S_ISREG(st.st_mode):
            ti.size = st.st_size
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                self.tf.addfile(ti, f)
        elif stat.S_ISLNK(st.st_mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(full)
            ti.mode = 0o777
            self.tf.addfile(ti)
        elif stat.S_ISFIFO(st.st_mode):
            ti.type = tarfile.FIFOTYPE
            self.tf.addfile(ti)
        # devices and sockets from a context are skipped

    def add_tree(self, plan: CopyPlan, src: Path, rel: str) -> None:
        st = os.stat(src)
        self.add_entry(plan, str(src), st, rel)
        for sub, full, s in walk(src, ""):
            self.add_entry(plan, full, s, f"{rel}/{sub}" if rel else sub)

    def add_archive(self, plan: CopyPlan, src: Path, rel: str) -> None:
        """ADD of a local tar: its entries under ``rel`` (entries escaping it are refused)."""
        with open(src, "rb") as f:
            plain, _ = open_archive(f)
            with tarfile.open(fileobj=plain, mode="r|", encoding="utf-8",
                              errors="surrogateescape") as tf:
                for m in tf:
                    parts = clean_entry_name(m.name)
                    if not parts or parts[-1].startswith(_WH_PREFIX):
                        continue
                    name = "/".join([rel, *parts]) if rel else "/".join(parts)
                    self.parents(name, None)
                    if m.isdir():
                        self.seen.discard(name)
                    self.seen.add(name)
                    m2 = tarfile.TarInfo(name)
                    m2.type, m2.mode, m2.uid, m2.gid, m2.mtime = m.type, m.mode, m.uid, m.gid, m.mtime
                    m2.size = m.size if m.isreg() else 0
                    if plan.owner is not None:
                        m2.uid, m2.gid = plan.owner
                    if m.issym():
                        m2.linkname = m.linkname
                    elif m.islnk():
                        target = clean_entry_name(m.linkname.lstrip("/"))
                        m2.linkname = "/".join([rel, *target]) if rel else "/".join(target)
                    elif m.ischr() or m.isblk():
                        continue
                    if m.isreg():
                        self.tf.addfile(m2, tf.extractfile(m))
                    else:
                        self.tf.addfile(m2)

    def copy(self, plan: CopyPlan) -> None:
        """Write every source of ``plan`` with Docker's COPY placement rules."""
        dest = plan.dest
        many = len(plan.sources) > 1
        if many and not dest.endswith("/"):
            raise errdefs.InvalidArgument(
                "When using COPY with more than one source file, the destination must be a "
                "directory and end with a /"
            )
        base = self.canonical(dest)
        dest_dir = dest.endswith("/") or many or self.is_dir(base)
        for src, name in plan.sources:
            st = os.stat(src)
            if stat.S_ISDIR(st.st_mode):
                self.parents(base + "/x" if base else "x", plan.owner)
                if base:
                    self.add_tree(plan, src, base)
                else:
                    for sub, full, s in walk(src, ""):
                        self.add_entry(plan, full, s, sub)
                continue
            if plan.extract and is_archive(src):
                self.parents(base + "/x" if base else "x", plan.owner)
                self.add_archive(plan, src, base)
                continue
            target = posixpath.join(base, posixpath.basename(name.rstrip("/"))) if dest_dir else base
            target = target.lstrip("/")
            if not target:
                raise errdefs.InvalidArgument(f"cannot copy {name} to the root directory")
            self.parents(target, plan.owner)
            self.add_entry(plan, str(src), st, target)
