"""Safe extraction of one layer tar stream into an overlayfs lower directory.

Every parent directory is resolved with openat2(2) ``RESOLVE_BENEATH`` relative to a
directory fd of the destination, and every final component is created relative to that
parent fd without following symlinks, so no entry can write, chmod or chown outside the
destination (CVE-2014-6407, CVE-2014-9356, CVE-2021-32760 classes). Whiteouts are
converted to overlayfs form (0:0 char devices, ``trusted.overlay.opaque``).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import errdefs

__all__ = [
    "MAX_ENTRIES",
    "UnpackStats",
    "clean_entry_name",
    "openat2",
    "tar_error",
    "unpack_layer",
]

MAX_ENTRIES = 4_000_000
_PATH_MAX = 4096
_NAME_MAX = 255
_DEV_MAX = 0xFFFFFFFF
_COPY_CHUNK = 1 << 20

_SYS_OPENAT2 = 437  # same number on every architecture (unified syscall table)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS

_WH_PREFIX = ".wh."
_WH_META_PREFIX = ".wh..wh."
_WH_OPAQUE = ".wh..wh..opq"
_OPAQUE_XATTR = "trusted.overlay.opaque"


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """Call openat2(2); ``O_CLOEXEC`` is always added.

    Raises:
        OSError: with the kernel's errno (EXDEV/ELOOP when resolution would escape).
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path)
    for _ in range(16):
        fd = _syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(raw),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        # EAGAIN: a concurrent rename raced the "beneath" check; the kernel asks to retry.
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


@dataclass(frozen=True, slots=True)
class UnpackStats:
    """What one unpack produced."""

    size: int  # sum of regular-file sizes
    entries: int  # tar entries processed


def _q(s: str) -> str:
    """Quote like Go's %q, as Docker's messages do."""
    return json.dumps(s, ensure_ascii=False)


def _invalid(name: str, why: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"invalid tar entry {_q(name)}: {why}")


