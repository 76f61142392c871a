"""A container's filesystem as docker cp sees it (rootfs plus its mounts), reached only through fds.

Every lookup walks the path one component at a time from a pinned directory fd with
``O_PATH|O_NOFOLLOW``: symlinks are read and followed *by this code* with the container root as
"/" (absolute targets restart at the root, ``..`` never climbs above it), and a component whose
container path is a mount destination continues in the mount's source. The kernel never follows
a link and no host path is ever built from container data, so a container that swaps a path
component for a symlink to "/" in a loop (CVE-2018-15664) can only make a copy see its own
files. No code is loaded or run inside the container (CVE-2019-14271): this is plain Python on
the host side. Device nodes are never opened; FIFOs are never read.

Every function here blocks: call it through ``anyio.to_thread``.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
import tarfile
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

import errdefs
from images_svc.unpack import tar_error

__all__ = [
    "CHUNK",
    "ContainerFS",
    "ExtractOptions",
    "FSMount",
    "GoMode",
    "Resolved",
    "StatResult",
    "go_base",
    "go_file_mode",
    "rfc3339_nano",
]

CHUNK = 1 << 20  # bytes per yielded tar chunk
MAX_SYMLINKS = 255  # Go's FollowSymlinkInScope limit
_O_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_CAP_XATTR = "security.capability"


class GoMode:
    """Go's os.FileMode type bits (what X-Docker-Container-Path-Stat carries)."""

    DIR = 1 << 31
    SYMLINK = 1 << 27
    DEVICE = 1 << 26
    NAMED_PIPE = 1 << 25
    SOCKET = 1 << 24
    SETUID = 1 << 23
    SETGID = 1 << 22
    CHAR_DEVICE = 1 << 21
    STICKY = 1 << 20
    IRREGULAR = 1 << 19


def go_file_mode(st_mode: int) -> int:
    """Go's ``os.FileMode`` for a ``st_mode`` (as ``fs.FileInfo.Mode()`` builds it)."""
    mode = st_mode & 0o777
    fmt = stat.S_IFMT(st_mode)
    if fmt == stat.S_IFDIR:
        mode |= GoMode.DIR
    elif fmt == stat.S_IFLNK:
        mode |= GoMode.SYMLINK
    elif fmt == stat.S_IFBLK:
        mode |= GoMode.DEVICE
    elif fmt == stat.S_IFCHR:
        mode |= GoMode.DEVICE | GoMode.CHAR_DEVICE
    elif fmt == stat.S_IFIFO:
        mode |= GoMode.NAMED_PIPE
    elif fmt == stat.S_IFSOCK:
        mode |= GoMode.SOCKET
    if st_mode & stat.S_ISUID:
        mode |= GoMode.SETUID
    if st_mode & stat.S_ISGID:
        mode |= GoMode.SETGID
    if st_mode & stat.S_ISVTX:
        mode |= GoMode.STICKY
    return mode


def rfc3339_nano(ns: int) -> str:
    """Go's ``time.Time`` JSON form in UTC: RFC 3339 with trailing fraction zeros trimmed."""
    sec, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


@dataclass(frozen=True, slots=True)
class FSMount:
    """One mount of the container (volume or bind), as its processes see it."""

    destination: str  # path in the container
    source: str  # host path (trusted: the engine or the user chose it)
    rw: bool = True


@dataclass(frozen=True, slots=True)
class StatResult:
    """Docker's ContainerPathStat, before encoding."""

    name: str
    size: int
    mode: int  # Go os.FileMode
    mtime_ns: int
    link_target: str


@dataclass(slots=True)
class Resolved:
    """Where a container path leads.

    ``fd`` (O_PATH, owned) is -1 when the object does not exist; ``parent`` (O_PATH, owned) is -1
    when its parent does not exist either. ``path`` is the canonical container path (symlinks
    resolved; components past a missing one kept as written).
    """

    path: str
    parent: int = -1
    name: str = ""
    fd: int = -1
    mount: FSMount | None = None

    def close(self) -> None:
        for fd in (self.fd, self.parent):
            if fd >= 0:
                os.close(fd)
        self.fd = self.parent = -1


@dataclass(frozen=True, slots=True)
class ExtractOptions:
    """How PutArchive extracts."""

    no_overwrite_dir_non_dir: bool = False
    chown: tuple[int, int] | None = None  # every entry owned by this (uid, gid); None: header ids


