"""ImagesClient: ImagesAPI over gRPC, for processes that do not host the images service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from berthapi.images.v1 import images_pb2 as pb
from berthapi.images.v1 import images_pb2_grpc as pbg
from grpckit.client import stub
from grpckit.errors import translate_errors
from images_svc import convert
from images_svc.api import (
    BuildEvent,
    BuildOptions,
    CommitOptions,
    ImportOptions,
    ProgressEvent,
    PruneReport,
)
from images_svc.model import Change, DeleteItem, HistoryItem, ImageRecord, Snapshot
from images_svc.pulled import PulledImage, pulled_to_proto

__all__ = ["ImagesClient"]

CHUNK = 1 << 20


class ImagesClient:
    """Implements ImagesAPI by calling the Images gRPC service; errors come back as errdefs."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = stub(pbg.ImagesStub, channel)

    @translate_errors
    async def get_image(self, ref: str) -> ImageRecord:
        resp = await self._stub.GetImage(pb.GetImageRequest(ref=ref))
        return convert.image_from_proto(resp.image)

    @translate_errors
    async def list_images(self, filters: dict[str, list[str]], all: bool) -> list[ImageRecord]:
        req = pb.ListImagesRequest(filters=convert.filters_to_proto(filters), all=all)
        resp = await self._stub.ListImages(req)
        return [convert.image_from_proto(m) for m in resp.images]

    @translate_errors
    async def import_image(
        self, opts: ImportOptions, data: AsyncIterator[bytes]
    ) -> AsyncIterator[ProgressEvent]:
        async def requests() -> AsyncIterator[pb.ImportImageRequest]:
            yield pb.ImportImageRequest(options=convert.import_options_to_proto(opts))
            async for chunk in _rechunk(data):
                yield pb.ImportImageRequest(chunk=chunk)

        async for msg in self._stub.ImportImage(requests()):
            yield convert.progress_from_proto(msg)

    @translate_errors
    async def load_images(
        self, data: AsyncIterator[bytes], quiet: bool
    ) -> AsyncIterator[ProgressEvent]:
        async def requests() -> AsyncIterator[pb.LoadImagesRequest]:
            yield pb.LoadImagesRequest(quiet=quiet)
            async for chunk in _rechunk(data):
                yield pb.LoadImagesRequest(chunk=chunk)

        async for msg in self._stub.LoadImages(requests()):
            yield convert.progress_from_proto(msg)

    @translate_errors
    async def save_images(self, refs: list[str]) -> AsyncIterator[bytes]:
        async for msg in self._stub.SaveImages(pb.SaveImagesRequest(refs=refs)):
            yield msg.chunk

    @translate_errors
    async def tag_image(self, ref: str, repo: str, tag: str) -> None:
        await self._stub.TagImage(pb.TagImageRequest(ref=ref, repo=repo, tag=tag))

    @translate_errors
    async def remove_image(self, ref: str, force: bool, noprune: bool) -> list[DeleteItem]:
        req = pb.RemoveImageRequest(ref=ref, force=force, noprune=noprune)
        resp = await self._stub.RemoveImage(req)
        return convert.delete_items_from_proto(list(resp.items))

    @translate_errors
    async def image_history(self, ref: str) -> list[HistoryItem]:
        resp = await self._stub.ImageHistory(pb.ImageHistoryRequest(ref=ref))
        return convert.history_from_proto(list(resp.items))

    @translate_errors
    async def prune_images(self, filters: dict[str, list[str]]) -> PruneReport:
        req = pb.PruneImagesRequest(filters=convert.filters_to_proto(filters))
        resp = await self._stub.PruneImages(req)
        return convert.prune_from_proto(resp)

    @translate_errors
    async def prepare_snapshot(self, key: str, image: str, labels: dict[str, str]) -> Snapshot:
        req = pb.PrepareSnapshotRequest(key=key, image=image, labels=labels)
        resp = await self._stub.PrepareSnapshot(req)
        return convert.snapshot_from_proto(resp.snapshot)

    @translate_errors
    async def get_snapshot(self, key: str) -> Snapshot:
        resp = await self._stub.GetSnapshot(pb.GetSnapshotRequest(key=key))
        return convert.snapshot_from_proto(resp.snapshot)

    @translate_errors
    async def list_snapshots(self) -> list[Snapshot]:
        resp = await self._stub.ListSnapshots(pb.ListSnapshotsRequest())
        return [convert.snapshot_from_proto(m) for m in resp.snapshots]

    @translate_errors
    async def remove_snapshot(self, key: str) -> None:
        await self._stub.RemoveSnapshot(pb.RemoveSnapshotRequest(key=key))

    @translate_errors
    async def mount_snapshot(self, key: str) -> Snapshot:
        resp = await self._stub.MountSnapshot(pb.MountSnapshotRequest(key=key))
        return convert.snapshot_from_proto(resp.snapshot)

    @translate_errors
    async def unmount_snapshot(self, key: str) -> Snapshot:
        resp = await self._stub.UnmountSnapshot(pb.UnmountSnapshotRequest(key=key))
        return convert.snapshot_from_proto(resp.snapshot)

    @translate_errors
    async def snapshot_changes(self, key: str) -> list[Change]:
        resp = await self._stub.SnapshotChanges(pb.SnapshotChangesRequest(key=key))
        return convert.changes_from_proto(list(resp.changes))

    # -- commit and build --

    @translate_errors
    async def commit_image(self, key: str, opts: CommitOptions) -> str:
        resp = await self._stub.CommitImage(convert.commit_to_proto(key, opts))
        return str(resp.image_id)

    @translate_errors
    async def build(
        self, opts: BuildOptions, context: AsyncIterator[bytes]
    ) -> AsyncIterator[BuildEvent]:
        async def requests() -> AsyncIterator[pb.BuildRequest]:
            yield pb.BuildRequest(options=convert.build_options_to_proto(opts))
            async for chunk in _rechunk(context):
                yield pb.BuildRequest(chunk=chunk)

        async for msg in self._stub.Build(requests()):
            yield convert.build_event_from_proto(msg)

    # -- images the registry service pulled --

    @translate_errors
    async def register_pulled_image(self, img: PulledImage) -> AsyncIterator[ProgressEvent]:
        async for msg in self._stub.RegisterPulledImage(pulled_to_proto(img)):
            yield convert.progress_from_proto(msg)


async def _rechunk(data: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Coalesce small HTTP chunks into messages of about 1 MiB (fewer gRPC messages)."""
    buf = bytearray()
    async for chunk in data:
        buf += chunk
        while len(buf) >= CHUNK:
            yield bytes(buf[:CHUNK])
            del buf[:CHUNK]
    if buf:
        yield bytes(buf)
