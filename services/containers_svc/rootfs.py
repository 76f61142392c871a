"""Lookups inside a container's root filesystem that never leave it: paths, users, executables.

Every path is resolved component by component with the rootfs as "/": symlinks (absolute or
relative, ``..`` included) are followed *inside* the rootfs only, at most 40 of them, and files
are read with O_NOFOLLOW and a size cap, so a hostile image cannot make berth read host files
or hang on a FIFO. Blocking: call through ``anyio.to_thread``.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import errdefs

__all__ = [
    "ExecError",
    "ExecUser",
    "find_executable",
    "lookup_user",
    "mkdir_in_root",
    "read_file_in_root",
    "resolve_in_root",
]

MAX_SYMLINKS = 40
MAX_DB_BYTES = 1 << 20  # passwd/group files larger than this are cut off


def resolve_in_root(root: str, path: str) -> str:
    """Host path of ``path`` inside ``root``, symlinks resolved within ``root``.

    The result is always under ``root``; components that do not exist are kept as written.

    Raises:
        errdefs.InvalidArgument: too many levels of symbolic links.
    """
    parts: deque[str] = deque(p for p in path.split("/") if p not in ("", "."))
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.popleft()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except OSError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise errdefs.InvalidArgument(f"{path}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def read_file_in_root(root: str, path: str, limit: int = MAX_DB_BYTES) -> bytes | None:
    """Up to ``limit`` bytes of the regular file ``path`` in ``root``; None if it is missing."""
    host = resolve_in_root(root, path)
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def mkdir_in_root(root: str, path: str, mode: int = 0o755) -> None:
    """Create directory ``path`` (and parents) inside ``root`` (Docker creates WorkingDir)."""
    host = resolve_in_root(root, path)
    rel = os.path.relpath(host, root)
    cur = root
    for part in [] if rel == "." else rel.split("/"):
        cur = os.path.join(cur, part)
        try:
            os.mkdir(cur, mode)
        except FileExistsError:
            if os.path.islink(cur):  # appeared meanwhile: refuse rather than follow
                raise errdefs.InvalidArgument(f"cannot create directory {path}: symlink race") from None


@dataclass(frozen=True, slots=True)
class ExecUser:
    """The process identity: uid, gid, supplementary gids and HOME."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str


def _parse_db(data: bytes | None) -> list[list[str]]:
    if not data:
        return []
    rows = []
    for line in data.decode(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rows.append(line.split(":"))
    return rows


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def lookup_user(root: str, user: str, group_add: Sequence[str] = ()) -> ExecUser:
    """Resolve Config.User ("name", "uid", "name:group", "uid:gid") against the rootfs' files.

    Raises:
        errdefs.InvalidArgument: ``unable to find user x: no matching entries in passwd file``
            (runc's text), likewise for groups.
    """
    name, _, grp = (user or "").partition(":")
    passwd = _parse_db(read_file_in_root(root, "/etc/passwd"))
    groups = _parse_db(read_file_in_root(root, "/etc/group"))
    uid, gid, home, username = 0, 0, "/", ""
    if name:
        numeric = _int(name) is not None
        entry = next(
            (r for r in passwd if len(r) >= 4 and (r[0] == name or (numeric and r[2] == name))), None
        )
        if entry is not None:
            username = entry[0]
            uid = _int(entry[2]) or 0
            gid = _int(entry[3]) or 0
            home = entry[5] if len(entry) > 5 and entry[5] else "/"
        elif (num := _int(name)) is not None:
            uid = num
        else:
            raise errdefs.InvalidArgument(
                f"unable to find user {name}: no matching entries in passwd file"
            )
    else:
        entry = next((r for r in passwd if len(r) >= 4 and r[2] == "0"), None)
        if entry is not None:
            username = entry[0]
            home = entry[5] if len(entry) > 5 and entry[5] else "/"
    if grp:
        gid = _group_id(groups, grp)
    extra: list[int] = []
    if username and not grp:
        for r in groups:
            if len(r) >= 4 and username in r[3].split(",") and (g := _int(r[2])) is not None:
                if g != gid and g not in extra:
                    extra.append(g)
    for added in group_add:
        gnum = _group_id(groups, added)
        if gnum not in extra:
            extra.append(gnum)
    return ExecUser(uid, gid, tuple(extra), home)


def _group_id(groups: list[list[str]], grp: str) -> int:
    entry = next((r for r in groups if len(r) >= 3 and (r[0] == grp or r[2] == grp)), None)
    if entry is not None and (g := _int(entry[2])) is not None:
        return g
    if (num := _int(grp)) is not None:
        return num
    raise errdefs.InvalidArgument(f"unable to find group {grp}: no matching entries in group file")


class ExecError(errdefs.InvalidArgument):
    """The main process cannot be executed; ``exit_code`` is Docker's 127 or 126."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _is_exec(host: str) -> tuple[bool, str]:
    try:
        st = os.lstat(host)  # resolved inside root already: no symlink left to follow
    except OSError:
        return False, "missing"
    if stat.S_ISDIR(st.st_mode):
        return False, "dir"
    if not st.st_mode & 0o111:
        return False, "perm"
    return True, ""


def find_executable(root: str, cmd: str, env: Sequence[str], cwd: str = "/") -> str:
    """Check that ``cmd`` can be executed in ``root`` the way runc resolves it (Go exec.LookPath).

    Returns:
        The path in the container.

    Raises:
        ExecError: ``exec: "x": executable file not found in $PATH`` (127),
            ``exec: "/x": stat /x: no such file or directory`` (127),
            ``exec: "/x": permission denied`` / ``is a directory`` (126).
    """
    if "/" in cmd:
        path = cmd if cmd.startswith("/") else os.path.join(cwd or "/", cmd)
        ok, why = _is_exec(resolve_in_root(root, path))
        if ok:
            return path
        if why == "missing":
            raise ExecError(f'exec: "{cmd}": stat {cmd}: no such file or directory', 127)
        if why == "dir":
            raise ExecError(f'exec: "{cmd}": is a directory', 126)
        raise ExecError(f'exec: "{cmd}": permission denied', 126)
    path_env = next((e[5:] for e in reversed(list(env)) if e.startswith("PATH=")), DEFAULT_SEARCH)
    for d in path_env.split(":"):
        cand = os.path.join(d or ".", cmd)
        if not cand.startswith("/"):
            cand = os.path.join(cwd or "/", cand)
        ok, _ = _is_exec(resolve_in_root(root, cand))
        if ok:
            return cand
    raise ExecError(f'exec: "{cmd}": executable file not found in $PATH', 127)


DEFAULT_SEARCH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
