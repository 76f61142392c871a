"""The networks service's record store: NetworkStore protocol and its SQL implementation.

The service keeps every record of its node in memory and writes each change through here;
rows are JSON documents of the model dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import errdefs
from networks_svc.model import (
    AttachRequest,
    EndpointConfig,
    EndpointRecord,
    IPAMConfig,
    IPAMPool,
    Network,
    NetworkAttachment,
    PortBinding,
    PortMapping,
    SandboxRecord,
)
from statestore import StateStore
from statestore.models import Endpoint as EndpointRow
from statestore.models import Network as NetworkRow
from statestore.models import ObjectId
from statestore.models import Sandbox as SandboxRow

__all__ = ["NetworkStore", "SqlNetworkStore", "request_from_json", "request_to_json"]


class NetworkStore(Protocol):
    """Networks, endpoints and sandboxes of one node; every call is one transaction."""

    async def list_networks(self) -> list[Network]:
        """Every network record of the node (the built-in ones included once created)."""
        ...

    async def insert_network(self, net: Network) -> None:
        """Record a new network.

        Raises:
            errdefs.AlreadyExists: the name or id is taken.
        """
        ...

    async def delete_network(self, network_id: str) -> None:
        """Delete the network and every endpoint row of it."""
        ...

    async def list_endpoints(self) -> list[EndpointRecord]:
        """Every endpoint row of the node."""
        ...

    async def put_endpoint(self, ep: EndpointRecord) -> None:
        """Insert or replace the (network, container) row."""
        ...

    async def delete_endpoint(self, network_id: str, container_id: str) -> None:
        """Delete the (network, container) row if it exists."""
        ...

    async def list_sandboxes(self) -> list[SandboxRecord]:
        """Every sandbox row of the node."""
        ...

    async def put_sandbox(self, sb: SandboxRecord, endpoints: Sequence[EndpointRecord] = ()) -> None:
        """Insert or replace the container's sandbox row and ``endpoints``, in one transaction."""
        ...

    async def delete_container(self, container_id: str) -> None:
        """Forget the container: its sandbox and every endpoint row."""
        ...


def _network_doc(n: Network) -> dict[str, Any]:
    d = dataclasses.asdict(n)
    d.pop("containers", None)
    return d


def _network_from(row: NetworkRow) -> Network:
    d = json.loads(row.config_json)
    ipam = d.pop("ipam", {}) or {}
    d.pop("containers", None)
    return Network(**{**d, "ipam": IPAMConfig(
        driver=ipam.get("driver", "default"), options=ipam.get("options", {}),
        config=[IPAMPool(**p) for p in ipam.get("config", [])],
        options_given=bool(ipam.get("options_given")))})  # fmt: skip


def request_to_json(r: AttachRequest) -> str:
    return json.dumps(dataclasses.asdict(r), sort_keys=True)


def request_from_json(raw: str) -> AttachRequest:
    d = json.loads(raw)
    nets = [NetworkAttachment(n["network"], EndpointConfig(**n["config"])) for n in d.pop("networks", [])]
    binds = {k: [PortBinding(**b) for b in v] for k, v in d.pop("port_bindings", {}).items()}
    return AttachRequest(**d, networks=nets, port_bindings=binds)


