"""Routes for the classic builder and commit: POST /build, POST /build/prune, POST /commit."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from typing import Any

import errdefs
from containers_svc.api import CommitRequest
from gateway_svc.backend import Backends
from gateway_svc.http import JSONResponse, Request, Response, StreamResponse
from gateway_svc.router import Router
from images_svc.api import BuildEvent, BuildOptions

__all__ = ["BuildRoutes", "build_message"]

JSON_STREAM = "application/json"


def build_message(ev: BuildEvent) -> bytes:
    """One jsonmessage line of the classic builder's stream; an empty event is a bare newline
    (a keepalive that JSON stream decoders skip as whitespace)."""
    msg: dict[str, Any] = {}
    if ev == BuildEvent():
        return b"\n"
    if ev.error:
        msg = {"errorDetail": {"code": ev.error_code or 1, "message": ev.error}, "error": ev.error}
    else:
        if ev.stream:
            msg["stream"] = ev.stream
        if ev.status:
            msg["status"] = ev.status
        if ev.id:
            msg["id"] = ev.id
        if ev.aux_json:
            msg["aux"] = json.loads(ev.aux_json)
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _json_query(req: Request, name: str, kind: type) -> Any:
    raw = req.query.get(name)
    if not raw:
        return kind()
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise errdefs.InvalidArgument(f"invalid {name} JSON: {e}") from None
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise errdefs.InvalidArgument(f"invalid {name}: must be a JSON {kind.__name__}")
    return value


def _registry_config(req: Request) -> bytes:
    raw = req.headers.get("X-Registry-Config") or ""
    if not raw:
        return b""
    try:
        pad = "=" * (-len(raw) % 4)
        return base64.urlsafe_b64decode(raw + pad)
    except (binascii.Error, ValueError):
        return b""  # dockerd ignores a header it cannot decode


def build_options(req: Request) -> BuildOptions:
    """POST /build's query as BuildOptions, with Docker's errors for bad values."""
    q = req.query
    version = q.get("version") or "1"
    if version not in ("1", "2"):
        raise errdefs.InvalidArgument(f"unsupported builder version {version}")
    if version == "2":
        raise errdefs.InvalidArgument(
            "BuildKit is not supported by this daemon: use the legacy builder (version=1)")
    args = _json_query(req, "buildargs", dict)
    labels = _json_query(req, "labels", dict)
    cache_from = _json_query(req, "cachefrom", list)
    for k, v in args.items():
        if v is not None and not isinstance(v, str):
            raise errdefs.InvalidArgument(f"invalid buildargs: value of {k} must be a string")
    hosts: list[str] = []
    for h in q.get_all("extrahosts"):
        hosts.extend(x for x in h.replace(",", " ").split() if x)

    def num(name: str) -> int:
        return q.get_int(name, 0) or 0

    return BuildOptions(
        tags=[t for t in q.get_all("t") if t],
        dockerfile=q.get("dockerfile") or "Dockerfile",
        build_args={str(k): (None if v is None else str(v)) for k, v in args.items()},
        labels={str(k): str(v) for k, v in labels.items()},
        target=q.get("target") or "",
        no_cache=q.get_bool("nocache", False),
        pull=q.get_bool("pull", False),
        quiet=q.get_bool("q", False),
        rm=q.get_bool("rm", True),
        force_rm=q.get_bool("forcerm", False),
        network_mode=q.get("networkmode") or "",
        extra_hosts=hosts,
        cpuset_cpus=q.get("cpusetcpus") or "",
        memory=num("memory"),
        memswap=num("memswap"),
        cpu_shares=num("cpushares"),
        cpu_period=num("cpuperiod"),
        cpu_quota=num("cpuquota"),
        shm_size=num("shmsize"),
        platform=q.get("platform") or "",
        registry_config_json=_registry_config(req),
        cache_from=[str(c) for c in cache_from],
    )


async def _stream(events: AsyncIterator[BuildEvent]) -> AsyncIterator[bytes]:
    yield b""  # headers now: the client keeps sending the context meanwhile
    try:
        async for ev in events:
            yield build_message(ev)
    finally:
        # Close the build here, in the request's task: it cancels the build and cleans up.
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


class BuildRoutes:
    """Handlers translate HTTP to one service call each and raise errdefs on failure."""

    def __init__(self, backends: Backends) -> None:
        self._images = backends.images
        self._containers = backends.containers

    def register(self, r: Router) -> None:
        r.add("POST", "/build", self.post_build)
        r.add("POST", "/build/prune", self.post_build_prune)
        r.add("POST", "/build/cancel", self.post_build_cancel)
        if self._containers is not None:
            r.add("POST", "/commit", self.post_commit)

    async def post_build(self, req: Request) -> Response:
        opts = build_options(req)
        events = self._images.build(opts, req.body())
        return StreamResponse(_stream(events), content_type=JSON_STREAM)

    async def post_build_prune(self, req: Request) -> Response:
        # The classic builder's cache is the intermediate images: image prune removes them.
        return JSONResponse({"CachesDeleted": None, "SpaceReclaimed": 0})

    async def post_build_cancel(self, req: Request) -> Response:
        # Builds end when their client disconnects; there is nothing to cancel by id.
        return JSONResponse({})

    async def post_commit(self, req: Request) -> Response:
        assert self._containers is not None
        q = req.query
        ref = q.get("container") or ""
        if not ref:
            raise errdefs.InvalidArgument("container is required")
        body = await req.json(default=None)
        if body is not None and not isinstance(body, dict):
            raise errdefs.InvalidArgument("invalid JSON: body must be an object")
        commit = CommitRequest(
            repo=q.get("repo") or "",
            tag=q.get("tag") or "",
            comment=q.get("comment") or "",
            author=q.get("author") or "",
            pause=q.get_bool("pause", True),
            changes=[c for c in q.get_all("changes") if c],
            config=body or None,
        )
        image_id = await self._containers.commit_container(ref, commit)
        return JSONResponse({"Id": image_id}, status=201)
