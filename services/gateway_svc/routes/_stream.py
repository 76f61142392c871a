"""Encoding of progress events as Docker's jsonmessage stream, with errors sent in-band."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from images_svc.api import ProgressEvent

__all__ = ["json_message", "progress_stream"]


def json_message(ev: ProgressEvent) -> bytes:
    """One jsonmessage line for ev."""
    msg: dict[str, Any] = {}
    if ev.stream:
        msg["stream"] = ev.stream
    if ev.status:
        msg["status"] = ev.status
    if ev.id:
        msg["id"] = ev.id
    if ev.total or ev.current:
        msg["progressDetail"] = {"current": ev.current, "total": ev.total}
    if ev.aux_json:
        msg["aux"] = json.loads(ev.aux_json)
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


async def progress_stream(events: AsyncIterator[ProgressEvent]) -> AsyncIterator[bytes]:
    """Encode events as jsonmessage lines.

    The headers go out at once (an empty first chunk), so every later failure is reported
    in-band as an error line, which is what the CLI and docker-py expect of load/import.
    """
    yield b""
    async for ev in events:
        yield json_message(ev)
