"""ContainersServicer: the gRPC shim over ContainersAPI; it only translates (errors map in grpckit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import empty_pb2  # type: ignore[import-untyped]

import errdefs
from berthapi.containers.v1 import containers_pb2 as pb
from berthapi.containers.v1 import containers_pb2_grpc as pbg
from containers_svc import convert, fsconvert, stats, top, update
from containers_svc.api import ContainersAPI
from grpckit.types import filters_from_proto

__all__ = ["ContainersServicer", "add_to_server"]

add_to_server = pbg.add_ContainersServicer_to_server


class ContainersServicer(pbg.ContainersServicer):
    """Serves the Containers gRPC service (lifecycle, wait, logs, attach) from a ContainersAPI."""

    def __init__(self, api: ContainersAPI) -> None:
        self._api = api

    async def CreateContainer(self, req: pb.CreateContainerRequest, ctx: Any) -> pb.CreateContainerResponse:
        res = await self._api.create_container(convert.create_from_proto(req))
        return pb.CreateContainerResponse(id=res.id, warnings=res.warnings)

    async def GetContainer(self, req: pb.GetContainerRequest, ctx: Any) -> pb.GetContainerResponse:
        rec = await self._api.get_container(req.ref, req.size)
        return pb.GetContainerResponse(container=convert.container_to_proto(rec))

    async def ListContainers(self, req: pb.ListContainersRequest, ctx: Any) -> pb.ListContainersResponse:
        recs = await self._api.list_containers(req.all, req.limit, req.size, filters_from_proto(req.filters))
        return pb.ListContainersResponse(containers=[convert.container_to_proto(r) for r in recs])

    async def StartContainer(self, req: pb.StartContainerRequest, ctx: Any) -> pb.StartContainerResponse:
        await self._api.start_container(req.ref)
        return pb.StartContainerResponse()

    async def StopContainer(self, req: pb.StopContainerRequest, ctx: Any) -> pb.StopContainerResponse:
        timeout = req.timeout if req.HasField("timeout") else None
        await self._api.stop_container(req.ref, timeout, req.signal)
        return pb.StopContainerResponse()

    async def KillContainer(self, req: pb.KillContainerRequest, ctx: Any) -> pb.KillContainerResponse:
        await self._api.kill_container(req.ref, req.signal)
        return pb.KillContainerResponse()

    async def RestartContainer(
        self, req: pb.RestartContainerRequest, ctx: Any
    ) -> pb.RestartContainerResponse:
        timeout = req.timeout if req.HasField("timeout") else None
        await self._api.restart_container(req.ref, timeout, req.signal)
        return pb.RestartContainerResponse()

    async def PauseContainer(self, req: pb.PauseContainerRequest, ctx: Any) -> pb.PauseContainerResponse:
        await self._api.pause_container(req.ref)
        return pb.PauseContainerResponse()

    async def UnpauseContainer(
        self, req: pb.UnpauseContainerRequest, ctx: Any
    ) -> pb.UnpauseContainerResponse:
        await self._api.unpause_container(req.ref)
        return pb.UnpauseContainerResponse()

    async def WaitContainer(
        self, req: pb.WaitContainerRequest, ctx: Any
    ) -> AsyncIterator[pb.WaitContainerResponse]:
        async for ev in self._api.wait_container(req.ref, convert.condition_from_proto(req.condition)):
            yield convert.wait_to_proto(ev)

    async def DeleteContainer(self, req: pb.DeleteContainerRequest, ctx: Any) -> Any:
        await self._api.remove_container(req.ref, req.force, req.remove_volumes, req.remove_link)
        return empty_pb2.Empty()

    async def RenameContainer(self, req: pb.RenameContainerRequest, ctx: Any) -> pb.RenameContainerResponse:
        await self._api.rename_container(req.ref, req.name)
        return pb.RenameContainerResponse()

    async def ResizeContainer(self, req: pb.ResizeContainerRequest, ctx: Any) -> pb.ResizeContainerResponse:
        await self._api.resize_container(req.ref, req.height, req.width)
        return pb.ResizeContainerResponse()

    async def ContainerLogs(
        self, req: pb.ContainerLogsRequest, ctx: Any
    ) -> AsyncIterator[pb.ContainerLogsResponse]:
        async for e in self._api.container_logs(req.ref, convert.logs_options_from_proto(req)):
            yield convert.log_entry_to_proto(e)

    async def AttachContainer(
        self, reqs: AsyncIterator[pb.AttachContainerRequest], ctx: Any
    ) -> AsyncIterator[pb.AttachContainerResponse]:
        first = await anext(aiter(reqs), None)
        if first is None or first.WhichOneof("msg") != "options":
            raise errdefs.InvalidArgument("AttachContainer: the first message must carry the options")
        ref = first.options.ref
        tty = bool((await self._api.get_container(ref)).config.get("Tty"))

        async def stdin() -> AsyncIterator[bytes]:
            async for r in reqs:
                kind = r.WhichOneof("msg")
                if kind == "stdin":
                    yield r.stdin
                elif kind == "close_stdin":
                    return
                elif kind == "resize":
                    await self._api.resize_container(ref, r.resize.height, r.resize.width)

        opts = convert.attach_options_from_proto(first.options)
        async for frame in self._api.attach_container(ref, opts, stdin()):
            yield convert.frame_to_proto(frame, tty)

    async def CreateExec(self, req: pb.CreateExecRequest, ctx: Any) -> pb.CreateExecResponse:
        exec_id = await self._api.create_exec(req.container, convert.exec_config_from_proto(req.config))
        return pb.CreateExecResponse(id=exec_id)

    async def StartExec(
        self, reqs: AsyncIterator[pb.StartExecRequest], ctx: Any
    ) -> AsyncIterator[pb.StartExecResponse]:
        first = await anext(aiter(reqs), None)
        if first is None or first.WhichOneof("msg") != "options":
            raise errdefs.InvalidArgument("StartExec: the first message must carry the options")
        opts = first.options
        tty = (await self._api.get_exec(opts.id)).config.tty

        async def stdin() -> AsyncIterator[bytes]:
            async for r in reqs:
                kind = r.WhichOneof("msg")
                if kind == "stdin":
                    yield r.stdin
                elif kind == "close_stdin":
                    return
                elif kind == "resize":
                    await self._api.resize_exec(opts.id, r.resize.height, r.resize.width)

        async for frame in self._api.start_exec(opts.id, opts.detach, opts.tty, stdin()):
            yield convert.exec_frame_to_proto(frame, tty)

    async def GetExec(self, req: pb.GetExecRequest, ctx: Any) -> pb.GetExecResponse:
        return pb.GetExecResponse(exec=convert.exec_to_proto(await self._api.get_exec(req.id)))

    async def ResizeExec(self, req: pb.ResizeExecRequest, ctx: Any) -> pb.ResizeExecResponse:
        await self._api.resize_exec(req.id, req.height, req.width)
        return pb.ResizeExecResponse()

    async def PruneContainers(
        self, req: pb.PruneContainersRequest, ctx: Any
    ) -> pb.PruneContainersResponse:
        return convert.prune_to_proto(await self._api.prune_containers(filters_from_proto(req.filters)))

    async def TopContainer(self, req: pb.TopContainerRequest, ctx: Any) -> pb.TopContainerResponse:
        return top.top_to_proto(await self._api.top_container(req.ref, req.ps_args))

    async def ContainerStats(
        self, req: pb.ContainerStatsRequest, ctx: Any
    ) -> AsyncIterator[pb.ContainerStatsResponse]:
        async for doc in self._api.container_stats(req.ref, req.stream, req.one_shot):
            yield stats.stats_to_proto(doc)

    async def UpdateContainer(self, req: pb.UpdateContainerRequest, ctx: Any) -> pb.UpdateContainerResponse:
        warnings = await self._api.update_container(req.ref, update.update_from_proto(req))
        return pb.UpdateContainerResponse(warnings=warnings)

    async def ContainerChanges(
        self, req: pb.ContainerChangesRequest, ctx: Any
    ) -> pb.ContainerChangesResponse:
        return fsconvert.changes_to_proto(await self._api.container_changes(req.ref))

    async def ExportContainer(self, req: pb.ExportContainerRequest, ctx: Any) -> AsyncIterator[pb.DataChunk]:
        async for chunk in self._api.export_container(req.ref):
            yield pb.DataChunk(data=chunk)

    async def StatArchive(self, req: pb.StatArchiveRequest, ctx: Any) -> pb.StatArchiveResponse:
        stat = await self._api.stat_archive(req.ref, req.path)
        return pb.StatArchiveResponse(stat=fsconvert.stat_to_proto(stat))

    async def GetArchive(self, req: pb.GetArchiveRequest, ctx: Any) -> AsyncIterator[pb.GetArchiveResponse]:
        async for item in self._api.get_archive(req.ref, req.path):
            if isinstance(item, bytes):
                yield pb.GetArchiveResponse(chunk=item)
            else:
                yield pb.GetArchiveResponse(stat=fsconvert.stat_to_proto(item))

    async def PutArchive(
        self, reqs: AsyncIterator[pb.PutArchiveRequest], ctx: Any
    ) -> pb.PutArchiveResponse:
        first = await anext(aiter(reqs), None)
        if first is None or first.WhichOneof("msg") != "options":
            raise errdefs.InvalidArgument("PutArchive: the first message must carry the options")
        o = first.options

        async def data() -> AsyncIterator[bytes]:
            async for r in reqs:
                if r.WhichOneof("msg") == "chunk":
                    yield r.chunk

        await self._api.put_archive(o.ref, o.path, data(), o.no_overwrite_dir_non_dir, o.copy_uid_gid)
        return pb.PutArchiveResponse()

    # -- commit (issue 3) --

    async def CommitContainer(
        self, req: pb.CommitContainerRequest, ctx: Any
    ) -> pb.CommitContainerResponse:
        image_id = await self._api.commit_container(req.ref, convert.commit_from_proto(req))
        return pb.CommitContainerResponse(image_id=image_id)