@dataclass(slots=True)
class _Walk:
    """State of one tar walk: hardlink table and the output buffer."""

    buf: bytearray = field(default_factory=bytearray)
    links: dict[tuple[int, int], str] = field(default_factory=dict)
    root_dev: int = -1  # when >= 0, directories on another device are not entered


def _err(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


class ContainerFS:
    """The rootfs at ``rootfs`` with ``mounts`` laid over it, resolved safely.

    Resource handling:
        Holds an fd of the rootfs (and of each mount source once used) until ``close()``;
        use it as a context manager.
    """

    def __init__(self, rootfs: str, mounts: Sequence[FSMount] = ()) -> None:
        self._root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._mounts: dict[str, FSMount] = {}
        try:
            # Parents first (moby sortMounts); each destination is placed where the runtime put
            # it: symlinks in the rootfs (and in earlier mounts) resolved inside the container.
            for m in sorted(mounts, key=lambda m: len(_split(m.destination))):
                try:
                    r = self.resolve(m.destination, follow_last=True, strict=False)
                except OSError:  # a link loop, say: keep the destination as written
                    self._mounts["/" + "/".join(_split(posixpath.normpath(m.destination)))] = m
                    continue
                r.close()
                self._mounts[r.path] = m
        except BaseException:
            os.close(self._root)
            raise

    def close(self) -> None:
        if self._root >= 0:
            os.close(self._root)
            self._root = -1

    def __enter__(self) -> ContainerFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- resolution --------------------------------------------------------------------------

    def mount_of(self, path: str) -> FSMount | None:
        """The innermost mount holding canonical container path ``path``."""
        best: FSMount | None = None
        best_len = -1
        for dest, m in self._mounts.items():
            if (path == dest or path.startswith(dest + "/")) and len(dest) > best_len:
                best, best_len = m, len(dest)
        return best

    def _open_mount(self, m: FSMount) -> int:
        return os.open(m.source, os.O_PATH | os.O_CLOEXEC)

    def resolve(self, path: str, follow_last: bool, strict: bool = True) -> Resolved:
        """Resolve container path ``path`` (relative paths start at "/").

        Args:
            follow_last: follow a symlink in the last component too.
            strict: raise ENOTDIR when a non-directory has components after it (as the kernel
                does); with False such components are kept lexically (Go's
                FollowSymlinkInScope, used for link targets and mount destinations).

        Raises:
            OSError: ELOOP after ``MAX_SYMLINKS`` links, ENOTDIR (strict).
        """
        pending: deque[str] = deque(p for p in path.split("/") if p not in ("", "."))
        stack: list[tuple[str, int]] = []  # (name, O_PATH fd) below the root
        missing: list[str] = []
        links = 0
        try:
            while pending:
                comp = pending.popleft()
                if comp == "..":
                    if missing:
                        missing.pop()
                    elif stack:
                        os.close(stack.pop()[1])
                    continue
                if missing:
                    missing.append(comp)
                    continue
                cur = stack[-1][1] if stack else self._root
                cpath = "/" + "/".join([n for n, _ in stack] + [comp])
                mnt = self._mounts.get(cpath)
                if mnt is not None:
                    try:
                        stack.append((comp, self._open_mount(mnt)))
                    except FileNotFoundError:
                        missing.append(comp)
                    continue
                try:
                    fd = os.open(comp, _O_PATH, dir_fd=cur)
                except FileNotFoundError:
                    missing.append(comp)
                    continue
                st = os.fstat(fd)
                if stat.S_ISLNK(st.st_mode) and (pending or follow_last):
                    try:
                        target = os.readlink("", dir_fd=fd)
                    finally:
                        os.close(fd)
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise _err(errno.ELOOP, path)
                    if target.startswith("/"):
                        while stack:
                            os.close(stack.pop()[1])
                    pending.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
                    continue
                if pending and not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    if strict:
                        raise _err(errno.ENOTDIR, path)
                    missing.append(comp)
                    continue
                stack.append((comp, fd))
            names = [n for n, _ in stack] + missing
            res = Resolved("/" + "/".join(names))
            res.mount = self.mount_of(res.path)
            if len(missing) > 1:
                return res
            if missing:
                res.name = missing[0]
                res.parent = os.dup(stack[-1][1] if stack else self._root)
                return res
            if stack:
                res.name, res.fd = stack.pop()
                res.parent = os.dup(stack[-1][1] if stack else self._root)
            else:
                res.fd = os.dup(self._root)
                res.parent = os.dup(self._root)
            return res
        finally:
            for _, fd in stack:
                os.close(fd)

    # --- stat --------------------------------------------------------------------------------

    def stat(self, path: str) -> StatResult:
        """Docker's containerFSView.Stat: lstat ``path`` (a trailing "/" or "/." follows a link).

        Raises:
            FileNotFoundError: the path does not exist.
            OSError: ENOTDIR / ELOOP as the kernel would report them.
        """
        r = self.resolve(path, follow_last=_follows(path))
        try:
            if r.fd < 0:
                raise _err(errno.ENOENT, path)
            st = os.fstat(r.fd)
        finally:
            r.close()
        target = ""
        if stat.S_ISLNK(st.st_mode):
            t = self.resolve(path, follow_last=True, strict=False)
            target = t.path
            t.close()
        return StatResult(go_base(path), st.st_size, go_file_mode(st.st_mode), st.st_mtime_ns, target)

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None:
        """Up to ``limit`` bytes of the regular file ``path``; None when it is missing or not one."""
        r = self.resolve(path, follow_last=True, strict=False)
        try:
            if r.fd < 0 or not stat.S_ISREG(os.fstat(r.fd).st_mode):
                return None
            rfd = os.open(f"/proc/self/fd/{r.fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
        finally:
            r.close()
        try:
            out = bytearray()
            while len(out) < limit and (data := os.read(rfd, min(65536, limit - len(out)))):
                out += data
            return bytes(out)
        finally:
            os.close(rfd)

    # --- archives out ------------------------------------------------------------------------

    def iter_archive(self, abs_path: str, st: StatResult) -> Generator[bytes, None, None]:
        """Docker's GetArchive body for ``abs_path`` (already stat'ed as ``st``).

        A directory is archived with its contents under its base name (``.`` for a trailing
        "/.", the entries of "/" start with "/"); anything else is one entry, a symlink as a
        symlink. Mounts inside a directory are walked into, as in Docker's view.
        """
        w = _Walk()
        r = self.resolve(abs_path, follow_last=_follows(abs_path))
        try:
            if r.fd < 0:
                raise _err(errno.ENOENT, abs_path)
            rebase = go_base(abs_path)
            if st.mode & GoMode.DIR:
                prefix = "" if rebase == "/" else rebase
                yield from self._walk_dir(w, os.dup(r.fd), r.path, prefix, top=True, mounts=True)
            else:
                yield from self._entry(w, r.parent, r.name, rebase, r.path, mounts=True)
            yield from _finish(w)
        finally:
            r.close()

    def iter_export(self) -> Generator[bytes, None, None]:
        """docker export: the rootfs alone (no mounts), names relative to it, root not listed."""
        w = _Walk()
        w.root_dev = os.fstat(self._root).st_dev
        yield from self._walk_dir(w, os.dup(self._root), "/", "", top=False, mounts=False,
                                  list_self=False)
        yield from _finish(w)

    def _walk_dir(self, w: _Walk, pfd: int, cpath: str, arc: str, top: bool, mounts: bool,
                  list_self: bool = True) -> Generator[bytes, None, None]:
        """Archive directory ``pfd`` (O_PATH, consumed) as ``arc``, then its entries."""
        try:
            dfd = os.open(".", _O_DIR, dir_fd=pfd)
        finally:
            os.close(pfd)
        try:
            st = os.fstat(dfd)
            if list_self:
                yield from _emit(w, _header(st, arc or "/", ""))
            listed = set(os.listdir(dfd))
            if mounts:  # Docker's view creates missing mount points
                listed.update(posixpath.basename(d) for d in self._mounts
                             if posixpath.dirname(d) == cpath and d != "/")
            names = sorted(listed, key=os.fsencode)
            for name in names:
                child_arc = f"{arc}/{name}" if arc or top else name
                child = posixpath.join(cpath, name)
                yield from self._entry(w, dfd, name, child_arc, child, mounts)
        finally:
            os.close(dfd)

    def _entry(self, w: _Walk, dirfd: int, name: str, arc: str, cpath: str,
               mounts: bool) -> Generator[bytes, None, None]:
        mnt = self._mounts.get(cpath) if mounts else None
        try:
            fd = self._open_mount(mnt) if mnt is not None else os.open(name, _O_PATH, dir_fd=dirfd)
        except (FileNotFoundError, NotADirectoryError):
            return  # removed while walking (a running container changes its files)
        try:
            st = os.fstat(fd)
            fmt = stat.S_IFMT(st.st_mode)
            if fmt == stat.S_IFDIR:
                if w.root_dev >= 0 and st.st_dev != w.root_dev:
                    yield from _emit(w, _header(st, arc, ""))  # a mount point: the dir only
                    return
                dup = os.dup(fd)
                yield from self._walk_dir(w, dup, cpath, arc, top=False, mounts=mounts)
                return
            if fmt == stat.S_IFSOCK:
                return  # tar cannot hold sockets (Docker skips them too)
            if fmt == stat.S_IFLNK:
                yield from _emit(w, _header(st, arc, os.readlink("", dir_fd=fd)))
                return
            if fmt == stat.S_IFREG and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = w.links.get(key)
                if first is not None:
                    info = _tarinfo(st, arc)
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, first, 0
                    yield from _emit(w, _tobuf(info))
                    return
                w.links[key] = arc
            if fmt != stat.S_IFREG:
                yield from _emit(w, _header(st, arc, ""))
                return
            # Reopen the pinned inode for reading: same file, whatever happened to the name.
            rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
            try:
                info = _tarinfo(st, arc)
                try:
                    cap = os.getxattr(rfd, _CAP_XATTR)
                    info.pax_headers = {"SCHILY.xattr." + _CAP_XATTR:
                                        cap.decode("utf-8", "surrogateescape")}
                except OSError:
                    pass
                yield from _emit(w, _tobuf(info))
                left = st.st_size
                while left > 0:
                    if len(w.buf) >= CHUNK:
                        yield bytes(w.buf)
                        w.buf.clear()
                    data = os.read(rfd, min(CHUNK, left))
                    if not data:
                        break
                    w.buf += data
                    left -= len(data)
                if left:
                    w.buf += b"\0" * left  # the file shrank meanwhile: keep the header's size
                pad = (-st.st_size) % tarfile.BLOCKSIZE
                w.buf += b"\0" * pad
            finally:
                os.close(rfd)
        finally:
            os.close(fd)

    # --- archives in -------------------------------------------------------------------------

    def extract(self, fileobj: BinaryIO, dest: str, opts: ExtractOptions) -> None:
        """Extract a (possibly compressed) tar stream into the directory ``dest`` (canonical).

        Docker's rules: names are relative to ``dest`` (a leading "/" too), ``..`` may not climb
        out of it, parents in the container are followed inside the container, relative symlinks
        may not point above ``dest``, hardlinks only to entries under ``dest``; an existing
        directory is merged. Device nodes are refused. Writes into read-only mounts fail.

        Raises:
            errdefs.InvalidArgument: a malformed or hostile archive (``..``, device nodes).
            errdefs.Internal: Docker's 500s (overwrite dir/non-dir, breakout symlinks).
            OSError: from the filesystem (ENOENT is the caller's 404).
        """
        ex = _Extractor(self, dest, opts)
        try:
            # bufsize: the stream is read in 1 MiB pieces instead of tarfile's 10 KiB records.
            with tarfile.open(fileobj=fileobj, mode="r|*", bufsize=CHUNK, encoding="utf-8",
                              errors="surrogateescape") as tf:
                for m in tf:
                    ex.entry(tf, m)
        except (tarfile.TarError, EOFError) as e:
            raise tar_error(e) from None
        ex.finish()


def go_base(path: str) -> str:
    """Go's ``filepath.Base``: the last element, "/" for the root, "." for ""."""
    if not path:
        return "."
    trimmed = path.rstrip("/")
    return trimmed.rsplit("/", 1)[-1] if trimmed else "/"


def _follows(path: str) -> bool:
    """A trailing "/" or "/." makes lstat follow a final symlink."""
    return path.endswith("/") or path.endswith("/.") or path == "."


def _tarinfo(st: os.stat_result, arc: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arc)
    info.mode = st.st_mode & 0o7777
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = st.st_mtime_ns // 1_000_000_000
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFREG:
        info.type, info.size = tarfile.REGTYPE, st.st_size
    elif fmt == stat.S_IFDIR:
        info.type = tarfile.DIRTYPE
    elif fmt == stat.S_IFLNK:
        info.type = tarfile.SYMTYPE
    elif fmt == stat.S_IFIFO:
        info.type = tarfile.FIFOTYPE
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        info.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return info


def _tobuf(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _header(st: os.stat_result, arc: str, linkname: str) -> bytes:
    info = _tarinfo(st, arc)
    info.linkname = linkname
    return _tobuf(info)


def _emit(w: _Walk, data: bytes) -> Generator[bytes, None, None]:
    w.buf += data
    if len(w.buf) >= CHUNK:
        yield bytes(w.buf)
        w.buf.clear()


def _finish(w: _Walk) -> Generator[bytes, None, None]:
    w.buf += b"\0" * (2 * tarfile.BLOCKSIZE)
    yield bytes(w.buf)
    w.buf.clear()


class _Extractor:
    """One PutArchive extraction (see ContainerFS.extract)."""

    def __init__(self, fs: ContainerFS, dest: str, opts: ExtractOptions) -> None:
        self.fs = fs
        self.dest = dest
        self.opts = opts
        self.dirs: list[tuple[str, int]] = []  # (container path, mtime) set at the end

    def _target(self, name: str) -> str:
        """Container path of tar entry ``name`` (lexical, as Docker's Join(dest, Clean(name)))."""
        if "\x00" in name:
            raise errdefs.InvalidArgument(f"invalid tar entry {name!r}: NUL byte in name")
        if name.startswith("/"):
            rel = posixpath.normpath("/" + name.lstrip("/")).lstrip("/")
        else:
            rel = posixpath.normpath(name) if name else "."
            if rel == ".." or rel.startswith("../"):
                raise errdefs.InvalidArgument(f"{name!r} is outside of {self.dest!r}")
        return self.dest if rel in ("", ".") else posixpath.join(self.dest, rel)

    def _within_dest(self, path: str) -> bool:
        return self.dest == "/" or path == self.dest or path.startswith(self.dest + "/")

    def _parent(self, cpath: str) -> Resolved:
        """The (existing or created) parent directory of ``cpath``, followed inside the container."""
        parent = posixpath.dirname(cpath)
        r = self.fs.resolve(parent, follow_last=True)
        if r.fd >= 0:
            if not stat.S_ISDIR(os.fstat(r.fd).st_mode):
                r.close()
                raise _err(errno.ENOTDIR, parent)
            return r
        r.close()
        # Implied directories (moby createImpliedDirectories): 0755, root-owned.
        gp = self._parent(parent)
        try:
            self._check_writable(gp.path)
            name = posixpath.basename(parent)
            try:
                os.mkdir(name, 0o755, dir_fd=gp.fd)
            except FileExistsError:
                # A dangling symlink stands there: Docker's open then fails with ENOENT.
                raise _err(errno.ENOENT, parent) from None
        finally:
            gp.close()
        r = self.fs.resolve(parent, follow_last=True)
        if r.fd < 0 or not stat.S_ISDIR(os.fstat(r.fd).st_mode):
            r.close()
            raise _err(errno.ENOTDIR, parent)
        return r

    def _check_writable(self, cpath: str) -> None:
        m = self.fs.mount_of(cpath)
        if m is not None and not m.rw:
            raise _err(errno.EROFS, cpath)

    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        target = self._target(m.name)
        if m.ischr() or m.isblk():
            raise errdefs.InvalidArgument(
                f"invalid tar entry {m.name!r}: device nodes cannot be copied into a container"
            )
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo()):
            raise errdefs.InvalidArgument(f"unhandled tar header type {m.type!r}")
        if target == self.dest:
            if not m.isdir():
                raise errdefs.Internal(
                    f'cannot overwrite directory "{self.dest}" with non-directory "{self.dest}"'
                )
            return  # the destination itself: Docker skips "."
        pr = self._parent(target)
        try:
            base = posixpath.basename(target)
            cpath = posixpath.join(pr.path, base)
            self._check_writable(cpath)
            pfd = pr.fd
            if cpath in self.fs._mounts and not m.isdir():
                raise _err(errno.EBUSY, cpath)  # a mount point cannot be replaced
            try:
                cur: os.stat_result | None = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                cur = None
            if cur is not None:
                is_dir = stat.S_ISDIR(cur.st_mode)
                if self.opts.no_overwrite_dir_non_dir and is_dir and not m.isdir():
                    raise errdefs.Internal(
                        f'cannot overwrite directory "{target}" with non-directory "{self.dest}"'
                    )
                if self.opts.no_overwrite_dir_non_dir and not is_dir and m.isdir():
                    raise errdefs.Internal(
                        f'cannot overwrite non-directory "{target}" with directory "{self.dest}"'
                    )
                if not (is_dir and m.isdir()):
                    _remove(pfd, base, is_dir)
            uid, gid = self.opts.chown or (m.uid, m.gid)
            if m.isdir():
                if cur is None or not stat.S_ISDIR(cur.st_mode):
                    os.mkdir(base, 0o700, dir_fd=pfd)
                fd = os.open(base, _O_DIR | os.O_NOFOLLOW, dir_fd=pfd)
                try:
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, m.mode & 0o7777)
                    _xattrs(fd, m)
                finally:
                    os.close(fd)
                self.dirs.append((cpath, int(m.mtime)))
                return
            if m.isreg():
                self._file(tf, m, pfd, base, uid, gid)
            elif m.issym():
                link = posixpath.normpath(posixpath.join(posixpath.dirname(target), m.linkname))
                if not m.linkname.startswith("/") and not self._within_dest(link):
                    raise errdefs.Internal(f'invalid symlink "{target}" -> "{m.linkname}"')
                os.symlink(m.linkname, base, dir_fd=pfd)
                os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
            elif m.islnk():
                self._hardlink(m, pfd, base, target)
                return
            else:
                os.mknod(base, stat.S_IFIFO | 0o600, 0, dir_fd=pfd)
                # Pin the node: a path-based chmod would follow a symlink swapped in meanwhile.
                nfd = os.open(base, _O_PATH, dir_fd=pfd)
                try:
                    if not stat.S_ISFIFO(os.fstat(nfd).st_mode):
                        raise errdefs.Internal(f"{target}: replaced while being created")
                    os.chown(f"/proc/self/fd/{nfd}", uid, gid)
                    os.chmod(f"/proc/self/fd/{nfd}", m.mode & 0o7777)
                finally:
                    os.close(nfd)
            ns = int(m.mtime) * 1_000_000_000
            os.utime(base, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
        finally:
            pr.close()

    def _file(self, tf: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, base: str,
              uid: int, gid: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(m)
            if src is not None:
                with src:
                    while chunk := src.read(CHUNK):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view):]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, m.mode & 0o7777)  # after chown, which clears setuid/setgid
            _xattrs(fd, m)
            ns = int(m.mtime) * 1_000_000_000
            os.utime(fd, ns=(ns, ns))
        finally:
            os.close(fd)

    def _hardlink(self, m: tarfile.TarInfo, pfd: int, base: str, target: str) -> None:
        # moby: the link target is Join(extractDir, Linkname) and must stay below it.
        tpath = posixpath.normpath(posixpath.join(self.dest, m.linkname.lstrip("/")))
        if not m.linkname or not self._within_dest(tpath) or "\x00" in m.linkname:
            raise errdefs.Internal(f'invalid hardlink "{tpath}" -> "{m.linkname}"')
        t = self.fs.resolve(tpath, follow_last=False)
        try:
            if t.fd < 0:
                raise _err(errno.ENOENT, tpath)
            if stat.S_ISDIR(os.fstat(t.fd).st_mode):
                raise errdefs.InvalidArgument(f"invalid hardlink {target!r}: {m.linkname!r} is a directory")
            # Link the pinned inode itself (AT_EMPTY_PATH semantics through /proc): no name
            # lookup can be redirected between the check and the link.
            os.link(f"/proc/self/fd/{t.fd}", base, dst_dir_fd=pfd, follow_symlinks=True)
        finally:
            t.close()

    def finish(self) -> None:
        for cpath, mtime in reversed(self.dirs):
            try:
                r = self.fs.resolve(cpath, follow_last=False)
            except OSError:
                continue
            try:
                if r.fd >= 0 and stat.S_ISDIR(os.fstat(r.fd).st_mode):
                    ns = mtime * 1_000_000_000
                    os.utime(f"/proc/self/fd/{r.fd}", ns=(ns, ns))
            finally:
                r.close()


def _remove(pfd: int, base: str, is_dir: bool) -> None:
    if is_dir:
        shutil.rmtree(base, dir_fd=pfd)  # fd-based: never follows links out of the tree
    else:
        os.unlink(base, dir_fd=pfd)


def _xattrs(fd: int, m: tarfile.TarInfo) -> None:
    for key, value in m.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        attr = key[len("SCHILY.xattr."):]
        # overlayfs' own attributes in an upper dir could redirect lookups: never from a tar.
        if attr.startswith(_OVERLAY_XATTRS):
            continue
        try:
            os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
