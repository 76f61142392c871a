"""The networks service's contract (NetworksAPI) and the hook the embedded DNS server plugs into."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from networks_svc.model import (
    AttachRequest,
    AttachResult,
    EndpointConfig,
    Network,
    NetworkCreate,
)

__all__ = ["ChangeListener", "DnsHook", "NetworksAPI"]

# Called with (container id, current result or None when detached) after connect/disconnect.
ChangeListener = Callable[[str, AttachResult | None], Awaitable[None]]


class DnsHook(Protocol):
    """The embedded DNS server (networks_svc.dns.EmbeddedDns), set as ``NetworksService.dns``.

    ``add_sandbox`` is awaited when a container with an endpoint on a user-defined network is
    attached (the server then listens on 127.0.0.11:53 inside ``netns_path``), and again after
    connect; ``remove_sandbox`` when it is detached. ``key`` and ``scope`` are the container id;
    the server asks the records (NetworksService.lookup/reverse) by that scope, live, so names
    appear and disappear as containers start and stop. ``forward`` is False when every network
    of the sandbox is --internal (no upstream to ask).
    """

    async def add_sandbox(self, key: str, netns_path: str, scope: str, *, forward: bool = True) -> None: ...

    async def remove_sandbox(self, key: str) -> None: ...


class NetworksAPI(Protocol):
    """Everything callers can ask of the networks service.

    Errors are errdefs classes with moby's wording: NotFound ("network <ref> not found"),
    AlreadyExists ("network with name <n> already exists"), PermissionDenied (pre-defined
    networks, active endpoints, overlapping pools, connecting twice), InvalidArgument (bad
    drivers, subnets, addresses, filters), Internal ("... port is already allocated").
    """

    async def create_network(self, req: NetworkCreate) -> tuple[str, str]:
        """docker network create; returns (id, warning)."""
        ...

    async def get_network(self, ref: str, scope: str = "") -> Network:
        """docker network inspect by full id, name or unique id prefix (containers filled in)."""
        ...

    async def list_networks(self, filters: dict[str, list[str]]) -> list[Network]:
        """docker network ls with Docker's filters (dangling, driver, id, label, name, scope, type)."""
        ...

    async def remove_network(self, ref: str) -> None:
        """docker network rm."""
        ...

    async def prune_networks(self, filters: dict[str, list[str]]) -> list[str]:
        """Remove unused user-defined networks (filters until, label, label!); their names."""
        ...

    async def connect_network(
        self, network: str, container_id: str, container_name: str, config: EndpointConfig
    ) -> None:
        """docker network connect: recorded, and plugged in at once when the container runs."""
        ...

    async def disconnect_network(self, network: str, container_id: str, force: bool = False) -> None:
        """docker network disconnect."""
        ...

    async def reserve_endpoints(self, req: AttachRequest) -> None:
        """At container create: validate the network mode and record the container's networks.

        Raises:
            errdefs.NotFound: "network <name> not found".
            errdefs.InvalidArgument: --ip on a network without a user-configured subnet, etc.
        """
        ...

    async def attach_endpoints(self, req: AttachRequest) -> AttachResult:
        """At container start: netns, veths, addresses, routes, ports, DNS. Idempotent."""
        ...

    async def detach_endpoints(self, container_id: str, remove: bool = False) -> None:
        """At exit/stop: undo attach; ``remove`` (container rm) also forgets the records."""
        ...

    async def sandbox(self, container_id: str) -> AttachResult | None:
        """The current attachment of a container (None when not attached)."""
        ...
