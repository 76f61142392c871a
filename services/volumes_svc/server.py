"""VolumesServicer: the gRPC shim over VolumesAPI; it only translates (errors map in grpckit)."""

from __future__ import annotations

import importlib
from typing import Any

from berthapi.volumes.v1 import volumes_pb2 as pb
from berthapi.volumes.v1 import volumes_pb2_grpc as pbg
from volumes_svc import convert
from volumes_svc.api import VolumesAPI

__all__ = ["VolumesServicer", "add_to_server"]

add_to_server = pbg.add_VolumesServicer_to_server
# google.protobuf ships no type stubs here; Empty is only constructed.
_Empty: Any = importlib.import_module("google.protobuf.empty_pb2").Empty


class VolumesServicer(pbg.VolumesServicer):
    """Serves the Volumes gRPC service from a VolumesAPI implementation."""

    def __init__(self, api: VolumesAPI) -> None:
        self._api = api

    async def CreateVolume(self, req: pb.CreateVolumeRequest, ctx: Any) -> pb.CreateVolumeResponse:
        vol = await self._api.create_volume(req.name, req.driver, dict(req.driver_opts),
                                            dict(req.labels))
        return pb.CreateVolumeResponse(volume=convert.volume_to_proto(vol))

    async def GetVolume(self, req: pb.GetVolumeRequest, ctx: Any) -> pb.GetVolumeResponse:
        vol = await self._api.get_volume(req.name)
        return pb.GetVolumeResponse(volume=convert.volume_to_proto(vol))

    async def ListVolumes(self, req: pb.ListVolumesRequest, ctx: Any) -> pb.ListVolumesResponse:
        vols = await self._api.list_volumes(convert.filters_from_proto(req.filters), req.usage)
        return pb.ListVolumesResponse(volumes=[convert.volume_to_proto(v) for v in vols])

    async def DeleteVolume(self, req: pb.DeleteVolumeRequest, ctx: Any) -> Any:
        await self._api.remove_volume(req.name, req.force)
        return _Empty()

    async def PruneVolumes(self, req: pb.PruneVolumesRequest, ctx: Any) -> pb.PruneVolumesResponse:
        rep = await self._api.prune_volumes(convert.filters_from_proto(req.filters))
        return convert.prune_to_proto(rep)

    async def AcquireVolume(
        self, req: pb.AcquireVolumeRequest, ctx: Any
    ) -> pb.AcquireVolumeResponse:
        res = await self._api.acquire_volume(
            req.name, req.container_id, driver=req.driver, driver_opts=dict(req.driver_opts),
            labels=dict(req.labels), copy_up_source=req.copy_up_source,
            copy_up_path=req.copy_up_path,
        )
        return convert.acquire_to_proto(res)

    async def ReleaseVolume(
        self, req: pb.ReleaseVolumeRequest, ctx: Any
    ) -> pb.ReleaseVolumeResponse:
        removed = await self._api.release_volume(req.name, req.container_id, req.remove)
        return pb.ReleaseVolumeResponse(removed=removed)
