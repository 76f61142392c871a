"""The APIs the gateway's routes call; gRPC clients and the in-process services both implement them."""

from __future__ import annotations

from dataclasses import dataclass

from containers_svc.api import ContainersAPI
from events_svc.bus import EventsAPI
from images_svc.api import ImagesAPI
from networks_svc.api import NetworksAPI
from registry_svc.api import RegistryAPI
from system_svc.service import SystemAPI
from volumes_svc.api import VolumesAPI

__all__ = ["Backends"]


@dataclass(frozen=True, slots=True)
class Backends:
    """One API per service the REST routes reach."""

    system: SystemAPI
    images: ImagesAPI
    events: EventsAPI
    containers: ContainersAPI | None = None  # routes registered only when set
    volumes: VolumesAPI | None = None  # routes registered only when set
    networks: NetworksAPI | None = None  # routes registered only when set
    registry: RegistryAPI | None = None  # pull/push/login; 501 without it
