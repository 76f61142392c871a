"""Routes for a container's runtime views and knobs: top, stats (stream and one sample), update."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import errdefs
from containers_svc.api import ContainersAPI
from dockerapi.versions import at_least
from gateway_svc.backend import Backends
from gateway_svc.http import JSONResponse, Request, Response, StreamResponse
from gateway_svc.router import Router, api_at_least
from gateway_svc.routes.containers import _aclose

__all__ = ["ContainerRuntimeRoutes", "update_config_from_json"]

_INT_FIELDS = ("CpuShares", "Memory", "NanoCpus", "BlkioWeight", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod",
               "CpuRealtimeRuntime", "MemoryReservation", "MemorySwap", "MemorySwappiness",
               "PidsLimit")  # fmt: skip
_STR_FIELDS = ("CpusetCpus", "CpusetMems", "CgroupParent")


def update_config_from_json(body: Any, api_version: str = "1.50") -> dict[str, Any]:
    """Docker's UpdateConfig body, type-checked, as the dict ContainersAPI.update_container takes.

    Raises:
        errdefs.InvalidArgument: not an object or a field of the wrong type.
    """
    if not isinstance(body, dict):
        raise errdefs.InvalidArgument("invalid JSON: body must be an object")
    out: dict[str, Any] = {}
    for key in _INT_FIELDS:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise errdefs.InvalidArgument(f"invalid JSON: {key} must be an integer")
        out[key] = value
    for key in _STR_FIELDS:
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise errdefs.InvalidArgument(f"invalid JSON: {key} must be a string")
        out[key] = value
    if body.get("OomKillDisable") is not None:
        out["OomKillDisable"] = bool(body["OomKillDisable"])
    if "PidsLimit" in out:
        if not at_least(api_version, "1.40"):
            del out["PidsLimit"]  # moby ignores it before 1.40
        elif out["PidsLimit"] <= 0:
            out["PidsLimit"] = 0  # 0 and negatives mean "unlimited" (moby's router)
    pol = body.get("RestartPolicy")
    if pol is not None:
        if not isinstance(pol, dict):
            raise errdefs.InvalidArgument("invalid JSON: RestartPolicy must be an object")
        count = pol.get("MaximumRetryCount") or 0
        if isinstance(count, bool) or not isinstance(count, int):
            raise errdefs.InvalidArgument("invalid JSON: MaximumRetryCount must be an integer")
        out["RestartPolicy"] = {"Name": str(pol.get("Name") or ""), "MaximumRetryCount": count}
    return out


class ContainerRuntimeRoutes:
    """GET /containers/{name}/top, GET /containers/{name}/stats, POST /containers/{name}/update."""

    def __init__(self, backends: Backends) -> None:
        if backends.containers is None:
            raise ValueError("ContainerRuntimeRoutes needs backends.containers")
        self._containers: ContainersAPI = backends.containers

    def register(self, r: Router) -> None:
        r.add("GET", "/containers/{name}/top", self.get_container_top)
        r.add("GET", "/containers/{name}/stats", self.get_container_stats)
        r.add("POST", "/containers/{name}/update", self.post_container_update)

    async def get_container_top(self, req: Request) -> Response:
        res = await self._containers.top_container(req.params["name"], req.query.get("ps_args") or "")
        return JSONResponse({"Titles": list(res.titles), "Processes": [list(p) for p in res.processes]})

    async def get_container_stats(self, req: Request) -> Response:
        stream = req.query.get_bool("stream", True)
        one_shot = req.query.get_bool("one-shot") if api_at_least(req, "1.41") else False
        if one_shot and stream:
            raise errdefs.InvalidArgument("cannot have stream=true and one-shot=true")
        docs = self._containers.container_stats(req.params["name"], stream, one_shot)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for doc in docs:
                    yield json.dumps(doc, separators=(",", ":")).encode() + b"\n"
            finally:
                await _aclose(docs)

        return StreamResponse(body(), content_type="application/json")

    async def post_container_update(self, req: Request) -> Response:
        update = update_config_from_json(await req.json(), req.api_version)
        warnings = await self._containers.update_container(req.params["name"], update)
        return JSONResponse({"Warnings": list(warnings)})
