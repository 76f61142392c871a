"""RegistryClient: RegistryAPI over gRPC, for processes that do not host the registry service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from berthapi.registry.v1 import registry_pb2 as pb
from berthapi.registry.v1 import registry_pb2_grpc as pbg
from grpckit.client import stub
from grpckit.errors import translate_errors
from images_svc import convert as images_convert
from images_svc.api import ProgressEvent
from registry_svc import convert
from registry_svc.api import AuthConfig, DistributionInfo, LoginResult, PullOptions, PushOptions

__all__ = ["RegistryClient"]


class RegistryClient:
    """Implements RegistryAPI by calling the Registry gRPC service; errors come back as errdefs."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = stub(pbg.RegistryStub, channel)

    @translate_errors
    async def pull_image(self, opts: PullOptions) -> AsyncIterator[ProgressEvent]:
        async for msg in self._stub.PullImage(convert.pull_to_proto(opts)):
            yield images_convert.progress_from_proto(msg)

    @translate_errors
    async def push_image(self, opts: PushOptions) -> AsyncIterator[ProgressEvent]:
        async for msg in self._stub.PushImage(convert.push_to_proto(opts)):
            yield images_convert.progress_from_proto(msg)

    @translate_errors
    async def login(self, auth: AuthConfig) -> LoginResult:
        resp = await self._stub.Login(pb.LoginRequest(auth=convert.auth_to_proto(auth)))
        return convert.login_from_proto(resp)

    @translate_errors
    async def inspect_distribution(self, ref: str, auth: AuthConfig) -> DistributionInfo:
        resp = await self._stub.InspectDistribution(
            pb.InspectDistributionRequest(ref=ref, auth=convert.auth_to_proto(auth)))
        return convert.distribution_from_proto(resp)
