"""Routes for /containers: create, list, inspect, lifecycle, wait, logs, attach, prune."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import errdefs
from containers_svc.api import (
    AttachOptions,
    ContainersAPI,
    CreateRequest,
    LogEntry,
    LogsOptions,
    OutputFrame,
)
from dockerapi import filters as dfilters
from gateway_svc import container_shapes as shapes
from gateway_svc import websocket as ws
from gateway_svc.backend import Backends
from gateway_svc.errors import error_message
from gateway_svc.http import (
    EmptyResponse,
    HijackedStream,
    HijackResponse,
    JSONResponse,
    QueryParams,
    Request,
    Response,
    StreamResponse,
)
from gateway_svc.router import Router, api_at_least
from gateway_svc.streams import (
    MULTIPLEXED,
    RAW_STREAM,
    STDERR,
    STDOUT,
    SYSTEMERR,
    encode_frame,
    parse_detach_keys,
    pump_stdin,
)

__all__ = ["ContainerRoutes", "log_line"]

log = logging.getLogger("berth.gateway.containers")

_WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
_STDIN_BUFFER = 16  # chunks queued towards the container before the client is slowed down


def _stream_type(tty: bool, req: Request) -> str:
    # 1.42+: multiplexed-stream when no tty; raw-stream otherwise and before.
    return MULTIPLEXED if not tty and api_at_least(req, "1.42") else RAW_STREAM


def _atoi(query: QueryParams, name: str) -> int:
    """A required integer query value, with Go's strconv.Atoi wording on failure."""
    value = query.get(name) or ""
    try:
        return int(value, 10)
    except ValueError:
        raise errdefs.InvalidArgument(f'strconv.Atoi: parsing "{value}": invalid syntax') from None


def _timestamp_ns(value: str | None) -> int:
    return dfilters.parse_timestamp_ns(value) if value else 0


