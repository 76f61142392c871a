"""EventBus: publish after commit, replay from a bounded history, fan out to live subscribers."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Protocol

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from dockerapi import filters as dfilters
from events_svc.model import Event, validate_filters

__all__ = ["EventBus", "EventsAPI", "matches"]

log = logging.getLogger(__name__)

HISTORY = 1024  # events kept for `since` (Docker keeps 256 by default)
SUBSCRIBER_BUFFER = 512


class EventsAPI(Protocol):
    """Publish and subscribe; implemented in-process by EventBus and over gRPC by EventsClient."""

    async def publish(self, event: Event) -> None:
        """Record event and hand it to subscribers; never blocks on a slow subscriber."""
        ...

    def subscribe(
        self, since_nano: int, until_nano: int, filters: dict[str, list[str]]
    ) -> AsyncIterator[Event]:
        """Recorded events at or after since_nano (0: none), then live ones until until_nano.

        Raises:
            errdefs.InvalidArgument: an unknown filter key.
        """
        ...


def _fuzzy(values: list[str], candidate: str) -> bool:
    return bool(candidate) and any(candidate == v or candidate.startswith(v) for v in values)


def _strip_tag(image: str) -> str:
    head, _, tail = image.rpartition(":")
    return head if head and "/" not in tail else image


def matches(ev: Event, filters: dict[str, list[str]]) -> bool:
    """Docker's event filter semantics (values of one key ORed, keys ANDed)."""
    for key, values in filters.items():
        if not values:
            continue
        if key == "type" and ev.type not in values:
            return False
        if key == "event" and ev.action not in values and ev.action.split(":", 1)[0] not in values:
            return False
        if key == "scope" and ev.scope not in values:
            return False
        if key == "label" and not any(dfilters.match_labels([v], ev.attributes) for v in values):
            return False
        if key in ("container", "network", "volume", "daemon", "node", "plugin", "config",
                   "secret", "service"):
            if ev.type != key:
                return False
            if not (_fuzzy(values, ev.actor_id) or ev.attributes.get("name", "") in values):
                return False
        if key == "image":
            # moby matchImage: the filter value against the id, the name, and both untagged.
            name = ev.attributes.get("name" if ev.type == "image" else "image", "")
            candidates = {ev.actor_id, name, _strip_tag(ev.actor_id), _strip_tag(name)}
            if not any(v in candidates for v in values):
                return False
    return True


class EventBus:
    """In-process events: a ring buffer for replay plus one memory stream per subscriber."""

    def __init__(self, node_id: str) -> None:
        self._node_id = node_id
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._subscribers: set[MemoryObjectSendStream[Event]] = set()

    async def publish(self, event: Event) -> None:
        ev = event
        if not ev.time_nano or not ev.node_id:
            ev = replace(ev, time_nano=ev.time_nano or time.time_ns(),
                         node_id=ev.node_id or self._node_id)
        self._history.append(ev)
        for send in list(self._subscribers):
            try:
                send.send_nowait(ev)
            except anyio.WouldBlock:
                log.warning("events subscriber is too slow; dropping %s %s", ev.type, ev.action)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(send)

    async def subscribe(
        self, since_nano: int, until_nano: int, filters: dict[str, list[str]]
    ) -> AsyncIterator[Event]:
        validate_filters(filters)
        send, receive = anyio.create_memory_object_stream[Event](SUBSCRIBER_BUFFER)
        # Register before replaying, so nothing published meanwhile is lost.
        self._subscribers.add(send)
        replayed = [e for e in self._history if since_nano and e.time_nano >= since_nano]
        last = replayed[-1].time_nano if replayed else 0
        try:
            for ev in replayed:
                if until_nano and ev.time_nano > until_nano:
                    return
                if matches(ev, filters):
                    yield ev
            if until_nano and until_nano <= time.time_ns():
                return
            async with receive:
                while True:
                    timeout = (until_nano - time.time_ns()) / 1e9 if until_nano else None
                    if timeout is not None and timeout <= 0:
                        return
                    got: Event | None = None
                    # Never yield inside the cancel scope: the consumer would run in it.
                    with anyio.move_on_after(timeout):
                        got = await receive.receive()
                    if got is None:
                        return
                    if got.time_nano <= last and got in replayed:
                        continue
                    if matches(got, filters):
                        yield got
        finally:
            self._subscribers.discard(send)
            send.close()
