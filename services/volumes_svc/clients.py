"""VolumesClient: VolumesAPI over gRPC, for processes that do not host the volumes service."""

from __future__ import annotations

import grpc

from berthapi.volumes.v1 import volumes_pb2 as pb
from berthapi.volumes.v1 import volumes_pb2_grpc as pbg
from grpckit.client import stub
from grpckit.errors import translate_errors
from volumes_svc import convert
from volumes_svc.model import AcquireResult, PruneReport, Volume

__all__ = ["VolumesClient"]


class VolumesClient:
    """Implements VolumesAPI by calling the Volumes gRPC service; errors come back as errdefs."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = stub(pbg.VolumesStub, channel)

    @translate_errors
    async def create_volume(
        self, name: str, driver: str, driver_opts: dict[str, str], labels: dict[str, str]
    ) -> Volume:
        req = pb.CreateVolumeRequest(name=name, driver=driver, driver_opts=driver_opts,
                                     labels=labels)
        resp = await self._stub.CreateVolume(req)
        return convert.volume_from_proto(resp.volume)

    @translate_errors
    async def get_volume(self, name: str) -> Volume:
        resp = await self._stub.GetVolume(pb.GetVolumeRequest(name=name))
        return convert.volume_from_proto(resp.volume)

    @translate_errors
    async def list_volumes(
        self, filters: dict[str, list[str]], usage: bool = False
    ) -> list[Volume]:
        req = pb.ListVolumesRequest(filters=convert.filters_to_proto(filters), usage=usage)
        resp = await self._stub.ListVolumes(req)
        return [convert.volume_from_proto(m) for m in resp.volumes]

    @translate_errors
    async def remove_volume(self, name: str, force: bool = False) -> None:
        await self._stub.DeleteVolume(pb.DeleteVolumeRequest(name=name, force=force))

    @translate_errors
    async def prune_volumes(self, filters: dict[str, list[str]]) -> PruneReport:
        req = pb.PruneVolumesRequest(filters=convert.filters_to_proto(filters))
        return convert.prune_from_proto(await self._stub.PruneVolumes(req))

    @translate_errors
    async def acquire_volume(
        self,
        name: str,
        container_id: str,
        *,
        driver: str = "",
        driver_opts: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        copy_up_source: str = "",
        copy_up_path: str = "",
    ) -> AcquireResult:
        req = pb.AcquireVolumeRequest(
            name=name, container_id=container_id, driver=driver, driver_opts=driver_opts or {},
            labels=labels or {}, copy_up_source=copy_up_source, copy_up_path=copy_up_path,
        )
        return convert.acquire_from_proto(await self._stub.AcquireVolume(req))

    @translate_errors
    async def release_volume(self, name: str, container_id: str, remove: bool = False) -> bool:
        req = pb.ReleaseVolumeRequest(name=name, container_id=container_id, remove=remove)
        resp = await self._stub.ReleaseVolume(req)
        return bool(resp.removed)
