"""Docker's ``filters`` query parameter: parsing, validation and the common matchers.

The Go CLI sends sets (``{"label":{"a=b":true}}``), docker-py and pre-1.22 clients send
lists (``{"label":["a=b"]}``); both become ``dict[str, list[str]]`` with values in
the order received and duplicates removed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone

import errdefs

__all__ = [
    "Filters",
    "get_bool",
    "match_labels",
    "parse",
    "parse_duration",
    "parse_timestamp",
    "parse_timestamp_ns",
    "validate",
]

Filters = dict[str, list[str]]

_FALSE = frozenset({"0", "false"})
_TRUE = frozenset({"1", "true"})


def _invalid(name: str = "", values: Iterable[str] | None = None) -> errdefs.InvalidArgument:
    # moby filters.invalidFilter wording: "invalid filter", "invalid filter 'x'",
    # "invalid filter 'x=a,b'".
    if not name:
        return errdefs.InvalidArgument("invalid filter")
    if values is None:
        return errdefs.InvalidArgument(f"invalid filter '{name}'")
    return errdefs.InvalidArgument(f"invalid filter '{name}={','.join(values)}'")


def parse(raw: str | None) -> Filters:
    """Decode the ``filters`` query value; ``None`` or ``""`` gives ``{}``.

    Raises:
        errdefs.InvalidArgument: not JSON, or not an object of sets/lists of strings.
    """
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise _invalid() from None
    if not isinstance(doc, dict):
        raise _invalid()
    out: Filters = {}
    for key, value in doc.items():
        values: list[str] = []
        if isinstance(value, dict):
            for item, enabled in value.items():
                if not isinstance(enabled, bool):
                    raise _invalid()
                if enabled:
                    values.append(item)
        elif isinstance(value, list):
            for item in value:
                if not isinstance(item, str):
                    raise _invalid()
                if item not in values:
                    values.append(item)
        elif value is None:
            pass
        else:
            raise _invalid()
        out[key] = values
    return out


def validate(filters: Mapping[str, object], allowed: Iterable[str]) -> None:
    """Reject any filter name not in ``allowed``.

    Raises:
        errdefs.InvalidArgument: ``invalid filter '<name>'`` (first offender, sorted).
    """
    allowed_set = set(allowed)
    for name in sorted(filters):
        if name not in allowed_set:
            raise _invalid(name)


def get_bool(
    filters: Mapping[str, list[str]], name: str, default: bool | None = None
) -> bool | None:
    """Read a boolean filter such as ``dangling=true``; ``default`` when absent.

    Accepts ``1/true/0/false`` (moby ``GetBoolOrDefault``).

    Raises:
        errdefs.InvalidArgument: no value, an unknown value, or both true and false.
    """
    if name not in filters:
        return default
    values = filters[name]
    lowered = {v.lower() for v in values}
    is_true = bool(lowered & _TRUE)
    is_false = bool(lowered & _FALSE)
    if not values or is_true == is_false or lowered - _TRUE - _FALSE:
        raise _invalid(name, sorted(values))
    return is_true


def match_labels(wanted: Iterable[str], labels: Mapping[str, str] | None) -> bool:
    """True when every ``k`` / ``k=v`` in ``wanted`` is present in ``labels``.

    An empty ``wanted`` matches everything (moby ``MatchKVList``).
    """
    items = list(wanted)
    if not items:
        return True
    have = labels or {}
    for item in items:
        key, sep, value = item.partition("=")
        if key not in have:
            return False
        if sep and have[key] != value:
            return False
    return True


_DURATION_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS_NS = {
    "ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
}


def parse_duration(value: str) -> int:
    """Parse a Go duration (``10m``, ``1h30m``, ``1.5s``, ``-2h``) into nanoseconds.

    Raises:
        errdefs.InvalidArgument: not a Go duration.
    """
    text = value
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise errdefs.InvalidArgument(f"time: invalid duration {value!r}")
    total = 0
    pos = 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None or m.group(1) in ("", "."):
            raise errdefs.InvalidArgument(f"time: invalid duration {value!r}")
        whole, _, frac = m.group(1).partition(".")
        unit = _DURATION_UNITS_NS[m.group(2)]
        total += int(whole or "0") * unit
        if frac:
            total += int(frac) * unit // 10 ** len(frac)
        pos = m.end()
    return sign * total


_UNIX_TS = re.compile(r"^(-?\d+)(?:\.(\d+))?$")


def parse_timestamp_ns(value: str, now: float | None = None) -> int:
    """Parse Docker's ``since``/``until`` forms into unix nanoseconds.

    Accepted (moby ``timetypes.GetTimestamp``): a Go duration relative to ``now``
    (``10m`` means ten minutes ago), RFC 3339 dates/times with or without zone
    (no zone means the server's local time), and unix ``seconds[.fraction]``.

    Raises:
        errdefs.InvalidArgument: none of the forms parse.
    """
    now_ns = time.time_ns() if now is None else int(now * 1_000_000_000)
    if value != "0":
        try:
            return now_ns - parse_duration(value)
        except errdefs.InvalidArgument:
            pass
    if "-" in value.lstrip("-"):
        return _parse_rfc3339_ns(value)
    m = _UNIX_TS.match(value)
    if m is None:
        raise errdefs.InvalidArgument(f"failed to parse value as time or duration: {value!r}")
    seconds = int(m.group(1))
    frac = m.group(2) or ""
    # Go scales the fraction to nanoseconds by its digit count.
    nanos = int(frac[:9].ljust(9, "0")) if frac else 0
    return seconds * 1_000_000_000 + (nanos if seconds >= 0 else -nanos)


def parse_timestamp(value: str, now: float | None = None) -> float:
    """Like :func:`parse_timestamp_ns`, in (float) unix seconds."""
    return parse_timestamp_ns(value, now) / 1_000_000_000


_RFC3339ISH = re.compile(
    r"^(\d{4}-\d{2}-\d{2})"
    r"(?:[Tt](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?"
    r"([Zz]|[+-]\d{2}:\d{2})?$"
)


def _parse_rfc3339_ns(value: str) -> int:
    m = _RFC3339ISH.match(value)
    if m is None:
        raise errdefs.InvalidArgument(f"failed to parse value as time or duration: {value!r}")
    date, hh, mm, ss, frac, zone = m.groups()
    try:
        base = datetime.fromisoformat(date).replace(
            hour=int(hh or 0), minute=int(mm or 0), second=int(ss or 0)
        )
        if zone is None:
            base = base.astimezone()  # naive: the server's local zone, as moby does
        elif zone in ("Z", "z"):
            base = base.replace(tzinfo=UTC)
        else:
            sign = -1 if zone[0] == "-" else 1
            offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
            base = base.replace(tzinfo=timezone(sign * offset))
    except ValueError:
        raise errdefs.InvalidArgument(
            f"failed to parse value as time or duration: {value!r}"
        ) from None
    nanos = int((frac or "0")[:9].ljust(9, "0"))
    return int(base.timestamp()) * 1_000_000_000 + nanos
