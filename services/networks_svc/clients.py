"""NetworksClient: NetworksAPI over gRPC, for processes that do not host the networks service."""

from __future__ import annotations

import grpc

from berthapi.networks.v1 import networks_pb2 as pb
from berthapi.networks.v1 import networks_pb2_grpc as pbg
from grpckit.client import stub
from grpckit.errors import translate_errors
from networks_svc import convert
from networks_svc.model import AttachRequest, AttachResult, EndpointConfig, Network, NetworkCreate

__all__ = ["NetworksClient"]


class NetworksClient:
    """Implements NetworksAPI by calling the Networks gRPC service; errors come back as errdefs."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = stub(pbg.NetworksStub, channel)

    @translate_errors
    async def create_network(self, req: NetworkCreate) -> tuple[str, str]:
        resp = await self._stub.CreateNetwork(convert.create_to_proto(req))
        return str(resp.id), str(resp.warning)

    @translate_errors
    async def get_network(self, ref: str, scope: str = "") -> Network:
        resp = await self._stub.GetNetwork(pb.GetNetworkRequest(ref=ref, scope=scope))
        return convert.network_from_proto(resp.network)

    @translate_errors
    async def list_networks(self, filters: dict[str, list[str]]) -> list[Network]:
        resp = await self._stub.ListNetworks(
            pb.ListNetworksRequest(filters=convert.filters_to_proto(filters))
        )
        return [convert.network_from_proto(n) for n in resp.networks]

    @translate_errors
    async def remove_network(self, ref: str) -> None:
        await self._stub.DeleteNetwork(pb.DeleteNetworkRequest(ref=ref))

    @translate_errors
    async def prune_networks(self, filters: dict[str, list[str]]) -> list[str]:
        resp = await self._stub.PruneNetworks(
            pb.PruneNetworksRequest(filters=convert.filters_to_proto(filters))
        )
        return list(resp.deleted)

    @translate_errors
    async def connect_network(
        self, network: str, container_id: str, container_name: str, config: EndpointConfig
    ) -> None:
        await self._stub.ConnectNetwork(pb.ConnectNetworkRequest(
            network=network, container=container_id, container_name=container_name,
            endpoint_config=convert.endpoint_config_to_proto(config)))  # fmt: skip

    @translate_errors
    async def disconnect_network(self, network: str, container_id: str, force: bool = False) -> None:
        req = pb.DisconnectNetworkRequest(network=network, container=container_id, force=force)
        await self._stub.DisconnectNetwork(req)

    @translate_errors
    async def reserve_endpoints(self, req: AttachRequest) -> None:
        await self._stub.ReserveEndpoints(
            pb.ReserveEndpointsRequest(request=convert.attach_request_to_proto(req))
        )

    @translate_errors
    async def attach_endpoints(self, req: AttachRequest) -> AttachResult:
        resp = await self._stub.AttachEndpoints(convert.attach_request_to_proto(req))
        return convert.attach_result_from_proto(resp)

    @translate_errors
    async def detach_endpoints(self, container_id: str, remove: bool = False) -> None:
        await self._stub.DetachEndpoints(pb.DetachEndpointsRequest(container_id=container_id, remove=remove))

    @translate_errors
    async def sandbox(self, container_id: str) -> AttachResult | None:
        resp = await self._stub.GetSandbox(pb.GetSandboxRequest(container_id=container_id))
        return convert.attach_result_from_proto(resp.sandbox) if resp.attached else None
