"""SystemClient: SystemAPI over gRPC."""

from __future__ import annotations

import grpc

from berthapi.system.v1 import system_pb2 as pb
from berthapi.system.v1 import system_pb2_grpc as pbg
from grpckit.client import stub
from grpckit.errors import translate_errors
from system_svc import convert
from system_svc.service import InfoReport, VersionReport

__all__ = ["SystemClient"]


class SystemClient:
    """Implements SystemAPI by calling the System gRPC service."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = stub(pbg.SystemStub, channel)

    @translate_errors
    async def ping(self) -> str:
        return str((await self._stub.Ping(pb.PingRequest())).node_id)

    @translate_errors
    async def version(self) -> VersionReport:
        return convert.version_from_proto(await self._stub.Version(pb.VersionRequest()))

    @translate_errors
    async def info(self) -> InfoReport:
        return convert.info_from_proto(await self._stub.Info(pb.InfoRequest()))
