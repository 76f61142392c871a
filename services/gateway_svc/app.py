"""Assembles the gateway: the route table over the service APIs."""

from __future__ import annotations

from pathlib import Path

from gateway_svc.backend import Backends
from gateway_svc.router import Router
from gateway_svc.routes.build import BuildRoutes
from gateway_svc.routes.containers import ContainerRoutes
from gateway_svc.routes.containers_fs import ContainerFSRoutes
from gateway_svc.routes.containers_runtime import ContainerRuntimeRoutes
from gateway_svc.routes.events import EventRoutes
from gateway_svc.routes.exec import ExecRoutes
from gateway_svc.routes.images import ImageRoutes
from gateway_svc.routes.networks import NetworkRoutes
from gateway_svc.routes.registry import RegistryRoutes
from gateway_svc.routes.swarm import SwarmRoutes
from gateway_svc.routes.system import SystemRoutes
from gateway_svc.routes.system_df import SystemDfRoutes
from gateway_svc.routes.volumes import VolumeRoutes

__all__ = ["Backends", "build_app"]


def build_app(backends: Backends, data_root: Path, version: str) -> Router:
    """Return the router serving every Docker API route berth provides."""
    router = Router(server_version=version)
    SystemRoutes(backends).register(router)
    RegistryRoutes(backends).register(router)  # before /images/{name}: its push route
    ImageRoutes(backends, data_root).register(router)
    BuildRoutes(backends).register(router)
    EventRoutes(backends).register(router)
    SwarmRoutes().register(router)
    if backends.containers is not None:
        ContainerRoutes(backends).register(router)
        ContainerFSRoutes(backends).register(router)
        ContainerRuntimeRoutes(backends).register(router)
        ExecRoutes(backends).register(router)
    if getattr(backends, "networks", None) is not None:
        NetworkRoutes(backends).register(router)
    # getattr: some tests pass a namespace that predates the volumes backend.
    if getattr(backends, "volumes", None) is not None:
        VolumeRoutes(backends).register(router)
        if backends.containers is not None:
            SystemDfRoutes(backends).register(router)
    return router
