"""A fake ContainersAPI for the gateway's container route tests: in-memory records, scripted output."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import anyio

import errdefs
from containers_svc.api import (
    AttachOptions,
    ContainerRecord,
    ContainerState,
    CreateRequest,
    CreateResult,
    LogEntry,
    LogsOptions,
    OutputFrame,
    PruneResult,
    WaitEvent,
)
from dockerapi.timefmt import now_rfc3339
from gateway_svc.backend import Backends
from gateway_svc.router import Router
from gateway_svc.routes.containers import ContainerRoutes

IMAGE_ID = "sha256:" + "ab" * 32


@dataclass
class Attached:
    """What one attach session did on the fake's side."""

    opts: AttachOptions
    stdin: bytes = b""
    stdin_ended: bool = False
    closed: anyio.Event = field(default_factory=anyio.Event)


class FakeContainers:
    """Implements ContainersAPI with records in a dict.

    A "container" whose Cmd is ``echo ...`` prints its args and exits 0 on start, ``sh -c
    'exit N'`` exits N; anything else runs until stopped/killed or :meth:`exit`. Attach
    output is ``script[id]`` (then the streams end), or an echo of stdin when stdin is used.
    """

    def __init__(self) -> None:
        self.recs: dict[str, ContainerRecord] = {}
        self.logs: dict[str, list[LogEntry]] = {}
        self.script: dict[str, list[OutputFrame]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.attached: list[Attached] = []
        self.logs_closed = anyio.Event()
        self._exited: dict[str, anyio.Event] = {}
        self._seq = 0

    # --- helpers used by tests --------------------------------------------------------------

    def find(self, ref: str) -> ContainerRecord:
        name = ref if ref.startswith("/") else "/" + ref
        for rec in self.recs.values():
            if rec.id == ref or rec.name == name:
                return rec
        hits = [r for r in self.recs.values() if ref and r.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        raise errdefs.NotFound(f"No such container: {ref}")

    def last(self) -> tuple[Any, ...]:
        """The most recent recorded call."""
        return self.calls[-1]

    def exit(self, ref: str, code: int) -> None:
        rec = self.find(ref)
        rec.state = ContainerState(status="exited", exit_code=code, started_at=rec.state.started_at,
                                   finished_at=now_rfc3339())
        self._exited.setdefault(rec.id, anyio.Event()).set()
        self._exited[rec.id] = anyio.Event()

    def add_log(self, ref: str, stream: str, data: bytes, time_nano: int) -> None:
        self.logs.setdefault(self.find(ref).id, []).append(LogEntry(stream, data, time_nano))

    # --- ContainersAPI ----------------------------------------------------------------------

    async def create_container(self, req: CreateRequest) -> CreateResult:
        self.calls.append(("create", req))
        image = str(req.config.get("Image") or "")
        if image.startswith("missing"):
            raise errdefs.NotFound(f"No such image: {image}")
        name = "/" + (req.name or f"fake_{self._seq}")
        for rec in self.recs.values():
            if rec.name == name:
                raise errdefs.AlreadyExists(
                    f'Conflict. The container name "{name}" is already in use by container '
                    f'"{rec.id}". You have to remove (or rename) that container to be able to '
                    "reuse that name.")
        self._seq += 1
        cid = f"{self._seq:02x}" * 32
        argv = list(req.config.get("Entrypoint") or []) + list(req.config.get("Cmd") or [])
        config = {"Hostname": cid[:12], **req.config}
        self.recs[cid] = ContainerRecord(
            id=cid, name=name, created=now_rfc3339(), path=argv[0] if argv else "",
            args=argv[1:], config=config, host_config=dict(req.host_config),
            networking_config=dict(req.networking_config), image=image, image_id=IMAGE_ID,
            state=ContainerState(), log_path=f"/var/lib/berth/containers/{cid}/{cid}-json.log",
        )
        return CreateResult(id=cid, warnings=[])

    async def get_container(self, ref: str, size: bool = False) -> ContainerRecord:
        rec = self.find(ref)
        if size:
            rec.size_rw, rec.size_root_fs = 12, 4096
        return rec

    async def list_containers(
        self, all: bool, limit: int, size: bool, filters: dict[str, list[str]]
    ) -> list[ContainerRecord]:
        self.calls.append(("list", all, limit, size, filters))
        out = [r for r in reversed(self.recs.values()) if all or r.state.running]
        return out[:limit] if limit > 0 else out

    async def start_container(self, ref: str) -> None:
        rec = self.find(ref)
        if rec.state.running:
            raise errdefs.NotModified("container already started")
        rec.state = ContainerState(status="running", running=True, pid=4242, started_at=now_rfc3339())
        argv = [rec.path, *rec.args]
        if argv[0] == "echo":
            self.add_log(rec.id, "stdout", " ".join(argv[1:]).encode() + b"\n", time.time_ns())
            self.exit(rec.id, 0)
        elif argv[:2] == ["sh", "-c"] and argv[2].startswith("exit "):
            self.add_log(rec.id, "stderr", b"bye\n", time.time_ns())
            self.exit(rec.id, int(argv[2].split()[1]))

    async def stop_container(self, ref: str, stop_timeout: int | None, signal: str) -> None:
        self.calls.append(("stop", ref, stop_timeout, signal))
        rec = self.find(ref)
        if not rec.state.running:
            raise errdefs.NotModified("container already stopped")
        self.exit(ref, 143)

    async def restart_container(self, ref: str, stop_timeout: int | None, signal: str) -> None:
        self.calls.append(("restart", ref, stop_timeout, signal))
        self.find(ref)

    async def kill_container(self, ref: str, signal: str) -> None:
        self.calls.append(("kill", ref, signal))
        rec = self.find(ref)
        if not rec.state.running:
            raise errdefs.Conflict(f"Container {rec.id} is not running")
        self.exit(ref, 137)

    async def pause_container(self, ref: str) -> None:
        rec = self.find(ref)
        rec.state.status, rec.state.paused = "paused", True

    async def unpause_container(self, ref: str) -> None:
        rec = self.find(ref)
        rec.state.status, rec.state.paused = "running", False

    async def wait_container(self, ref: str, condition: str) -> AsyncIterator[WaitEvent]:
        self.calls.append(("wait", ref, condition))
        rec = self.find(ref)
        event = self._exited.setdefault(rec.id, anyio.Event())
        yield WaitEvent(registered=True)
        if condition == "next-exit" or rec.state.running:
            await event.wait()
        yield WaitEvent(status_code=rec.state.exit_code, error="oops" if rec.state.exit_code == 99 else "")

    async def remove_container(self, ref: str, force: bool, volumes: bool, link: bool) -> None:
        self.calls.append(("remove", ref, force, volumes, link))
        rec = self.find(ref)
        if rec.state.running and not force:
            raise errdefs.Conflict(
                f"You cannot remove a running container {rec.id}. Stop the container before "
                "attempting removal or force remove")
        del self.recs[rec.id]

    async def rename_container(self, ref: str, new_name: str) -> None:
        rec = self.find(ref)
        if not new_name:
            raise errdefs.InvalidArgument("Neither old nor new names may be empty")
        rec.name = "/" + new_name.lstrip("/")

    async def resize_container(self, ref: str, height: int, width: int) -> None:
        self.calls.append(("resize", ref, height, width))
        self.find(ref)

    async def container_logs(self, ref: str, opts: LogsOptions) -> AsyncIterator[LogEntry]:
        self.calls.append(("logs", ref, opts))
        rec = self.find(ref)
        try:
            entries = [e for e in self.logs.get(rec.id, [])
                       if (opts.stdout and e.stream == "stdout") or (opts.stderr and e.stream == "stderr")]
            if opts.tail >= 0:
                entries = entries[len(entries) - opts.tail:] if opts.tail else []
            for e in entries:
                yield e
            if opts.follow and rec.state.running:
                await self._exited.setdefault(rec.id, anyio.Event()).wait()
        finally:
            self.logs_closed.set()

    async def attach_container(
        self, ref: str, opts: AttachOptions, stdin: AsyncIterator[bytes] | None
    ) -> AsyncIterator[OutputFrame]:
        rec = self.find(ref)
        if rec.state.status == "exited" and opts.stream and not opts.logs:
            raise errdefs.Conflict("You cannot attach to a stopped container, start it first")
        seen = Attached(opts)
        self.attached.append(seen)
        try:
            yield OutputFrame(ready=True)
            if stdin is not None:
                async for chunk in stdin:
                    seen.stdin += chunk
                    yield OutputFrame(stream=1, data=chunk)
                seen.stdin_ended = True
                yield OutputFrame(stream=2, data=b"stdin closed\n")
                return
            for frame in self.script.get(rec.id, []):
                yield frame
        finally:
            seen.closed.set()

    async def prune_containers(self, filters: dict[str, list[str]]) -> PruneResult:
        self.calls.append(("prune", filters))
        gone = [cid for cid, r in self.recs.items() if not r.state.running]
        for cid in gone:
            del self.recs[cid]
        return PruneResult(deleted=gone, space_reclaimed=100 * len(gone))


def make_router(fake: FakeContainers) -> Router:
    """A Router serving only the container routes over ``fake``."""
    router = Router(server_version="9.9.9-test")
    backends = cast(Backends, SimpleNamespace(containers=fake))
    ContainerRoutes(backends).register(router)
    return router
