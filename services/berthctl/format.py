"""Docker CLI style formatting: human durations, sizes, short ids, repo/tag splitting, tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import errdefs
from dockerapi.humanize import human_duration
from dockerapi.reference import parse_reference

__all__ = ["human_duration", "human_size", "parse_time", "render_table", "short_id", "split_ref"]

_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float) -> str:
    """Decimal size with 3 significant digits, as ``docker images`` prints it ("4.27MB")."""
    i = 0
    while size >= 1000 and i < len(_SIZE_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{_SIZE_UNITS[i]}"


def parse_time(rfc3339: str) -> datetime | None:
    """Parse an RFC 3339 timestamp (nanoseconds allowed); None when empty or malformed."""
    if not rfc3339:
        return None
    try:
        parsed = datetime.fromisoformat(rfc3339)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def short_id(image_id: str) -> str:
    """12 hex characters of an id, without the "sha256:" prefix."""
    return image_id.split(":", 1)[-1][:12]


def split_ref(ref: str) -> tuple[str, str]:
    """Split "repo:tag" or "repo@digest" into (familiar repo, tag-or-digest); the tag may be "".

    Normalised references ("docker.io/library/busybox:latest") show as Docker shows them.
    """
    try:
        parsed = parse_reference(ref)
    except errdefs.InvalidArgument:
        parsed = None
    if parsed is not None:
        return parsed.familiar_name(), parsed.digest or parsed.tag
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, ""


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to the widest cell plus three spaces, like the Docker CLI's tabwriter."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = []
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("   ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"
