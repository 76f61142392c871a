"""SystemServicer: the gRPC shim over SystemAPI."""

from __future__ import annotations

from typing import Any

from berthapi.system.v1 import system_pb2 as pb
from berthapi.system.v1 import system_pb2_grpc as pbg
from system_svc import convert
from system_svc.service import SystemAPI

__all__ = ["SystemServicer", "add_to_server"]

add_to_server = pbg.add_SystemServicer_to_server


class SystemServicer(pbg.SystemServicer):
    """Serves the System gRPC service."""

    def __init__(self, api: SystemAPI) -> None:
        self._api = api

    async def Ping(self, req: pb.PingRequest, ctx: Any) -> pb.PingResponse:
        return pb.PingResponse(node_id=await self._api.ping())

    async def Version(self, req: pb.VersionRequest, ctx: Any) -> pb.VersionResponse:
        return convert.version_to_proto(await self._api.version())

    async def Info(self, req: pb.InfoRequest, ctx: Any) -> pb.InfoResponse:
        return convert.info_to_proto(await self._api.info())
