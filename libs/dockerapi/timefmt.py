"""Times as Docker's API writes and reads them: RFC 3339 with nanoseconds, unix seconds."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import errdefs
from dockerapi.filters import parse_timestamp

__all__ = ["now_rfc3339", "rfc3339_seconds"]


def now_rfc3339() -> str:
    """The current UTC time, e.g. ``2026-11-27T21:24:19.092912Z``."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@functools.lru_cache(maxsize=8192)  # record times do not change: ps asks for the same ones again
def rfc3339_seconds(value: str) -> float:
    """Unix seconds of an RFC 3339 time (any fraction length); 0.0 when empty or unparsable."""
    if not value:
        return 0.0
    try:
        return parse_timestamp(value)
    except errdefs.InvalidArgument:
        return 0.0
