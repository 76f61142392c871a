"""The build context: a tar stream unpacked safely into a private temp dir, and paths resolved in it.

The context is unpacked with the layer unpacker (openat2 ``RESOLVE_BENEATH`` for every entry), so
no entry (``../x``, absolute names, links through symlinks) can write outside the temp dir; such
entries fail the build. Source paths of COPY/ADD are resolved inside a root the way Docker's
FollowSymlinkInScope does, except that in a context a path or symlink that leads outside the
root is refused with Docker's "forbidden path outside the build context".
"""

from __future__ import annotations

import bz2
import hashlib
import io
import lzma
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import errdefs
from images_svc.build.ignore import PatternMatcher, read_dockerignore
from images_svc.layers import open_decompressed
from images_svc.unpack import unpack_layer
from streamio import PeekedReader

__all__ = [
    "ContextError",
    "apply_dockerignore",
    "has_glob",
    "hash_sources",
    "open_archive",
    "resolve_in_root",
    "unpack_context",
    "walk",
]

_GLOB_CHARS = frozenset("*?[")
_MAX_LINKS = 40


class ContextError(errdefs.InvalidArgument):
    """Raised when a path leads outside the build context."""


def forbidden(path: str) -> ContextError:
    return ContextError(f"forbidden path outside the build context: {path} ()")


def open_archive(f: BinaryIO) -> tuple[BinaryIO, str]:
    """Decompress gzip, zstd, bzip2 or xz by magic; plain streams pass through."""
    head = f.read(6)
    rest = io.BufferedReader(PeekedReader(head, f), 1 << 16)  # type: ignore[arg-type]
    if head.startswith(b"BZh"):
        return bz2.BZ2File(rest), "bzip2"  # type: ignore[return-value]
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(rest), "xz"  # type: ignore[return-value]
    return open_decompressed(rest)  # type: ignore[arg-type]


class _EndPadded(io.RawIOBase):
    """Ends the stream with zero blocks: the Go CLI's rewritten contexts (``-f`` outside the
    context, ``-f -``) stop right after the last file's data, without padding or end blocks,
    which Go's tar reader accepts and Python's does not."""

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._count = 0
        self._tail: bytes | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        view = memoryview(b).cast("B")
        if self._tail is None:
            data = self._src.read(len(view))
            if data:
                self._count += len(data)
                view[: len(data)] = data
                return len(data)
            self._tail = b"\0" * ((-self._count) % 512 + 1024)
        n = min(len(view), len(self._tail))
        view[:n] = self._tail[:n]
        self._tail = self._tail[n:]
        return n


def unpack_context(stream: BinaryIO, dest: Path) -> None:
    """Unpack a (possibly compressed) context tar into the empty dir ``dest``. Blocking.

    Raises:
        errdefs.InvalidArgument: not a tar, or a hostile entry (nothing outside ``dest`` is touched).
    """
    try:
        plain, _ = open_archive(stream)
        padded = io.BufferedReader(_EndPadded(plain), 1 << 16)
        unpack_layer(padded, dest)  # type: ignore[arg-type]
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(f"the build context is not a valid tar archive: {e.message}") \
            from None
    except (OSError, EOFError, lzma.LZMAError, ValueError) as e:
        raise errdefs.InvalidArgument(f"the build context is not a valid tar archive: {e}") from None


def apply_dockerignore(root: Path, dockerfile: str) -> None:
    """Drop .dockerignore and the Dockerfile from the context when .dockerignore excludes them.

    The client has already left out what .dockerignore excludes; like dockerd, the daemon side
    only removes these two so that ``COPY . .`` does not carry them.
    """
    try:
        text = (root / ".dockerignore").read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return
    pm = PatternMatcher(read_dockerignore(text))
    for name in (".dockerignore", dockerfile):
        if pm.matches(name):
            p = resolve_in_root(root, name, strict=True, follow_last=False)
            if p.is_file() or p.is_symlink():
                p.unlink()


