"""ImagesServicer: the gRPC shim over ImagesAPI; it only translates (errors map in grpckit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import errdefs
from berthapi.images.v1 import images_pb2 as pb
from berthapi.images.v1 import images_pb2_grpc as pbg
from berthapi.types.v1 import types_pb2 as tpb
from images_svc import convert
from images_svc.api import ImagesAPI
from images_svc.pulled import PulledImagesAPI, pulled_from_proto

__all__ = ["ImagesServicer", "add_to_server"]

add_to_server = pbg.add_ImagesServicer_to_server


class ImagesServicer(pbg.ImagesServicer):
    """Serves the Images gRPC service from an ImagesAPI implementation."""

    def __init__(self, api: ImagesAPI) -> None:
        self._api = api

    async def GetImage(self, req: pb.GetImageRequest, ctx: Any) -> pb.GetImageResponse:
        return pb.GetImageResponse(image=convert.image_to_proto(await self._api.get_image(req.ref)))

    async def ListImages(self, req: pb.ListImagesRequest, ctx: Any) -> pb.ListImagesResponse:
        recs = await self._api.list_images(convert.filters_from_proto(req.filters), req.all)
        return pb.ListImagesResponse(images=[convert.image_to_proto(r) for r in recs])

    async def ImportImage(
        self, reqs: AsyncIterator[pb.ImportImageRequest], ctx: Any
    ) -> AsyncIterator[tpb.Progress]:
        first = await anext(aiter(reqs), None)
        if first is None or not first.HasField("options"):
            raise errdefs.InvalidArgument("ImportImage: the first message must carry the options")
        opts = convert.import_options_from_proto(first.options)
        async for ev in self._api.import_image(opts, _chunks(reqs)):
            yield convert.progress_to_proto(ev)

    async def LoadImages(
        self, reqs: AsyncIterator[pb.LoadImagesRequest], ctx: Any
    ) -> AsyncIterator[tpb.Progress]:
        first = await anext(aiter(reqs), None)
        quiet = bool(first and first.quiet)

        async def data() -> AsyncIterator[bytes]:
            if first is not None:
                yield first.chunk
            async for r in reqs:
                yield r.chunk

        async for ev in self._api.load_images(data(), quiet):
            yield convert.progress_to_proto(ev)

    async def SaveImages(
        self, req: pb.SaveImagesRequest, ctx: Any
    ) -> AsyncIterator[pb.SaveImagesChunk]:
        async for chunk in self._api.save_images(list(req.refs)):
            yield pb.SaveImagesChunk(chunk=chunk)

    async def TagImage(self, req: pb.TagImageRequest, ctx: Any) -> pb.TagImageResponse:
        await self._api.tag_image(req.ref, req.repo, req.tag)
        return pb.TagImageResponse()

    async def RemoveImage(self, req: pb.RemoveImageRequest, ctx: Any) -> pb.RemoveImageResponse:
        items = await self._api.remove_image(req.ref, req.force, req.noprune)
        return pb.RemoveImageResponse(items=convert.delete_items_to_proto(items))

    async def ImageHistory(
        self, req: pb.ImageHistoryRequest, ctx: Any
    ) -> pb.ImageHistoryResponse:
        items = await self._api.image_history(req.ref)
        return pb.ImageHistoryResponse(items=convert.history_to_proto(items))

    async def PruneImages(self, req: pb.PruneImagesRequest, ctx: Any) -> pb.PruneImagesResponse:
        rep = await self._api.prune_images(convert.filters_from_proto(req.filters))
        return convert.prune_to_proto(rep)


    async def PrepareSnapshot(
        self, req: pb.PrepareSnapshotRequest, ctx: Any
    ) -> pb.PrepareSnapshotResponse:
        snap = await self._api.prepare_snapshot(req.key, req.image, dict(req.labels))
        return pb.PrepareSnapshotResponse(snapshot=convert.snapshot_to_proto(snap))

    async def GetSnapshot(self, req: pb.GetSnapshotRequest, ctx: Any) -> pb.GetSnapshotResponse:
        snap = await self._api.get_snapshot(req.key)
        return pb.GetSnapshotResponse(snapshot=convert.snapshot_to_proto(snap))

    async def ListSnapshots(
        self, req: pb.ListSnapshotsRequest, ctx: Any
    ) -> pb.ListSnapshotsResponse:
        snaps = await self._api.list_snapshots()
        return pb.ListSnapshotsResponse(snapshots=[convert.snapshot_to_proto(s) for s in snaps])

    async def RemoveSnapshot(
        self, req: pb.RemoveSnapshotRequest, ctx: Any
    ) -> pb.RemoveSnapshotResponse:
        await self._api.remove_snapshot(req.key)
        return pb.RemoveSnapshotResponse()

    async def MountSnapshot(
        self, req: pb.MountSnapshotRequest, ctx: Any
    ) -> pb.MountSnapshotResponse:
        snap = await self._api.mount_snapshot(req.key)
        return pb.MountSnapshotResponse(snapshot=convert.snapshot_to_proto(snap))

    async def UnmountSnapshot(
        self, req: pb.UnmountSnapshotRequest, ctx: Any
    ) -> pb.UnmountSnapshotResponse:
        snap = await self._api.unmount_snapshot(req.key)
        return pb.UnmountSnapshotResponse(snapshot=convert.snapshot_to_proto(snap))

    async def SnapshotChanges(
        self, req: pb.SnapshotChangesRequest, ctx: Any
    ) -> pb.SnapshotChangesResponse:
        changes = await self._api.snapshot_changes(req.key)
        return pb.SnapshotChangesResponse(changes=convert.changes_to_proto(changes))


    # -- images the registry service pulled --

    async def RegisterPulledImage(
        self, req: pb.RegisterPulledImageRequest, ctx: Any
    ) -> AsyncIterator[tpb.Progress]:
        api: PulledImagesAPI = self._api  # type: ignore[assignment]
        async for ev in api.register_pulled_image(pulled_from_proto(req)):
            yield convert.progress_to_proto(ev)


    # -- commit and build --

    async def CommitImage(self, req: pb.CommitImageRequest, ctx: Any) -> pb.CommitImageResponse:
        key, opts = convert.commit_from_proto(req)
        return pb.CommitImageResponse(image_id=await self._api.commit_image(key, opts))

    async def Build(
        self, reqs: AsyncIterator[pb.BuildRequest], ctx: Any
    ) -> AsyncIterator[pb.BuildProgress]:
        first = await anext(aiter(reqs), None)
        if first is None or not first.HasField("options"):
            raise errdefs.InvalidArgument("Build: the first message must carry the options")
        opts = convert.build_options_from_proto(first.options)

        async def context() -> AsyncIterator[bytes]:
            async for r in reqs:
                if r.HasField("chunk"):
                    yield r.chunk

        async for ev in self._api.build(opts, context()):
            yield convert.build_event_to_proto(ev)


async def _chunks(reqs: AsyncIterator[pb.ImportImageRequest]) -> AsyncIterator[bytes]:
    async for r in reqs:
        if r.HasField("chunk"):
            yield r.chunk
