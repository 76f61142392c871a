"""Routes that reach registries: pull (POST /images/create?fromImage=), push, and POST /auth."""

from __future__ import annotations

from collections.abc import AsyncIterator

import errdefs
from gateway_svc.backend import Backends
from gateway_svc.http import JSONResponse, Request, Response, StreamResponse
from gateway_svc.router import Router
from gateway_svc.routes._stream import json_message
from images_svc.api import ProgressEvent
from registry_svc.api import (
    AuthConfig,
    Platform,
    PullOptions,
    PushOptions,
    RegistryAPI,
    decode_registry_auth,
)

__all__ = ["RegistryRoutes", "pull_response"]

JSON_STREAM = "application/json"


async def _lines(events: AsyncIterator[ProgressEvent]) -> AsyncIterator[bytes]:
    # No empty first chunk: a failure before the first line (manifest unknown, pull access
    # denied, registry down) is an HTTP error, as dockerd answers before it flushes.
    async for ev in events:
        yield json_message(ev)


def _platform(value: str | None) -> Platform:
    parts = (value or "").strip().lower().split("/")
    if not parts[0]:
        return Platform()
    if len(parts) > 3 or any(not p for p in parts):
        raise errdefs.InvalidArgument(f"invalid platform {value!r}: expected os[/arch[/variant]]")
    return Platform(parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")


def _registry(backends: Backends) -> RegistryAPI:
    reg = getattr(backends, "registry", None)
    if reg is None:
        raise errdefs.NotImplemented_("pulling and pushing images needs the registry service")
    return reg  # type: ignore[no-any-return]


async def pull_response(backends: Backends, req: Request) -> Response:
    """POST /images/create?fromImage=&tag=&platform= with X-Registry-Auth: the pull stream."""
    registry = _registry(backends)
    image = req.query.get("fromImage") or ""
    tag = req.query.get("tag") or ""
    named = image.rsplit("/", 1)[-1]
    all_tags = not tag and ":" not in named and "@" not in image
    opts = PullOptions(
        ref=image, tag=tag, platform=_platform(req.query.get("platform")),
        auth=decode_registry_auth(req.headers.get("X-Registry-Auth")), all_tags=all_tags,
    )
    return StreamResponse(_lines(registry.pull_image(opts)), content_type=JSON_STREAM)


class RegistryRoutes:
    """Push and login; pull shares POST /images/create with import (see routes.images)."""

    def __init__(self, backends: Backends) -> None:
        self._backends = backends

    def register(self, r: Router) -> None:
        r.add("POST", "/images/{name:.*}/push", self.post_image_push)
        r.add("POST", "/auth", self.post_auth)
        r.add("GET", "/distribution/{name:.+}/json", self.get_distribution)

    async def post_image_push(self, req: Request) -> Response:
        opts = PushOptions(ref=req.params["name"], tag=req.query.get("tag") or "",
                           auth=decode_registry_auth(req.headers.get("X-Registry-Auth")))
        return StreamResponse(_lines(_registry(self._backends).push_image(opts)),
                              content_type=JSON_STREAM)

    async def post_auth(self, req: Request) -> Response:
        body = await req.json_object()
        auth = AuthConfig(
            username=str(body.get("username") or ""), password=str(body.get("password") or ""),
            identity_token=str(body.get("identitytoken") or ""),
            registry_token=str(body.get("registrytoken") or ""),
            server_address=str(body.get("serveraddress") or ""),
        )
        res = await _registry(self._backends).login(auth)
        out: dict[str, str] = {"Status": res.status}
        if res.identity_token:
            out["IdentityToken"] = res.identity_token
        return JSONResponse(out)

    async def get_distribution(self, req: Request) -> Response:
        """dockerd's DistributionInspect: {"Descriptor": {...}, "Platforms": [...]}."""
        info = await _registry(self._backends).inspect_distribution(
            req.params["name"], decode_registry_auth(req.headers.get("X-Registry-Auth")))
        return JSONResponse({
            "Descriptor": {"mediaType": info.media_type, "digest": info.digest, "size": info.size},
            "Platforms": [_platform_json(p) for p in info.platforms],
        })


def _platform_json(p: Platform) -> dict[str, str]:
    """An OCI platform as Go marshals it: variant only when set."""
    out = {"architecture": p.architecture, "os": p.os}
    if p.variant:
        out["variant"] = p.variant
    return out