def _rfc3339_nano(time_nano: int) -> str:
    """moby's RFC3339NanoFixed: always nine fraction digits, UTC ``Z``."""
    seconds, nanos = divmod(time_nano, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"


def log_line(entry: LogEntry, timestamps: bool, multiplexed: bool) -> bytes:
    """One log entry as sent on the wire: framed when multiplexed, optional timestamp prefix."""
    data = entry.data
    if timestamps:
        data = _rfc3339_nano(entry.time_nano).encode() + b" " + data
    if not multiplexed:
        return data
    return encode_frame(STDERR if entry.stream == "stderr" else STDOUT, data)


class ContainerRoutes:
    """Handlers translate HTTP to one ContainersAPI call each and raise errdefs on failure."""

    def __init__(self, backends: Backends) -> None:
        if backends.containers is None:
            raise ValueError("ContainerRoutes needs backends.containers")
        self._containers: ContainersAPI = backends.containers

    def register(self, r: Router) -> None:
        r.add("POST", "/containers/create", self.post_containers_create)
        r.add("GET", "/containers/json", self.get_containers_json)
        r.add("POST", "/containers/prune", self.post_containers_prune)
        r.add("GET", "/containers/{name}/json", self.get_container_json)
        r.add("GET", "/containers/{name}/logs", self.get_container_logs)
        r.add("POST", "/containers/{name}/start", self.post_container_start)
        r.add("POST", "/containers/{name}/stop", self.post_container_stop)
        r.add("POST", "/containers/{name}/restart", self.post_container_restart)
        r.add("POST", "/containers/{name}/kill", self.post_container_kill)
        r.add("POST", "/containers/{name}/pause", self.post_container_pause)
        r.add("POST", "/containers/{name}/unpause", self.post_container_unpause)
        r.add("POST", "/containers/{name}/rename", self.post_container_rename)
        r.add("POST", "/containers/{name}/resize", self.post_container_resize)
        r.add("POST", "/containers/{name}/wait", self.post_container_wait)
        r.add("POST", "/containers/{name}/attach", self.post_container_attach)
        r.add("GET", "/containers/{name}/attach/ws", self.get_container_attach_ws)
        r.add("DELETE", "/containers/{name:.+}", self.delete_container)

    # --- create, list, inspect, prune -------------------------------------------------------

    async def post_containers_create(self, req: Request) -> Response:
        body = await req.json_object()
        host_config = body.get("HostConfig")
        host_config = {} if host_config is None else host_config
        networking = body.get("NetworkingConfig")
        networking = {} if networking is None else networking
        if not isinstance(host_config, dict) or not isinstance(networking, dict):
            raise errdefs.InvalidArgument("invalid JSON: HostConfig and NetworkingConfig must be objects")
        config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        result = await self._containers.create_container(CreateRequest(
            name=req.query.get("name") or "",
            config=config,
            host_config=host_config,
            networking_config=networking,
            platform=req.query.get("platform") or "",
            api_version=req.api_version,
        ))
        return JSONResponse({"Id": result.id, "Warnings": list(result.warnings)}, status=201)

    async def get_containers_json(self, req: Request) -> Response:
        filters = dfilters.parse(req.query.get("filters"))
        size = req.query.get_bool("size")
        recs = await self._containers.list_containers(
            all=req.query.get_bool("all"),
            limit=req.query.get_int("limit", -1) or -1,  # <= 0: no limit (docker-py sends -1)
            size=size,
            filters=filters,
        )
        return JSONResponse([shapes.container_summary(r, req.api_version) for r in recs])

    async def get_container_json(self, req: Request) -> Response:
        rec = await self._containers.get_container(req.params["name"], size=req.query.get_bool("size"))
        return JSONResponse(shapes.container_inspect(rec, req.api_version))

    async def post_containers_prune(self, req: Request) -> Response:
        filters = dfilters.parse(req.query.get("filters"))
        res = await self._containers.prune_containers(filters)
        return JSONResponse({"ContainersDeleted": list(res.deleted) or None,
                             "SpaceReclaimed": res.space_reclaimed})

    # --- lifecycle --------------------------------------------------------------------------

    async def post_container_start(self, req: Request) -> Response:
        await self._containers.start_container(req.params["name"])
        return EmptyResponse(204)

    def _stop_args(self, req: Request) -> tuple[int | None, str]:
        timeout = req.query.get_int("t")
        # 1.42+: stop/restart take a signal.
        signal = (req.query.get("signal") or "") if api_at_least(req, "1.42") else ""
        return timeout, signal

    async def post_container_stop(self, req: Request) -> Response:
        timeout, signal = self._stop_args(req)
        await self._containers.stop_container(req.params["name"], timeout, signal)
        return EmptyResponse(204)

    async def post_container_restart(self, req: Request) -> Response:
        timeout, signal = self._stop_args(req)
        await self._containers.restart_container(req.params["name"], timeout, signal)
        return EmptyResponse(204)

    async def post_container_kill(self, req: Request) -> Response:
        name = req.params["name"]
        try:
            await self._containers.kill_container(name, req.query.get("signal") or "")
        except errdefs.EngineError as exc:
            # moby's router prefixes kill errors with the name as given; the kind is kept.
            raise type(exc)(f"Cannot kill container: {name}: {exc.message}") from exc
        return EmptyResponse(204)

    async def post_container_pause(self, req: Request) -> Response:
        await self._containers.pause_container(req.params["name"])
        return EmptyResponse(204)

    async def post_container_unpause(self, req: Request) -> Response:
        await self._containers.unpause_container(req.params["name"])
        return EmptyResponse(204)

    async def post_container_rename(self, req: Request) -> Response:
        await self._containers.rename_container(req.params["name"], req.query.get("name") or "")
        return EmptyResponse(204)

    async def post_container_resize(self, req: Request) -> Response:
        height, width = _atoi(req.query, "h"), _atoi(req.query, "w")
        await self._containers.resize_container(req.params["name"], height, width)
        return EmptyResponse(200)

    async def delete_container(self, req: Request) -> Response:
        await self._containers.remove_container(
            req.params["name"],
            force=req.query.get_bool("force"),
            volumes=req.query.get_bool("v"),
            link=req.query.get_bool("link"),
        )
        return EmptyResponse(204)

    # --- wait -------------------------------------------------------------------------------

    async def post_container_wait(self, req: Request) -> Response:
        condition = "not-running"
        if api_at_least(req, "1.30"):  # older versions ignore condition
            condition = req.query.get("condition") or "not-running"
            if condition not in _WAIT_CONDITIONS:
                raise errdefs.InvalidArgument(f'invalid condition: "{condition}"')
        events = self._containers.wait_container(req.params["name"], condition)

        async def body() -> AsyncIterator[bytes]:
            # Errors before the registration are plain HTTP errors (StreamResponse sends
            # headers with the first chunk); then the headers go out at once, because the
            # CLI waits for them before it calls start.
            async for ev in events:
                if ev.registered:
                    yield b""
                    continue
                yield shapes.wait_result(ev)
                return

        return StreamResponse(body(), content_type="application/json", error_lines=False)

    # --- logs -------------------------------------------------------------------------------

    async def get_container_logs(self, req: Request) -> Response:
        q = req.query
        stdout, stderr = q.get_bool("stdout"), q.get_bool("stderr")
        if not (stdout or stderr):
            raise errdefs.InvalidArgument("You must choose at least one stream")
        tail_text = q.get("tail") or "all"
        try:
            tail = max(-1, int(tail_text)) if tail_text != "all" else -1
        except ValueError:
            tail = -1  # moby: anything unparsable means all
        opts = LogsOptions(
            stdout=stdout, stderr=stderr, follow=q.get_bool("follow"),
            since_nano=_timestamp_ns(q.get("since")), until_nano=_timestamp_ns(q.get("until")),
            timestamps=False, tail=tail,  # the prefix is added here, in moby's fixed 9-digit format
        )
        timestamps = q.get_bool("timestamps")
        rec = await self._containers.get_container(req.params["name"])
        tty = bool(rec.config.get("Tty"))
        entries = self._containers.container_logs(req.params["name"], opts)

        async def body() -> AsyncIterator[bytes]:
            yield b""  # moby flushes the headers before the first line
            try:
                async for entry in entries:
                    yield log_line(entry, timestamps, multiplexed=not tty)
            except errdefs.EngineError as exc:
                # In band, as moby's WriteLogStream does once the stream has started.
                text = f"Error grabbing logs: {error_message(exc)}\n".encode()
                yield text if tty else encode_frame(SYSTEMERR, text)
            finally:
                await _aclose(entries)

        return StreamResponse(body(), content_type=_stream_type(tty, req), error_lines=False)

    # --- attach -----------------------------------------------------------------------------

    async def post_container_attach(self, req: Request) -> Response:
        q = req.query
        opts = AttachOptions(
            stdin=q.get_bool("stdin"), stdout=q.get_bool("stdout"), stderr=q.get_bool("stderr"),
            stream=q.get_bool("stream"), logs=q.get_bool("logs"), detach_keys=q.get("detachKeys") or "",
        )
        return await self._attach(req, opts, websocket=False)

    async def get_container_attach_ws(self, req: Request) -> Response:
        """The attach over a WebSocket (moby wsContainersAttach): raw output, never multiplexed."""
        q = req.query
        headers = ws.handshake_headers(req)
        std = (q.get_bool("stdin"), q.get_bool("stdout"), q.get_bool("stderr"))
        if not api_at_least(req, "1.42"):
            std = (True, True, True)  # older APIs ignore the stream choice
        opts = AttachOptions(
            stdin=std[0], stdout=std[1], stderr=std[2], stream=q.get_bool("stream"),
            logs=q.get_bool("logs"), detach_keys=q.get("detachKeys") or "",
        )
        return await self._attach(req, opts, websocket=True, ws_headers=headers)

    async def _attach(
        self, req: Request, opts: AttachOptions, *, websocket: bool,
        ws_headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        name = req.params["name"]
        detach_keys = parse_detach_keys(opts.detach_keys)
        rec = await self._containers.get_container(name)
        tty = bool(rec.config.get("Tty"))
        if websocket and opts.stdin and not rec.config.get("OpenStdin"):
            opts = replace(opts, stdin=False)
        stdin_send: MemoryObjectSendStream[bytes] | None = None
        stdin_recv: MemoryObjectReceiveStream[bytes] | None = None
        if opts.stdin:
            stdin_send, stdin_recv = anyio.create_memory_object_stream[bytes](_STDIN_BUFFER)
        frames = aiter(self._containers.attach_container(name, opts, stdin_recv))
        pending: OutputFrame | None = None
        try:
            first = await anext(frames)
        except StopAsyncIteration:
            first = OutputFrame(ready=True)  # ended at once: hijack, then close
        except BaseException:
            await _close_all(frames, stdin_send, stdin_recv)
            raise
        if not first.ready:
            log.debug("attach %s: first frame was not ready=True; forwarding it", name)
            pending = first

        async def session(conn: HijackedStream) -> None:
            if websocket:  # binary frames since 1.28; raw bytes inside, as with a TTY
                conn = ws.WebSocketStream(conn, binary=api_at_least(req, "1.28"))
            await _attach_session(conn, frames, pending, stdin_send, stdin_recv,
                                  tty=tty or websocket, detach_keys=detach_keys if tty else None)

        if websocket:
            return HijackResponse(session, headers=ws_headers,
                                  status_line="HTTP/1.1 101 Switching Protocols")
        return HijackResponse(session, content_type=_stream_type(tty, req))


async def _close_all(
    frames: AsyncIterator[OutputFrame],
    send: MemoryObjectSendStream[bytes] | None,
    recv: MemoryObjectReceiveStream[bytes] | None,
) -> None:
    await _aclose(frames)
    for s in (send, recv):
        if s is not None:
            await s.aclose()


async def _aclose(it: object) -> None:
    """Close a backend iterator (async generators detach/unsubscribe on close), shielded."""
    aclose = getattr(it, "aclose", None)
    if aclose is None:
        return
    with anyio.CancelScope(shield=True):
        try:
            await aclose()
        except Exception:
            log.debug("error closing backend stream", exc_info=True)


async def _attach_session(
    conn: HijackedStream,
    frames: AsyncIterator[OutputFrame],
    pending: OutputFrame | None,
    stdin_send: MemoryObjectSendStream[bytes] | None,
    stdin_recv: MemoryObjectReceiveStream[bytes] | None,
    *,
    tty: bool,
    detach_keys: bytes | None,
) -> None:
    """Pump stdin and output until the output ends, the client goes or detaches.

    Resource handling:
        The frames iterator (which detaches in the backend) and the stdin streams are
        closed on every exit path; the server then closes the connection.
    """

    async def read_stdin(sink: MemoryObjectSendStream[bytes], scope: anyio.CancelScope) -> None:
        try:
            detached = await pump_stdin(conn, sink, detach_keys)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # the backend stopped reading stdin; output goes on
        if detached:
            log.debug("attach: client detached")
            scope.cancel()  # end the session; the container keeps running

    async def write_output(scope: anyio.CancelScope) -> None:
        try:
            if pending is not None and pending.data:
                await conn.send(pending.data if tty else encode_frame(pending.stream, pending.data))
            async for frame in frames:
                if frame.data and not frame.ready:
                    await conn.send(frame.data if tty else encode_frame(frame.stream, frame.data))
        except errdefs.Canceled:
            log.debug("attach: client went away")
        except errdefs.EngineError as exc:
            log.warning("attach: stream failed after the hijack: %s", exc.message)
        scope.cancel()  # output ended (or nobody listens): close the connection

    try:
        async with anyio.create_task_group() as tg:
            if stdin_send is not None:
                tg.start_soon(read_stdin, stdin_send, tg.cancel_scope)
            tg.start_soon(write_output, tg.cancel_scope)
    finally:
        await _close_all(frames, stdin_send, stdin_recv)
