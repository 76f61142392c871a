"""The Event record, in Docker's terms (Type, Action, Actor)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dockerapi import filters as dfilters

__all__ = ["FILTER_KEYS", "Event", "validate_filters"]

# Docker's /events filter keys.
FILTER_KEYS = {"config", "container", "daemon", "event", "image", "label", "network", "node",
               "plugin", "scope", "secret", "service", "type", "volume"}


def validate_filters(filters: dict[str, list[str]]) -> None:
    """Raise errdefs.InvalidArgument ("invalid filter 'x'") for keys Docker does not know."""
    dfilters.validate(filters, FILTER_KEYS)


@dataclass(frozen=True, slots=True)
class Event:
    """One event; time_nano and node_id are filled in by the bus when left empty."""

    type: str  # "container", "image", "network", "volume", "daemon"
    action: str  # "create", "die", "exec_start: sh", ...
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    scope: str = "local"
    time_nano: int = 0
    node_id: str = ""

    @property
    def topic(self) -> str:
        """Routing key, e.g. "/containers/create"."""
        return f"/{self.type}s/{self.action.split(':', 1)[0]}"
