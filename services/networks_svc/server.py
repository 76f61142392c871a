"""NetworksServicer: the gRPC shim over NetworksAPI; it only translates (errors map in grpckit)."""

from __future__ import annotations

import importlib
from typing import Any

from berthapi.networks.v1 import networks_pb2 as pb
from berthapi.networks.v1 import networks_pb2_grpc as pbg
from networks_svc import convert
from networks_svc.api import NetworksAPI

__all__ = ["NetworksServicer", "add_to_server"]

add_to_server = pbg.add_NetworksServicer_to_server
# google.protobuf ships no type stubs here; Empty is only constructed.
_Empty: Any = importlib.import_module("google.protobuf.empty_pb2").Empty


class NetworksServicer(pbg.NetworksServicer):
    """Serves the Networks gRPC service from a NetworksAPI implementation."""

    def __init__(self, api: NetworksAPI) -> None:
        self._api = api

    async def CreateNetwork(self, req: pb.CreateNetworkRequest, ctx: Any) -> pb.CreateNetworkResponse:
        nid, warning = await self._api.create_network(convert.create_from_proto(req))
        return pb.CreateNetworkResponse(id=nid, warning=warning)

    async def GetNetwork(self, req: pb.GetNetworkRequest, ctx: Any) -> pb.GetNetworkResponse:
        net = await self._api.get_network(req.ref, req.scope)
        return pb.GetNetworkResponse(network=convert.network_to_proto(net))

    async def ListNetworks(self, req: pb.ListNetworksRequest, ctx: Any) -> pb.ListNetworksResponse:
        nets = await self._api.list_networks(convert.filters_from_proto(req.filters))
        return pb.ListNetworksResponse(networks=[convert.network_to_proto(n) for n in nets])

    async def DeleteNetwork(self, req: pb.DeleteNetworkRequest, ctx: Any) -> Any:
        await self._api.remove_network(req.ref)
        return _Empty()

    async def ConnectNetwork(self, req: pb.ConnectNetworkRequest, ctx: Any) -> pb.ConnectNetworkResponse:
        await self._api.connect_network(
            req.network,
            req.container,
            req.container_name,
            convert.endpoint_config_from_proto(req.endpoint_config),
        )
        return pb.ConnectNetworkResponse()

    async def DisconnectNetwork(
        self, req: pb.DisconnectNetworkRequest, ctx: Any
    ) -> pb.DisconnectNetworkResponse:
        await self._api.disconnect_network(req.network, req.container, req.force)
        return pb.DisconnectNetworkResponse()

    async def PruneNetworks(self, req: pb.PruneNetworksRequest, ctx: Any) -> pb.PruneNetworksResponse:
        deleted = await self._api.prune_networks(convert.filters_from_proto(req.filters))
        return pb.PruneNetworksResponse(deleted=deleted)

    async def ReserveEndpoints(self, req: pb.ReserveEndpointsRequest, ctx: Any) -> Any:
        await self._api.reserve_endpoints(convert.attach_request_from_proto(req.request))
        return _Empty()

    async def AttachEndpoints(self, req: pb.AttachEndpointsRequest, ctx: Any) -> pb.AttachEndpointsResponse:
        res = await self._api.attach_endpoints(convert.attach_request_from_proto(req))
        return convert.attach_result_to_proto(res)

    async def DetachEndpoints(self, req: pb.DetachEndpointsRequest, ctx: Any) -> pb.DetachEndpointsResponse:
        await self._api.detach_endpoints(req.container_id, req.remove)
        return pb.DetachEndpointsResponse()

    async def GetSandbox(self, req: pb.GetSandboxRequest, ctx: Any) -> pb.GetSandboxResponse:
        res = await self._api.sandbox(req.container_id)
        if res is None:
            return pb.GetSandboxResponse(attached=False)
        return pb.GetSandboxResponse(attached=True, sandbox=convert.attach_result_to_proto(res))
