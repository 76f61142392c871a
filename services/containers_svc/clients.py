"""ContainersClient: ContainersAPI over gRPC, for processes that do not host the containers service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from berthapi.containers.v1 import containers_pb2 as pb
from berthapi.containers.v1 import containers_pb2_grpc as pbg
from containers_svc import convert, fsconvert, stats, top, update
from containers_svc.api import (
    AttachOptions,
    CommitRequest,
    ContainerRecord,
    CreateRequest,
    CreateResult,
    ExecConfig,
    ExecRecord,
    LogEntry,
    LogsOptions,
    OutputFrame,
    PathStat,
    PruneResult,
    TopResult,
    WaitEvent,
)
from grpckit.client import stub
from grpckit.errors import translate_errors
from grpckit.types import filters_to_proto
from images_svc.model import Change

__all__ = ["ContainersClient"]


class ContainersClient:
    """Implements ContainersAPI by calling the Containers gRPC service; errors come back as errdefs."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = stub(pbg.ContainersStub, channel)

    @translate_errors
    async def create_container(self, req: CreateRequest) -> CreateResult:
        resp = await self._stub.CreateContainer(convert.create_to_proto(req))
        return CreateResult(resp.id, list(resp.warnings))

    @translate_errors
    async def get_container(self, ref: str, size: bool = False) -> ContainerRecord:
        resp = await self._stub.GetContainer(pb.GetContainerRequest(ref=ref, size=size))
        return convert.container_from_proto(resp.container)

    @translate_errors
    async def list_containers(
        self, all: bool, limit: int, size: bool, filters: dict[str, list[str]]
    ) -> list[ContainerRecord]:
        req = pb.ListContainersRequest(all=all, limit=limit, size=size, filters=filters_to_proto(filters))
        resp = await self._stub.ListContainers(req)
        return [convert.container_from_proto(c) for c in resp.containers]

    @translate_errors
    async def start_container(self, ref: str) -> None:
        await self._stub.StartContainer(pb.StartContainerRequest(ref=ref))

    @translate_errors
    async def stop_container(self, ref: str, stop_timeout: int | None, signal: str) -> None:
        await self._stub.StopContainer(pb.StopContainerRequest(ref=ref, timeout=stop_timeout, signal=signal))

    @translate_errors
    async def restart_container(self, ref: str, stop_timeout: int | None, signal: str) -> None:
        req = pb.RestartContainerRequest(ref=ref, timeout=stop_timeout, signal=signal)
        await self._stub.RestartContainer(req)

    @translate_errors
    async def kill_container(self, ref: str, signal: str) -> None:
        await self._stub.KillContainer(pb.KillContainerRequest(ref=ref, signal=signal))

    @translate_errors
    async def pause_container(self, ref: str) -> None:
        await self._stub.PauseContainer(pb.PauseContainerRequest(ref=ref))

    @translate_errors
    async def unpause_container(self, ref: str) -> None:
        await self._stub.UnpauseContainer(pb.UnpauseContainerRequest(ref=ref))

    @translate_errors
    async def wait_container(self, ref: str, condition: str) -> AsyncIterator[WaitEvent]:
        cond = convert.WAIT_CONDITIONS.get(condition)
        if cond is None:
            # let the service word the error
            cond = pb.WAIT_CONDITION_NOT_RUNNING
        req = pb.WaitContainerRequest(ref=ref, condition=cond)
        async for msg in self._stub.WaitContainer(req):
            yield convert.wait_from_proto(msg)

    @translate_errors
    async def remove_container(self, ref: str, force: bool, volumes: bool, link: bool) -> None:
        req = pb.DeleteContainerRequest(ref=ref, force=force, remove_volumes=volumes, remove_link=link)
        await self._stub.DeleteContainer(req)

    @translate_errors
    async def rename_container(self, ref: str, new_name: str) -> None:
        await self._stub.RenameContainer(pb.RenameContainerRequest(ref=ref, name=new_name))

    @translate_errors
    async def resize_container(self, ref: str, height: int, width: int) -> None:
        await self._stub.ResizeContainer(pb.ResizeContainerRequest(ref=ref, height=height, width=width))

    @translate_errors
    async def container_logs(self, ref: str, opts: LogsOptions) -> AsyncIterator[LogEntry]:
        async for msg in self._stub.ContainerLogs(convert.logs_request(ref, opts)):
            yield convert.log_entry_from_proto(msg)

    @translate_errors
    async def attach_container(
        self, ref: str, opts: AttachOptions, stdin: AsyncIterator[bytes] | None
    ) -> AsyncIterator[OutputFrame]:
        async def requests() -> AsyncIterator[pb.AttachContainerRequest]:
            yield pb.AttachContainerRequest(options=convert.attach_options_to_proto(ref, opts))
            if stdin is not None:
                async for chunk in stdin:
                    yield pb.AttachContainerRequest(stdin=chunk)
                yield pb.AttachContainerRequest(close_stdin=True)

        async for msg in self._stub.AttachContainer(requests()):
            yield convert.frame_from_proto(msg)

    @translate_errors
    async def prune_containers(self, filters: dict[str, list[str]]) -> PruneResult:
        resp = await self._stub.PruneContainers(pb.PruneContainersRequest(filters=filters_to_proto(filters)))
        return convert.prune_from_proto(resp)

    @translate_errors
    async def create_exec(self, ref: str, config: ExecConfig) -> str:
        req = pb.CreateExecRequest(container=ref, config=convert.exec_config_to_proto(config))
        return str((await self._stub.CreateExec(req)).id)

    @translate_errors
    async def start_exec(
        self, exec_id: str, detach: bool, tty: bool, stdin: AsyncIterator[bytes] | None
    ) -> AsyncIterator[OutputFrame]:
        async def requests() -> AsyncIterator[pb.StartExecRequest]:
            yield pb.StartExecRequest(options=pb.StartExecOptions(id=exec_id, detach=detach, tty=tty))
            if stdin is not None:
                async for chunk in stdin:
                    yield pb.StartExecRequest(stdin=chunk)
                yield pb.StartExecRequest(close_stdin=True)

        async for msg in self._stub.StartExec(requests()):
            yield convert.exec_frame_from_proto(msg)

    @translate_errors
    async def get_exec(self, exec_id: str) -> ExecRecord:
        return convert.exec_from_proto((await self._stub.GetExec(pb.GetExecRequest(id=exec_id))).exec)

    @translate_errors
    async def resize_exec(self, exec_id: str, height: int, width: int) -> None:
        await self._stub.ResizeExec(pb.ResizeExecRequest(id=exec_id, height=height, width=width))

    @translate_errors
    async def top_container(self, ref: str, ps_args: str) -> TopResult:
        resp = await self._stub.TopContainer(pb.TopContainerRequest(ref=ref, ps_args=ps_args))
        return top.top_from_proto(resp)

    @translate_errors
    async def container_stats(self, ref: str, stream: bool, one_shot: bool) -> AsyncIterator[dict[str, Any]]:
        req = pb.ContainerStatsRequest(ref=ref, stream=stream, one_shot=one_shot)
        async for msg in self._stub.ContainerStats(req):
            yield stats.stats_from_proto(msg)

    @translate_errors
    async def update_container(self, ref: str, update_config: dict[str, Any]) -> list[str]:
        resp = await self._stub.UpdateContainer(update.update_to_proto(ref, update_config))
        return list(resp.warnings)

    @translate_errors
    async def container_changes(self, ref: str) -> list[Change]:
        resp = await self._stub.ContainerChanges(pb.ContainerChangesRequest(ref=ref))
        return fsconvert.changes_from_proto(resp)

    @translate_errors
    async def export_container(self, ref: str) -> AsyncIterator[bytes]:
        async for msg in self._stub.ExportContainer(pb.ExportContainerRequest(ref=ref)):
            yield msg.data

    @translate_errors
    async def stat_archive(self, ref: str, path: str) -> PathStat:
        resp = await self._stub.StatArchive(pb.StatArchiveRequest(ref=ref, path=path))
        return fsconvert.stat_from_proto(resp.stat)

    @translate_errors
    async def get_archive(self, ref: str, path: str) -> AsyncIterator[PathStat | bytes]:
        async for msg in self._stub.GetArchive(pb.GetArchiveRequest(ref=ref, path=path)):
            if msg.WhichOneof("msg") == "stat":
                yield fsconvert.stat_from_proto(msg.stat)
            else:
                yield msg.chunk

    @translate_errors
    async def put_archive(
        self, ref: str, path: str, data: AsyncIterator[bytes], no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> None:
        async def requests() -> AsyncIterator[pb.PutArchiveRequest]:
            yield pb.PutArchiveRequest(options=pb.PutArchiveOptions(
                ref=ref, path=path, no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                copy_uid_gid=copy_uid_gid))
            async for chunk in data:
                yield pb.PutArchiveRequest(chunk=chunk)

        await self._stub.PutArchive(requests())

    # -- commit (issue 3) --

    @translate_errors
    async def commit_container(self, ref: str, req: CommitRequest) -> str:
        resp = await self._stub.CommitContainer(convert.commit_to_proto(ref, req))
        return str(resp.image_id)