def clean_entry_name(name: str) -> list[str]:
    """Split a tar entry name into safe components ([] means the root itself).

    A leading ``./`` and empty or ``.`` components are dropped.

    Raises:
        errdefs.InvalidArgument: for absolute names, ``..`` components, NUL bytes or
            over-long names.
    """
    if "\x00" in name:
        raise _invalid(name, "NUL byte in name")
    if len(os.fsencode(name)) > _PATH_MAX:
        raise _invalid(name, "name too long")
    if name.startswith("/"):
        raise _invalid(name, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    for p in parts:
        if p == "..":
            raise _invalid(name, "path escapes the layer root")
        if len(os.fsencode(p)) > _NAME_MAX:
            raise _invalid(name, "path component too long")
    return parts


def _clean_link_target(entry: str, target: str) -> list[str]:
    # Hardlink targets are names inside the same archive; a leading "/" (kaniko) means
    # the layer root, but ".." may never appear.
    if "\x00" in target or not target.strip("/"):
        raise _invalid(entry, f"invalid hardlink target {_q(target)}")
    parts = [p for p in target.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise _invalid(entry, f"hardlink target {_q(target)} escapes the layer root")
    return parts


class _Unpacker:
    def __init__(self, rootfd: int, max_size: int | None) -> None:
        self.root = rootfd
        self.max_size = max_size
        self.size = 0
        self.entries = 0
        self.dir_times: list[tuple[str, int]] = []

    # --- path resolution -------------------------------------------------------------

    def _resolve_error(self, name: str, e: OSError) -> errdefs.InvalidArgument:
        if e.errno in (errno.EXDEV, errno.ELOOP):
            return _invalid(name, "path escapes the layer root")
        if e.errno == errno.ENOTDIR:
            return _invalid(name, "a parent path is not a directory")
        if e.errno == errno.ENOENT:
            return _invalid(name, "a parent path does not exist")
        return _invalid(name, e.strerror or str(e))

    def open_dir(self, parts: list[str], name: str, create: bool = True) -> int:
        """Return an O_RDONLY fd of the directory ``parts`` beneath the root."""
        if not parts:
            return os.dup(self.root)
        flags = os.O_RDONLY | os.O_DIRECTORY
        try:
            return openat2(self.root, "/".join(parts), flags, _RESOLVE)
        except OSError as e:
            if e.errno != errno.ENOENT or not create:
                raise self._resolve_error(name, e) from None
        # Some parents are missing: walk down, creating them (mode 0755) as needed.
        fd = os.dup(self.root)
        try:
            for i, comp in enumerate(parts):
                sub = "/".join(parts[: i + 1])
                try:
                    nfd = openat2(self.root, sub, flags, _RESOLVE)
                except OSError as e:
                    if e.errno != errno.ENOENT:
                        raise self._resolve_error(name, e) from None
                    try:
                        os.mkdir(comp, 0o755, dir_fd=fd)
                    except FileExistsError:
                        # A dangling symlink (or similar) stands where a directory must be.
                        raise _invalid(name, f"parent {_q(sub)} is not a directory") from None
                    try:
                        nfd = openat2(
                            fd, comp, flags | os.O_NOFOLLOW, _RESOLVE | RESOLVE_NO_SYMLINKS
                        )
                    except OSError as e2:
                        raise self._resolve_error(name, e2) from None
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    # --- helpers ---------------------------------------------------------------------

    @staticmethod
    def _clear(pfd: int, base: str, keep_dir: bool) -> bool:
        """Remove ``base`` in ``pfd`` (never following links); True if a dir was kept."""
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        return False

    @staticmethod
    def _xattrs(m: tarfile.TarInfo) -> list[tuple[str, bytes]]:
        out = []
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr.") :]
            # Overlay's own attributes must come only from whiteout conversion: a forged
            # redirect/metacopy/opaque xattr could make overlayfs expose other paths.
            if attr.startswith(("trusted.overlay.", "user.overlay.")):
                continue
            out.append((attr, value.encode("utf-8", "surrogateescape")))
        return out

    def _meta_fd(self, fd: int, m: tarfile.TarInfo, set_times: bool) -> None:
        os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)  # after chown, which clears setuid/setgid
        for attr, value in self._xattrs(m):
            try:
                os.setxattr(fd, attr, value)
            except OSError:
                if attr.startswith("security."):
                    continue
                raise
        if set_times:
            ns = int(m.mtime) * 1_000_000_000
            os.utime(fd, ns=(ns, ns))

    # --- entries ---------------------------------------------------------------------

    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise errdefs.InvalidArgument(f"layer has more than {MAX_ENTRIES} entries")
        name = m.name
        if m.ischr() or m.isblk():
            # Range-check before any syscall: mknod must never see a truncated number.
            for v in (m.devmajor, m.devminor):
                if not isinstance(v, int) or v < 0 or v > _DEV_MAX:
                    raise _invalid(name, f"device number {v} out of range")
        parts = clean_entry_name(name)
        if not parts:
            if not m.isdir():
                raise _invalid(name, "the layer root must be a directory")
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.root)
            try:
                self._meta_fd(fd, m, set_times=False)
            finally:
                os.close(fd)
            self.dir_times.append((".", int(m.mtime)))
            return
        parent, base = parts[:-1], parts[-1]
        if base.startswith(_WH_PREFIX):
            self._whiteout(m, parent, base)
            return
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.ischr() or m.isblk()
                or m.isfifo()):
            raise _invalid(name, f"unsupported entry type {m.type!r}")
        pfd = self.open_dir(parent, name)
        try:
            if m.isreg():
                self._file(tf, m, pfd, base)
            elif m.isdir():
                self._dir(m, pfd, base, "/".join(parts))
            elif m.issym():
                self._symlink(m, pfd, base)
            elif m.islnk():
                self._hardlink(m, pfd, parent, base)
            else:
                self._node(m, pfd, base)
        except OSError as e:
            if e.errno in (errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTDIR, errno.ELOOP):
                raise _invalid(name, e.strerror or str(e)) from None
            raise
        finally:
            os.close(pfd)

    def _file(self, tf: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, base: str) -> None:
        if self.max_size is not None and self.size + m.size > self.max_size:
            raise errdefs.InvalidArgument(
                f"layer exceeds the maximum unpacked size of {self.max_size} bytes"
            )
        self._clear(pfd, base, keep_dir=False)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(m)
            if src is None:
                raise _invalid(m.name, "no data for regular file")
            with src:
                while chunk := src.read(_COPY_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            self._meta_fd(fd, m, set_times=True)
        finally:
            os.close(fd)
        self.size += m.size

    def _dir(self, m: tarfile.TarInfo, pfd: int, base: str, rel: str) -> None:
        if not self._clear(pfd, base, keep_dir=True):
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=pfd)
        try:
            self._meta_fd(fd, m, set_times=False)
        finally:
            os.close(fd)
        # Directory times are set at the end: later entries would change them.
        self.dir_times.append((rel, int(m.mtime)))

    def _symlink(self, m: tarfile.TarInfo, pfd: int, base: str) -> None:
        if not m.linkname or "\x00" in m.linkname:
            raise _invalid(m.name, "empty symlink target")
        self._clear(pfd, base, keep_dir=False)
        os.symlink(m.linkname, base, dir_fd=pfd)
        os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        ns = int(m.mtime) * 1_000_000_000
        os.utime(base, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, m: tarfile.TarInfo, pfd: int, parent: list[str], base: str) -> None:
        tparts = _clean_link_target(m.name, m.linkname)
        tfd = self.open_dir(tparts[:-1], m.name, create=False)
        try:
            tbase = tparts[-1]
            try:
                tst = os.stat(tbase, dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise _invalid(m.name, f"hardlink target {_q(m.linkname)} not found") from None
            if stat.S_ISDIR(tst.st_mode):
                raise _invalid(m.name, f"hardlink target {_q(m.linkname)} is a directory")
            if stat.S_ISLNK(tst.st_mode) and not os.readlink(tbase, dir_fd=tfd).startswith("/"):
                # Linking a symlink copies the link, not its target; still refuse one
                # that points out of the layer (CVE-2021-32760 defence in depth).
                try:
                    os.close(openat2(self.root, "/".join(tparts), os.O_PATH, _RESOLVE))
                except OSError as e:
                    if e.errno in (errno.EXDEV, errno.ELOOP):
                        raise _invalid(
                            m.name, f"hardlink to symlink {_q(m.linkname)} escapes the layer root"
                        ) from None
            try:
                cur = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                if (cur.st_dev, cur.st_ino) == (tst.st_dev, tst.st_ino):
                    return  # already this inode (e.g. a link to itself)
            except FileNotFoundError:
                pass
            self._clear(pfd, base, keep_dir=False)
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _node(self, m: tarfile.TarInfo, pfd: int, base: str) -> None:
        self._clear(pfd, base, keep_dir=False)
        if m.isfifo():
            os.mknod(base, stat.S_IFIFO | 0o600, 0, dir_fd=pfd)
        else:
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        self._meta_path(m, pfd, base)

    def _meta_path(self, m: tarfile.TarInfo, pfd: int, base: str) -> None:
        """chown/chmod/utime a node that cannot be opened for I/O, never through a link."""
        os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise _invalid(m.name, "node was replaced by a symlink")
            # fchmod does not work on O_PATH fds; the /proc link names exactly this inode.
            os.chmod(f"/proc/self/fd/{fd}", m.mode & 0o7777)
        finally:
            os.close(fd)
        ns = int(m.mtime) * 1_000_000_000
        os.utime(base, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def _whiteout(self, m: tarfile.TarInfo, parent: list[str], base: str) -> None:
        if base == _WH_OPAQUE:
            dfd = self.open_dir(parent, m.name)
            try:
                os.setxattr(dfd, _OPAQUE_XATTR, b"y")
            finally:
                os.close(dfd)
            return
        if base.startswith(_WH_META_PREFIX):
            return  # other aufs metadata (.wh..wh.plnk, ...) has no overlay meaning
        orig = base[len(_WH_PREFIX) :]
        if orig in ("", ".", ".."):
            raise errdefs.InvalidArgument(f"invalid whiteout entry {_q(m.name)}")
        pfd = self.open_dir(parent, m.name)
        try:
            self._clear(pfd, orig, keep_dir=False)
            os.mknod(orig, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
            os.chown(orig, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def finish(self) -> None:
        for rel, mtime in reversed(self.dir_times):
            try:
                fd = openat2(self.root, rel, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                             _RESOLVE)
            except OSError:
                continue  # replaced or removed by a later entry
            try:
                ns = mtime * 1_000_000_000
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)


def tar_error(e: BaseException) -> errdefs.InvalidArgument:
    """Turn a tarfile failure into Docker-like wording."""
    msg = str(e)
    if isinstance(e, EOFError) or "unexpected end" in msg or "truncated" in msg:
        return errdefs.InvalidArgument(f"unexpected EOF: {msg}")
    return errdefs.InvalidArgument(f"invalid tar header: {msg}")


def unpack_layer(fileobj: BinaryIO, dest: Path, *, max_size: int | None = None) -> UnpackStats:
    """Extract an uncompressed layer tar, read sequentially, into the directory ``dest``.

    Blocking: run it in a worker thread. Nothing is ever written outside ``dest``.

    Args:
        fileobj: the uncompressed tar stream.
        dest: an existing directory (normally empty) that becomes an overlay lower dir.
        max_size: refuse layers whose regular files add up to more than this.

    Returns:
        The unpacked size and entry count.

    Raises:
        errdefs.InvalidArgument: for a malformed or hostile archive; ``dest`` may then hold
            a partial tree, which the caller discards.
    """
    rootfd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        u = _Unpacker(rootfd, max_size)
        try:
            with tarfile.open(fileobj=fileobj, mode="r|", encoding="utf-8",
                              errors="surrogateescape") as tf:
                for m in tf:
                    try:
                        u.entry(tf, m)
                    except OSError as e:
                        # A kernel refusal (mknod EINVAL, ENAMETOOLONG, ...) is the archive's fault.
                        raise errdefs.InvalidArgument(
                            f"cannot unpack tar entry {m.name!r}: {e.strerror or e}"
                        ) from None
        except (tarfile.TarError, EOFError) as e:
            raise tar_error(e) from None
        u.finish()
        return UnpackStats(size=u.size, entries=u.entries)
    finally:
        os.close(rootfd)
