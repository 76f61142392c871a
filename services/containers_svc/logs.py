"""Container logs: conmon's k8s-file lines into LogEntry items, with since/until/tail/follow."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime

import anyio

from containers_svc.api import LogEntry, LogsOptions
from ocirun import parse_k8s_log_line

__all__ = [
    "entries_from_lines", "format_timestamp", "parse_rfc3339_nano", "read_log", "stream_entries",
    "with_timestamp",
]

_READ = 1 << 16


def parse_rfc3339_nano(ts: str) -> int:
    """Unix nanoseconds of conmon's timestamp (``2024-01-01T00:00:00.123456789+00:00``); 0 if bad."""
    try:
        head, _, rest = ts.partition(".")
        frac, zone = rest, ""
        for i, ch in enumerate(rest):
            if not ch.isdigit():
                frac, zone = rest[:i], rest[i:]
                break
        if not rest:
            # no fraction: the zone follows the seconds
            head, zone = ts[:19], ts[19:]
        base = datetime.fromisoformat(head + (zone.replace("Z", "+00:00") or "+00:00"))
        return int(base.timestamp()) * 1_000_000_000 + int((frac or "0")[:9].ljust(9, "0"))
    except ValueError:
        return 0


def format_timestamp(time_nano: int) -> str:
    """Go's RFC3339Nano in UTC, trailing zeros of the fraction trimmed (Docker's log timestamps)."""
    secs, nanos = divmod(time_nano, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{nanos:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def with_timestamp(entry: LogEntry) -> LogEntry:
    """The entry with ``<RFC3339Nano> `` prefixed to its data (logs?timestamps=1)."""
    return LogEntry(entry.stream, format_timestamp(entry.time_nano).encode() + b" " + entry.data,
                    entry.time_nano)


def entries_from_lines(lines: Iterable[bytes]) -> list[LogEntry]:
    """LogEntry per k8s-file line; partial (P) lines keep no newline, full (F) lines get one."""
    out: list[LogEntry] = []
    for line in lines:
        if not line.strip():
            continue
        ts, stream, partial, payload = parse_k8s_log_line(line)
        if stream not in ("stdout", "stderr"):
            continue
        out.append(LogEntry(stream, payload if partial else payload + b"\n", parse_rfc3339_nano(ts)))
    return out


def _wanted(e: LogEntry, opts: LogsOptions) -> bool:
    if e.stream == "stdout" and not opts.stdout:
        return False
    if e.stream == "stderr" and not opts.stderr:
        return False
    if opts.since_nano and e.time_nano < opts.since_nano:
        return False
    return not (opts.until_nano and e.time_nano > opts.until_nano)


def _read_from(path: str, offset: int) -> tuple[list[bytes], int]:
    """Complete lines from ``offset`` on, and the offset after the last complete line."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    return data[: end + 1].splitlines(keepends=True), offset + end + 1


def _read_all(path: str) -> tuple[list[bytes], int]:
    return _read_from(path, 0)


async def stream_entries(
    first: list[bytes],
    more: Callable[[], list[bytes]],
    opts: LogsOptions,
    still_running: Callable[[], bool],
    poll: float = 0.1,
) -> AsyncIterator[LogEntry]:
    """Entries of ``first`` (the log as it stood) per ``opts``; with follow, then those of each
    blocking ``more()`` read (run in a worker thread) until the container stops.

    ``still_running()`` is asked before each read; once it says False one last read is made,
    so nothing written before the exit is lost.
    """
    entries = [e for e in entries_from_lines(first) if _wanted(e, opts)]
    if opts.tail >= 0:
        entries = list(deque(entries, maxlen=opts.tail)) if opts.tail else []
    for e in entries:
        yield with_timestamp(e) if opts.timestamps else e
    del entries
    if not opts.follow:
        return
    while True:
        running = still_running()
        lines = await anyio.to_thread.run_sync(more)
        for e in entries_from_lines(lines):
            if opts.until_nano and e.time_nano > opts.until_nano:
                return
            if _wanted(e, opts):
                yield with_timestamp(e) if opts.timestamps else e
        if not running and not lines:
            return
        if not lines:
            await anyio.sleep(poll)


async def read_log(
    path: str, opts: LogsOptions, still_running: Callable[[], bool], poll: float = 0.1
) -> AsyncIterator[LogEntry]:
    """Entries of the single log file at ``path`` (exec output) per ``opts``; see `stream_entries`."""
    lines, offset = await anyio.to_thread.run_sync(_read_all, path)

    def more() -> list[bytes]:
        nonlocal offset
        new, offset = _read_from(path, offset)
        return new

    async for e in stream_entries(lines, more, opts, still_running, poll):
        yield e


def log_size(path: str) -> int:
    """Bytes in the log file, 0 when missing."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
