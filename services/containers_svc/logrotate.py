"""Log drivers json-file/local/none: options as dockerd validates them, size rotation, reads across files.

conmon (2.1, no SIGUSR1 reopen) writes the k8s-file log and rotates it itself at
``--log-size-max`` by renaming a fresh file over it; berth arranges symlinks so that the old
file survives as a numbered segment (see the rotation section). Readers and the arranger of one
log share a lock, so a reader opens a consistent set of files; it then reads from its own fds.
A follower at the end of its file switches when ``ctr.log`` names another inode: conmon closes
the old fd before the rename, so the old segment is complete by then.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import anyio

import errdefs
from containers_svc.api import LogEntry, LogsOptions
from containers_svc.logs import stream_entries

__all__ = ["LogLocks", "LogSettings", "log_files", "merge_log_config", "prepare_log", "read_log",
           "rotate_loop", "settings_of"]  # fmt: skip

log = logging.getLogger(__name__)

DRIVERS = ("json-file", "local", "none")
# dockerd's other built-in drivers: accepted, not shipped anywhere (yet); what `docker logs`
# reads is dockerd's dual-logging cache, a `local` log (20 MiB x 5, compressed) unless disabled.
SHIPPING_DRIVERS = frozenset({"journald", "syslog", "gelf", "fluentd", "awslogs", "splunk", "gcplogs",
                              "logentries"})  # fmt: skip
_JSON_OPTS = {"max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag"}
_LOCAL_OPTS = {"max-file", "max-size", "compress"}
_COMMON_OPTS = {"mode", "max-buffer-size"}  # handled by dockerd's log copier, for any driver
LOCAL_MAX_SIZE = 20 * 1024 * 1024  # moby daemon/logger/local defaults
LOCAL_MAX_FILE = 5
ROTATE_POLL = 0.2
MAX_POLL = 2.0
BURST_RATE = 4 << 20  # bytes/s a quiet container is assumed able to start writing at
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$")


@dataclass(frozen=True, slots=True)
class LogSettings:
    """What the log driver of a container does: kept or not, and how it rotates."""

    driver: str = "json-file"
    max_size: int = -1  # bytes per file, -1 = unlimited
    max_file: int = 1
    compress: bool = False
    keep: bool = True  # False: nothing is written (none, or a shipping driver without its cache)

    @property
    def readable(self) -> bool:
        return self.keep

    @property
    def rotates(self) -> bool:
        return self.readable and self.max_size > 0 and self.max_file > 1

    @property
    def conmon_size_max(self) -> int:
        """conmon's --log-size-max: it rotates (max-file > 1, see below) or truncates (max-file 1)."""
        return self.max_size if self.readable and self.max_size > 0 else -1


def ram_in_bytes(text: str) -> int:
    """go-units RAMInBytes: binary multiples, ``invalid size: '<text>'`` on garbage."""
    m = _SIZE_RE.match(text)
    if not m:
        raise errdefs.InvalidArgument(f"invalid size: '{text}'")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def merge_log_config(log_cfg: Mapping[str, Any] | None, default_type: str,
                     default_opts: Mapping[str, str]) -> dict[str, Any]:  # fmt: skip
    """moby mergeAndVerifyLogConfig: the daemon's driver when none is given, its opts for that driver."""
    cfg = dict(log_cfg or {})
    typ = str(cfg.get("Type") or default_type or "json-file")
    opts = {str(k): str(v) for k, v in (cfg.get("Config") or {}).items()}
    if typ == (default_type or "json-file"):
        for k, v in default_opts.items():
            opts.setdefault(k, v)
    settings_of({"Type": typ, "Config": opts})
    return {"Type": typ, "Config": opts}