class SqlNetworkStore:
    """NetworkStore over ``net_networks``, ``net_endpoints`` and ``net_sandboxes`` of one node."""

    def __init__(self, state: StateStore, node_id: str) -> None:
        self._state = state
        self._node = node_id

    async def list_networks(self) -> list[Network]:
        async with self._state.session(readonly=True) as s:
            rows = await s.scalars(select(NetworkRow).where(NetworkRow.node_id == self._node))
            return [_network_from(r) for r in rows]

    async def insert_network(self, net: Network) -> None:
        try:
            async with self._state.session() as s:
                if await s.get(ObjectId, (self._node, net.id)) is not None:
                    raise errdefs.AlreadyExists(f"network id {net.id} already exists")
                s.add(ObjectId(node_id=self._node, id=net.id, kind="network"))
                s.add(NetworkRow(node_id=self._node, id=net.id, name=net.name, driver=net.driver,
                                 config_json=json.dumps(_network_doc(net), sort_keys=True),
                                 created=net.created))  # fmt: skip
        except IntegrityError:
            raise errdefs.AlreadyExists(f"network with name {net.name} already exists") from None

    async def delete_network(self, network_id: str) -> None:
        async with self._state.session() as s:
            await s.execute(delete(EndpointRow).where(EndpointRow.node_id == self._node,
                                                      EndpointRow.network_id == network_id))  # fmt: skip
            await s.execute(delete(NetworkRow).where(NetworkRow.node_id == self._node,
                                                     NetworkRow.id == network_id))  # fmt: skip
            await s.execute(delete(ObjectId).where(ObjectId.node_id == self._node,
                                                   ObjectId.id == network_id))  # fmt: skip

    async def list_endpoints(self) -> list[EndpointRecord]:
        async with self._state.session(readonly=True) as s:
            rows = await s.scalars(select(EndpointRow).where(EndpointRow.node_id == self._node))
            out = []
            for r in rows:
                st = json.loads(r.state_json)
                out.append(EndpointRecord(
                    network_id=r.network_id, container_id=r.container_id, container_name=r.container_name,
                    endpoint_id=r.endpoint_id, config=EndpointConfig(**json.loads(r.config_json)),
                    ip_address=st.get("ip_address", ""), mac_address=st.get("mac_address", ""),
                    veth=st.get("veth", ""), ipv6_address=st.get("ipv6_address", "")))  # fmt: skip
            return out

    async def put_endpoint(self, ep: EndpointRecord) -> None:
        async with self._state.session() as s:
            await self._put_endpoint(s, ep)

    async def _put_endpoint(self, s: AsyncSession, ep: EndpointRecord) -> None:
        state = json.dumps({"ip_address": ep.ip_address, "mac_address": ep.mac_address, "veth": ep.veth,
                            "ipv6_address": ep.ipv6_address})  # fmt: skip
        row = await s.get(EndpointRow, (self._node, ep.network_id, ep.container_id))
        if row is None:
            row = EndpointRow(node_id=self._node, network_id=ep.network_id, container_id=ep.container_id)
            s.add(row)
        row.container_name = ep.container_name
        row.endpoint_id = ep.endpoint_id
        row.config_json = json.dumps(dataclasses.asdict(ep.config), sort_keys=True)
        row.state_json = state

    async def delete_endpoint(self, network_id: str, container_id: str) -> None:
        async with self._state.session() as s:
            await s.execute(delete(EndpointRow).where(
                EndpointRow.node_id == self._node, EndpointRow.network_id == network_id,
                EndpointRow.container_id == container_id))  # fmt: skip

    async def list_sandboxes(self) -> list[SandboxRecord]:
        async with self._state.session(readonly=True) as s:
            rows = await s.scalars(select(SandboxRow).where(SandboxRow.node_id == self._node))
            out = []
            for r in rows:
                st = json.loads(r.state_json)
                out.append(SandboxRecord(
                    container_id=r.container_id, request=request_from_json(r.request_json),
                    netns_path=st.get("netns_path", ""), attached=bool(st.get("attached")),
                    ports=[PortMapping(**p) for p in st.get("ports", [])]))  # fmt: skip
            return out

    async def put_sandbox(self, sb: SandboxRecord, endpoints: Sequence[EndpointRecord] = ()) -> None:
        state = json.dumps({"netns_path": sb.netns_path, "attached": sb.attached,
                            "ports": [dataclasses.asdict(p) for p in sb.ports]})  # fmt: skip
        async with self._state.session() as s:
            row = await s.get(SandboxRow, (self._node, sb.container_id))
            if row is None:
                row = SandboxRow(node_id=self._node, container_id=sb.container_id)
                s.add(row)
            row.request_json = request_to_json(sb.request)
            row.state_json = state
            for ep in endpoints:
                await self._put_endpoint(s, ep)

    async def delete_container(self, container_id: str) -> None:
        async with self._state.session() as s:
            await s.execute(delete(EndpointRow).where(EndpointRow.node_id == self._node,
                                                      EndpointRow.container_id == container_id))  # fmt: skip
            await s.execute(delete(SandboxRow).where(SandboxRow.node_id == self._node,
                                                     SandboxRow.container_id == container_id))  # fmt: skip
