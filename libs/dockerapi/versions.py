"""Docker Engine API version range and comparison helpers (moby ``api/types/versions``)."""

from __future__ import annotations

import functools

import errdefs

__all__ = ["MAX_API", "MIN_API", "at_least", "compare", "in_range", "parse_version"]

#: Oldest API version the gateway accepts (moby's hard floor).
MIN_API = "1.24"
#: Newest API version the gateway speaks; what ``Api-Version`` advertises (CLI 28.2.2).
MAX_API = "1.50"


@functools.lru_cache(maxsize=256)  # a handful of distinct versions, asked per field of every ps row
def parse_version(version: str) -> tuple[int, ...]:
    """Split ``"1.41"`` into ``(1, 41)``.

    Empty components count as 0, as in moby's comparison (``"1."`` == ``"1.0"``).

    Raises:
        errdefs.InvalidArgument: a component is not a decimal number.
    """
    parts: list[int] = []
    for part in version.split("."):
        if part == "":
            parts.append(0)
        elif part.isascii() and part.isdigit():
            parts.append(int(part))
        else:
            raise errdefs.InvalidArgument(f"invalid API version: {version!r}")
    return tuple(parts)


def compare(a: str, b: str) -> int:
    """Return -1, 0 or 1 as ``a`` is older than, equal to or newer than ``b``.

    Missing trailing components count as 0, so ``"1.4"`` == ``"1.4.0"``.
    """
    pa, pb = parse_version(a), parse_version(b)
    width = max(len(pa), len(pb))
    pa += (0,) * (width - len(pa))
    pb += (0,) * (width - len(pb))
    return (pa > pb) - (pa < pb)


def at_least(version: str, minimum: str) -> bool:
    """Return True when ``version`` >= ``minimum`` (gate for version quirks)."""
    return compare(version, minimum) >= 0


def in_range(version: str) -> bool:
    """Return True when ``MIN_API <= version <= MAX_API``."""
    return compare(version, MIN_API) >= 0 and compare(version, MAX_API) <= 0