def check_inside(path: str) -> str:
    """Clean a context-relative path; refuse ``..`` escapes (Docker's message)."""
    cleaned = posixpath.normpath(path) if path else "."
    if cleaned == ".." or cleaned.startswith("../"):
        raise forbidden(path)
    return cleaned.lstrip("/") if cleaned.startswith("/") else cleaned


def resolve_in_root(root: Path, path: str, *, strict: bool, follow_last: bool = True) -> Path:
    """Resolve ``path`` inside ``root`` following symlinks in scope.

    With ``strict`` (a build context), a ``..`` escape or a symlink leading outside the root
    raises ContextError; otherwise (an image's root) absolute targets restart at the root and
    ``..`` stops there, as Docker's FollowSymlinkInScope does. The result may not exist.
    """
    if strict:
        path = check_inside(path)
    todo = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            elif strict:
                raise forbidden(path)
            continue
        cand = root.joinpath(*done, part)
        if (todo or follow_last) and cand.is_symlink():
            hops += 1
            if hops > _MAX_LINKS:
                raise errdefs.InvalidArgument(f"too many levels of symbolic links: {path}")
            target = os.readlink(cand)
            if target.startswith("/"):
                if strict:
                    raise forbidden(path)
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done.append(part)
    return root.joinpath(*done)


def has_glob(path: str) -> bool:
    return any(c in _GLOB_CHARS for c in path)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise errdefs.InvalidArgument(f"syntax error in pattern: {pattern}")
            body = pattern[i + 1 : j]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append(f"[{body}]")
            i = j
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.S)


def glob(root: Path, pattern: str) -> list[str]:
    """Root-relative paths matching a filepath.Match pattern, sorted.

    Only the pattern's fixed leading directories are walked, and no deeper than it reaches.
    """
    pat = check_inside(pattern)
    rx = _glob_regex(pat)
    parts = pat.split("/")
    fixed: list[str] = []
    for part in parts[:-1]:
        if has_glob(part):
            break
        fixed.append(part)
    base = "/".join(fixed)
    start = root / base if base else root
    if start.is_symlink() or not start.is_dir():
        return []
    out = [rel for rel, _full, _st in walk(root, base, max_depth=len(parts)) if rx.match(rel)]
    return sorted(out)


def walk(root: Path, rel: str, max_depth: int | None = None) -> Iterator[tuple[str, str, os.stat_result]]:
    """Everything under ``root/rel`` (not following symlinks): (relative path, full path, lstat).

    With ``max_depth``, paths of more than that many components are not visited.
    """
    base = root / rel if rel else root
    for name in sorted(os.listdir(base), key=os.fsencode):
        r = f"{rel}/{name}" if rel else name
        full = os.path.join(base, name)
        st = os.lstat(full)
        yield r, full, st
        if stat.S_ISDIR(st.st_mode) and (max_depth is None or r.count("/") + 1 < max_depth):
            yield from walk(root, r, max_depth)


def hash_sources(paths: list[Path], keep_owner: bool) -> str:
    """Docker-style content hash of COPY sources: file data and metadata, never mtimes."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)  # top-level sources are followed
        items: list[tuple[str, str, os.stat_result]] = [(".", str(p), st)]
        if stat.S_ISDIR(st.st_mode):
            items += list(walk(p, ""))
        for rel, full, s in items:
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            h.update(f"{stat.S_IFMT(s.st_mode)}:{stat.S_IMODE(s.st_mode)}:{s.st_size}".encode())
            if keep_owner:
                h.update(f":{s.st_uid}:{s.st_gid}".encode())
            if stat.S_ISLNK(s.st_mode):
                h.update(os.readlink(full).encode("utf-8", "surrogateescape"))
            elif stat.S_ISREG(s.st_mode):
                with open(full, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            h.update(b"\n")
    return h.hexdigest()
