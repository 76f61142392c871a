"""RegistryServicer: the gRPC shim over RegistryAPI; it only translates (errors map in grpckit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import errdefs
from berthapi.registry.v1 import registry_pb2 as pb
from berthapi.registry.v1 import registry_pb2_grpc as pbg
from berthapi.types.v1 import types_pb2 as tpb
from images_svc import convert as images_convert
from registry_svc import convert
from registry_svc.api import RegistryAPI

__all__ = ["RegistryServicer", "add_to_server"]

add_to_server = pbg.add_RegistryServicer_to_server


class RegistryServicer(pbg.RegistryServicer):
    """Serves the Registry gRPC service from a RegistryAPI implementation."""

    def __init__(self, api: RegistryAPI) -> None:
        self._api = api

    async def PullImage(self, req: pb.PullImageRequest, ctx: Any) -> AsyncIterator[tpb.Progress]:
        async for ev in self._api.pull_image(convert.pull_from_proto(req)):
            yield images_convert.progress_to_proto(ev)

    async def PushImage(self, req: pb.PushImageRequest, ctx: Any) -> AsyncIterator[tpb.Progress]:
        async for ev in self._api.push_image(convert.push_from_proto(req)):
            yield images_convert.progress_to_proto(ev)

    async def Login(self, req: pb.LoginRequest, ctx: Any) -> pb.LoginResponse:
        return convert.login_to_proto(await self._api.login(convert.auth_from_proto(req.auth)))

    async def InspectDistribution(
        self, req: pb.InspectDistributionRequest, ctx: Any
    ) -> pb.InspectDistributionResponse:
        info = await self._api.inspect_distribution(req.ref, convert.auth_from_proto(req.auth))
        return convert.distribution_to_proto(info)

    async def SearchImages(self, req: pb.SearchImagesRequest, ctx: Any) -> pb.SearchImagesResponse:
        raise errdefs.NotImplemented_("search is not supported by this registry service")
