"""Plain records the volumes service keeps; transport-free and shared by store, service and convert."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ANONYMOUS_LABEL", "DEFAULT_DRIVER", "AcquireResult", "PruneReport", "Volume"]

DEFAULT_DRIVER = "local"
# moby's AnonymousLabel: set on volumes created without a name; prune (1.42+) removes only those.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


@dataclass(frozen=True, slots=True)
class Volume:
    """One volume as the store keeps it and callers see it.

    ``size`` and ``ref_count`` are -1 unless usage was asked for (system df -v).
    """

    name: str
    driver: str
    mountpoint: str  # <data-root>/volumes/<name>/_data
    created: str  # RFC 3339
    node_id: str
    options: dict[str, str] = field(default_factory=dict)  # type, device, o
    labels: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False
    size: int = -1
    ref_count: int = -1


@dataclass(frozen=True, slots=True)
class AcquireResult:
    """What acquire_volume hands the containers service."""

    volume: Volume
    mountpoint: str  # host path to bind into the container
    created: bool  # the volume was created by this call


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What a prune removed."""

    deleted: list[str]
    space_reclaimed: int
