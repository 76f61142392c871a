"""Route for GET /events: Docker's event stream with since/until and filters."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from dockerapi import filters as dfilters
from events_svc.bus import EventsAPI
from events_svc.model import Event, validate_filters
from gateway_svc.backend import Backends
from gateway_svc.http import Request, Response, StreamResponse
from gateway_svc.router import Router

__all__ = ["EventRoutes", "event_json"]

_LEGACY_TYPES = ("container", "image")  # types that still carry status/id/from


def event_json(ev: Event) -> dict[str, Any]:
    """One event as the Engine API sends it (status/id/from kept for containers and images)."""
    out: dict[str, Any] = {}
    if ev.type in _LEGACY_TYPES:
        out["status"] = ev.action
        out["id"] = ev.actor_id
        if ev.type == "container" and "image" in ev.attributes:
            out["from"] = ev.attributes["image"]
    out.update({
        "Type": ev.type,
        "Action": ev.action,
        "Actor": {"ID": ev.actor_id, "Attributes": dict(ev.attributes)},
        "scope": ev.scope,
        "time": ev.time_nano // 1_000_000_000,
        "timeNano": ev.time_nano,
    })
    return out


class EventRoutes:
    """GET /events."""

    def __init__(self, backends: Backends) -> None:
        self._events: EventsAPI = backends.events

    def register(self, r: Router) -> None:
        r.add("GET", "/events", self.get_events)

    async def get_events(self, req: Request) -> Response:
        filters = dfilters.parse(req.query.get("filters"))
        validate_filters(filters)  # before the 200: a bad filter is an HTTP 400
        since = req.query.get("since")
        until = req.query.get("until")
        now = time.time()
        # 0 means "no since" to subscribe; since=0 (the epoch) replays everything, as in dockerd
        since_ns = max(1, dfilters.parse_timestamp_ns(since, now)) if since else 0
        until_ns = dfilters.parse_timestamp_ns(until, now) if until else 0
        events = self._events.subscribe(since_ns, until_ns, filters)

        async def body() -> AsyncIterator[bytes]:
            yield b""  # headers now: `docker events` waits for them before printing
            async for ev in events:
                yield json.dumps(event_json(ev), separators=(",", ":")).encode() + b"\n"

        return StreamResponse(body(), content_type="application/json")
