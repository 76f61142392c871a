"""Routes for exec: create in a container, start (hijacked unless detached), resize, inspect."""

from __future__ import annotations

import logging
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import errdefs
from containers_svc.api import ContainersAPI, ExecConfig, ExecRecord, OutputFrame
from gateway_svc.backend import Backends
from gateway_svc.http import EmptyResponse, HijackedStream, HijackResponse, JSONResponse, Request, Response
from gateway_svc.router import Router
from gateway_svc.routes.containers import _atoi, _attach_session, _close_all, _stream_type
from gateway_svc.streams import parse_detach_keys

__all__ = ["ExecRoutes", "exec_config_from_json", "exec_inspect"]

log = logging.getLogger("berth.gateway.exec")

_STDIN_BUFFER = 16


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]  # moby's StrSlice accepts a bare string
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errdefs.InvalidArgument(f"invalid JSON: {key} must be a list of strings")
    return list(value)


_EXEC_FIELDS = ("AttachStdin", "AttachStdout", "AttachStderr", "Cmd", "ConsoleSize", "DetachKeys",
                "Env", "Privileged", "Tty", "User", "WorkingDir")  # fmt: skip


def _fold_keys(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Go's encoding/json matches field names case-insensitively (docker-py sends ``detachKeys``)."""
    out = dict(body)
    for name in fields:
        if name not in out:
            hit = next((k for k in body if k.lower() == name.lower()), None)
            if hit is not None:
                out[name] = body[hit]
    return out


def exec_config_from_json(body: Any) -> ExecConfig:
    """Docker's ExecConfig body as an ExecConfig.

    Raises:
        errdefs.InvalidArgument: not an object, bad types, bad detach keys.
    """
    if not isinstance(body, dict):
        raise errdefs.InvalidArgument("invalid JSON: body must be an object")
    body = _fold_keys(body, _EXEC_FIELDS)
    size = body.get("ConsoleSize")
    console: tuple[int, int] | None = None
    if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size):
        console = (int(size[0]), int(size[1])) if size[0] or size[1] else None
    elif size is not None:
        raise errdefs.InvalidArgument("invalid JSON: ConsoleSize must be [height, width]")
    keys = str(body.get("DetachKeys") or "")
    parse_detach_keys(keys)  # reject bad keys at create, as moby does
    return ExecConfig(
        cmd=_strings(body, "Cmd"),
        attach_stdin=bool(body.get("AttachStdin")),
        attach_stdout=bool(body.get("AttachStdout")),
        attach_stderr=bool(body.get("AttachStderr")),
        tty=bool(body.get("Tty")),
        console_size=console,
        detach_keys=keys,
        env=_strings(body, "Env"),
        privileged=bool(body.get("Privileged")),
        user=str(body.get("User") or ""),
        working_dir=str(body.get("WorkingDir") or ""),
    )


def exec_inspect(rec: ExecRecord) -> dict[str, Any]:
    """GET /exec/{id}/json (swagger ExecInspectResponse)."""
    cfg = rec.config
    return {
        "CanRemove": rec.can_remove,
        "ContainerID": rec.container_id,
        "DetachKeys": cfg.detach_keys,
        "ExitCode": rec.exit_code,
        "ID": rec.id,
        "OpenStderr": rec.open_stderr,
        "OpenStdin": rec.open_stdin,
        "OpenStdout": rec.open_stdout,
        "ProcessConfig": {
            "arguments": cfg.cmd[1:],
            "entrypoint": cfg.cmd[0] if cfg.cmd else "",
            "privileged": cfg.privileged,
            "tty": cfg.tty,
            "user": cfg.user,
        },
        "Running": rec.running,
        "Pid": rec.pid,
    }


class ExecRoutes:
    """Handlers translate HTTP to one ContainersAPI exec call each and raise errdefs on failure."""

    def __init__(self, backends: Backends) -> None:
        if backends.containers is None:
            raise ValueError("ExecRoutes needs backends.containers")
        self._containers: ContainersAPI = backends.containers

    def register(self, r: Router) -> None:
        r.add("POST", "/containers/{name}/exec", self.post_container_exec)
        r.add("POST", "/exec/{id}/start", self.post_exec_start)
        r.add("POST", "/exec/{id}/resize", self.post_exec_resize)
        r.add("GET", "/exec/{id}/json", self.get_exec_json)

    async def post_container_exec(self, req: Request) -> Response:
        config = exec_config_from_json(await req.json())
        exec_id = await self._containers.create_exec(req.params["name"], config)
        return JSONResponse({"Id": exec_id}, status=201)

    async def get_exec_json(self, req: Request) -> Response:
        return JSONResponse(exec_inspect(await self._containers.get_exec(req.params["id"])))

    async def post_exec_resize(self, req: Request) -> Response:
        height, width = _atoi(req.query, "h"), _atoi(req.query, "w")
        await self._containers.resize_exec(req.params["id"], height, width)
        return EmptyResponse(200)

    async def post_exec_start(self, req: Request) -> Response:
        exec_id = req.params["id"]
        body = await req.json_object(default={})
        detach, tty = bool(body.get("Detach")), bool(body.get("Tty"))
        rec = await self._containers.get_exec(exec_id)
        if detach:
            frames = self._containers.start_exec(exec_id, True, tty, None)
            try:
                async for _ in frames:
                    pass
            finally:
                await _close_all(frames, None, None)
            return EmptyResponse(200)  # detached: an empty 200 body (docker-py checks it)
        keys = parse_detach_keys(rec.config.detach_keys)
        stdin_send: MemoryObjectSendStream[bytes] | None = None
        stdin_recv: MemoryObjectReceiveStream[bytes] | None = None
        if rec.config.attach_stdin:
            stdin_send, stdin_recv = anyio.create_memory_object_stream[bytes](_STDIN_BUFFER)
        frames = aiter(self._containers.start_exec(exec_id, False, tty, stdin_recv))
        pending: OutputFrame | None = None
        try:
            first = await anext(frames)
        except StopAsyncIteration:
            first = OutputFrame(ready=True)
        except BaseException:
            await _close_all(frames, stdin_send, stdin_recv)
            raise
        if not first.ready:
            pending = first
        # Framing follows the start request's Tty, as moby's router does.

        async def session(conn: HijackedStream) -> None:
            await _attach_session(conn, frames, pending, stdin_send, stdin_recv,
                                  tty=tty, detach_keys=keys if tty else None)  # fmt: skip

        return HijackResponse(session, content_type=_stream_type(tty, req))