def settings_of(log_cfg: Mapping[str, Any] | None) -> LogSettings:
    """The settings of a HostConfig.LogConfig, checked as dockerd does at create/start.

    Raises:
        errdefs.InvalidArgument: dockerd's texts (unknown driver, unknown opt, bad size/count).
    """
    cfg = dict(log_cfg or {})
    typ = str(cfg.get("Type") or "json-file")
    opts: dict[str, str] = {str(k): str(v) for k, v in (cfg.get("Config") or {}).items()}
    if typ == "none":
        return LogSettings("none", keep=False)
    mode = opts.get("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise errdefs.InvalidArgument(f"logger: logging mode not supported: {mode}")
    if typ in SHIPPING_DRIVERS:
        cached = opts.get("cache-disabled", "false").lower() not in ("1", "t", "true")
        return LogSettings(typ, LOCAL_MAX_SIZE, LOCAL_MAX_FILE, True, keep=cached)
    if typ not in DRIVERS:
        raise errdefs.InvalidArgument(f"logger: no log driver named '{typ}' is registered")
    allowed = _JSON_OPTS if typ == "json-file" else _LOCAL_OPTS
    for key in opts:
        if key in allowed or key in _COMMON_OPTS:
            continue
        if typ == "json-file":
            raise errdefs.InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
        raise errdefs.InvalidArgument(f"unknown log opt '{key}' for log driver local")
    if typ == "local":
        max_size, max_file, compress = LOCAL_MAX_SIZE, LOCAL_MAX_FILE, True
    else:
        max_size, max_file, compress = -1, 1, False
    if "max-size" in opts:
        max_size = ram_in_bytes(opts["max-size"])
        if max_size <= 0 and typ == "json-file":
            raise errdefs.InvalidArgument("max-size must be a positive number")
        if max_size < 0:
            raise errdefs.InvalidArgument("max-size must be a positive number")
    if "max-file" in opts:
        try:
            max_file = int(opts["max-file"])
        except ValueError:
            raise errdefs.InvalidArgument(
                f'strconv.Atoi: parsing "{opts["max-file"]}": invalid syntax') from None
        if max_file < 1 and typ == "json-file":
            raise errdefs.InvalidArgument("max-file cannot be less than 1")
        if max_file < 0:
            raise errdefs.InvalidArgument("max-file cannot be less than 0")
    if "compress" in opts:
        low = opts["compress"].lower()
        if low not in ("1", "t", "true", "0", "f", "false"):
            raise errdefs.InvalidArgument(f'strconv.ParseBool: parsing "{opts["compress"]}": invalid syntax')
        compress = low in ("1", "t", "true")
    if typ == "json-file" and compress and (max_file == 1 or max_size <= 0):
        raise errdefs.InvalidArgument(
            "compress cannot be true when max-file is less than 2 or max-size is not set")
    if typ == "local" and max_size == 0:
        max_size = -1  # local: 0 means unlimited
    if max_file == 0:
        max_file = 1
    return LogSettings(typ, max_size, max_file, compress and max_file > 1 and max_size > 0)


def _segments(path: str) -> list[tuple[int, str]]:
    """(number, file) of the log's segments ``path.N`` / ``path.N.gz``, oldest first."""
    d, base = os.path.split(path)
    try:
        names = os.listdir(d or ".")
    except FileNotFoundError:
        return []
    out: list[tuple[int, str]] = []
    for name in names:
        if name.startswith(base + "."):
            rest = name[len(base) + 1:].removesuffix(".gz")
            if rest.isdigit():
                out.append((int(rest), os.path.join(d, name)))
    return sorted(out)


def _current(path: str) -> int | None:
    """The segment number ``path`` points to; None when it is a plain file or missing."""
    try:
        target = os.readlink(path)
    except OSError:
        return None
    rest = os.path.basename(target)[len(os.path.basename(path)) + 1:]
    return int(rest) if rest.isdigit() else None


def log_files(path: str) -> list[str]:
    """The existing files of a log, oldest first: segments, then ``path`` if it is a plain file."""
    out = [name for _, name in _segments(path)]
    if os.path.isfile(path) and not os.path.islink(path):
        out.append(path)
    return out


class LogLocks:
    """One lock per log path, shared by its rotator and its readers (all in this process)."""

    def __init__(self) -> None:
        self._locks: dict[str, anyio.Lock] = {}

    def get(self, path: str) -> anyio.Lock:
        lock = self._locks.get(path)
        if lock is None:
            lock = self._locks[path] = anyio.Lock()
        return lock

    def drop(self, path: str) -> None:
        self._locks.pop(path, None)


# ---- rotation -----------------------------------------------------------------------------------
#
# conmon 2.1 rotates by itself at --log-size-max: it closes its fd, opens ``path.tmp`` (O_CREAT |
# O_TRUNC, following symlinks) and renames it over ``path``. berth keeps ``path`` a symlink to
# the current segment ``path.N`` and ``path.tmp`` a symlink to the next, ``path.N+1``: conmon's
# rotation then creates the next segment and swaps the symlinks, and the old segment stays. If
# berth is late (or down) conmon makes a plain file; that one is kept too when berth is back
# before the next rotation, else conmon's truncation bounds the disk use.


def _next_number(path: str) -> int:
    segs = _segments(path)
    return segs[-1][0] + 1 if segs else 1


def _replace_symlink(target: str, link: str) -> None:
    tmp = f"{link}.new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.rename(tmp, link)


def _arrange(path: str, settings: LogSettings) -> int | None:
    """One pass: adopt a plain ``path``, arm ``path.tmp``, prune and compress; the current segment."""
    base = os.path.basename(path)
    if os.path.isfile(path) and not os.path.islink(path):
        # conmon's own file (first start, or a rotation while berth was late): keep it as a segment
        n = _next_number(path)
        os.link(path, f"{path}.{n}")
        _replace_symlink(f"{base}.{n}", path)
    elif not os.path.lexists(path):
        n = _next_number(path)
        with open(f"{path}.{n}", "ab"):
            pass
        _replace_symlink(f"{base}.{n}", path)
    cur = _current(path)
    if cur is None:
        return None
    want = f"{base}.{cur + 1}"
    tmp = f"{path}.tmp"
    try:
        have: str | None = os.readlink(tmp)
    except FileNotFoundError:
        have = None
    except OSError:
        have = ""  # a plain file: conmon is between its open and its rename
    if have is None:
        with contextlib.suppress(FileExistsError):
            os.symlink(want, tmp)  # EEXIST: conmon got there first, next pass
    elif have and have != want:
        os.unlink(tmp)
        with contextlib.suppress(FileExistsError):
            os.symlink(want, tmp)
    # keep the newest max-file segments (the current one included), compress the older ones
    keep = {n for n, _ in _segments(path) if n <= cur}
    keep = set(sorted(keep)[-settings.max_file:])
    for n, name in _segments(path):
        if n > cur:
            continue
        if n not in keep:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        elif settings.compress and n < cur and not name.endswith(".gz"):
            _gzip(name)
    return cur


def _gzip(name: str) -> None:
    tmp = f"{name}.gz.tmp"
    with open(name, "rb") as src, gzip.open(tmp, "wb", compresslevel=6) as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    os.rename(tmp, f"{name}.gz")
    os.unlink(name)


async def prepare_log(path: str, settings: LogSettings, lock: anyio.Lock) -> None:
    """Before conmon starts: ``path`` a symlink to a segment and ``path.tmp`` armed."""
    if not settings.rotates:
        return
    async with lock:
        try:
            await anyio.to_thread.run_sync(_arrange, path, settings)
        except OSError as e:
            raise errdefs.Internal(f"preparing the container log: {e}") from None


async def rotate_loop(
    path: str, settings: LogSettings, alive: Callable[[], bool], lock: anyio.Lock,
    poll: float = ROTATE_POLL,
) -> None:
    """Keep the segments of ``path`` arranged while ``alive()``.

    conmon rotates by itself; berth has to re-arm ``path.tmp`` before the next rotation, so it
    looks again well before the current segment can fill, at the rate it has been growing or
    at BURST_RATE (between ``poll / 10`` and ``MAX_POLL``: idle containers with roomy segments
    cost little). A writer faster than that loses middle segments to conmon's truncation.
    """
    if not settings.rotates:
        return
    prev: tuple[int | None, int] = (None, 0)
    wait = poll
    while alive():
        cur, size = await _arrange_safely(path, settings, lock)
        grown = size - prev[1] if cur == prev[0] else size + settings.max_size
        prev = (cur, size)
        # a quarter of the time the current segment takes to fill at the last rate, and never
        # longer than a burst of BURST_RATE takes to fill it (an idle container may start writing)
        cap = min(MAX_POLL, max(poll / 10, settings.max_size / BURST_RATE))
        wait = cap if grown <= 0 else min(cap, max(poll / 10, wait * settings.max_size / grown / 4))
        steps = max(1, round(wait / poll))
        for _ in range(steps):  # in steps, so that an exit ends the wait early
            await anyio.sleep(wait / steps)
            if not alive():
                break
    # the run's last segment: conmon is gone, compress what is final
    await _arrange_safely(path, settings, lock)


def _arrange_sized(path: str, settings: LogSettings) -> tuple[int | None, int]:
    cur = _arrange(path, settings)
    try:
        return cur, os.stat(path).st_size
    except FileNotFoundError:
        return cur, 0


async def _arrange_safely(path: str, settings: LogSettings, lock: anyio.Lock) -> tuple[int | None, int]:
    # A failure here (the container removed under us, a full disk) must never end the service.
    async with lock:
        try:
            return await anyio.to_thread.run_sync(_arrange_sized, path, settings)
        except OSError as e:
            if await anyio.Path(path).parent.is_dir():
                log.warning("arranging the log segments of %s: %s", path, e)
            return None, 0


# ---- reading ------------------------------------------------------------------------------------


def _open_all(path: str) -> tuple[list[str], BinaryIO | None, int | None]:
    """Open the log's files now (the caller holds the lock): older ones by name, the current one
    kept open for following, with its segment number."""
    cur_n = _current(path)
    olds: list[str] = []
    for n, name in _segments(path):
        if cur_n is None or n < cur_n:
            olds.append(name)
    try:
        cur: BinaryIO | None = open(path, "rb")  # kept open for following
    except FileNotFoundError:
        cur = None
    return olds, cur, cur_n


def _read_whole(name: str) -> bytes:
    try:
        if name.endswith(".gz"):
            with gzip.open(name, "rb") as f:
                return f.read()
        with open(name, "rb") as f:
            return f.read()
    except FileNotFoundError:
        if name.endswith(".gz"):
            return b""
        return _read_whole(name + ".gz")  # compressed between listing and opening


def _read_old(names: list[str]) -> list[bytes]:
    lines: list[bytes] = []
    for name in names:
        lines += [ln for ln in _read_whole(name).splitlines(keepends=True) if ln.endswith(b"\n")]
    return lines


class _Follower:
    """Complete lines of the current file; after a rotation, the next segments in order."""

    def __init__(self, path: str, cur: BinaryIO | None, number: int | None) -> None:
        self.path = path
        self.cur = cur
        self.number = number
        self.buf = b""

    def _lines(self, data: bytes) -> list[bytes]:
        self.buf += data
        end = self.buf.rfind(b"\n")
        if end < 0:
            return []
        out = self.buf[: end + 1].splitlines(keepends=True)
        self.buf = self.buf[end + 1:]
        return out

    def _open_next(self) -> list[bytes]:
        """Open the segment after ours; a compressed one is read whole and skipped past."""
        out: list[bytes] = []
        while self.number is not None:
            nxt = f"{self.path}.{self.number + 1}"
            if os.path.exists(nxt + ".gz") and not os.path.exists(nxt):
                out += self._lines(_read_whole(nxt + ".gz"))
                self.number += 1
                continue
            try:
                self.cur = open(nxt, "rb")
            except FileNotFoundError:
                break
            self.number += 1
            return out
        self.number = _current(self.path)
        try:
            self.cur = open(self.path, "rb")
        except FileNotFoundError:
            self.cur = None
        return out

    def read(self) -> list[bytes]:
        out: list[bytes] = []
        while True:
            if self.cur is None:
                try:
                    self.cur = open(self.path, "rb")
                except FileNotFoundError:
                    return out
                self.number = _current(self.path)
            data = self.cur.read()
            if data:
                out += self._lines(data)
                continue
            # at EOF: another inode at ``path`` means conmon closed ours, so it is complete
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return out
            if st.st_ino == os.fstat(self.cur.fileno()).st_ino:
                return out
            data = self.cur.read()
            if data:
                out += self._lines(data)
                continue
            self.cur.close()
            self.cur, self.buf = None, b""
            out += self._open_next()
            if self.cur is None:
                return out

    def close(self) -> None:
        if self.cur is not None:
            self.cur.close()
            self.cur = None


async def read_log(path: str, opts: LogsOptions, still_running: Callable[[], bool],
                   lock: anyio.Lock | None = None, poll: float = 0.1) -> AsyncIterator[LogEntry]:  # fmt: skip
    """Entries of the log at ``path`` and its rotated files per ``opts``; with follow, new ones
    (across rotations) until the container stops.

    ``still_running()`` is asked before each read; once it says False one last read is made,
    so nothing written before the exit is lost.
    """
    if lock is None:
        olds, cur, number = await anyio.to_thread.run_sync(_open_all, path)
    else:
        async with lock:
            olds, cur, number = await anyio.to_thread.run_sync(_open_all, path)
    follower = _Follower(path, cur, number)
    try:
        lines = await anyio.to_thread.run_sync(_read_old, olds)
        lines += await anyio.to_thread.run_sync(follower.read)
        async for e in stream_entries(lines, follower.read, opts, still_running, poll):
            yield e
    finally:
        follower.close()
