"""Routes for /volumes: list, inspect, create, rm, prune (moby's volume router)."""

from __future__ import annotations

from typing import Any

import errdefs
from dockerapi import filters as dfilters
from dockerapi.versions import at_least
from gateway_svc.backend import Backends
from gateway_svc.http import EmptyResponse, JSONResponse, Request, Response
from gateway_svc.router import Router
from volumes_svc.api import VolumesAPI
from volumes_svc.model import Volume

__all__ = ["VolumeRoutes", "volume_json"]


def volume_json(v: Volume) -> dict[str, Any]:
    """A volume in the swagger ``Volume`` shape: Labels and Options are {} when empty."""
    out: dict[str, Any] = {
        "CreatedAt": v.created,
        "Driver": v.driver,
        "Labels": dict(v.labels),
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": dict(v.options),
        "Scope": "local",
    }
    if v.size >= 0 or v.ref_count >= 0:
        out["UsageData"] = {"Size": v.size, "RefCount": v.ref_count}
    return out


def _str_map(body: dict[str, Any], key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in value.items()):
        raise errdefs.InvalidArgument(
            f"json: cannot unmarshal {key} into Go struct field CreateOptions.{key} of type "
            "map[string]string"
        )
    return value


def _str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise errdefs.InvalidArgument(
            f"json: cannot unmarshal {key} into Go struct field CreateOptions.{key} of type string"
        )
    return value


class VolumeRoutes:
    """Handlers translate HTTP to one VolumesAPI call each and raise errdefs on failure."""

    def __init__(self, backends: Backends) -> None:
        assert backends.volumes is not None
        self._volumes: VolumesAPI = backends.volumes

    def register(self, r: Router) -> None:
        r.add("GET", "/volumes", self.get_volumes)
        r.add("POST", "/volumes/create", self.post_volumes_create)
        r.add("POST", "/volumes/prune", self.post_volumes_prune)
        r.add("GET", "/volumes/{name:.*}", self.get_volume)
        r.add("DELETE", "/volumes/{name:.*}", self.delete_volume)

    async def get_volumes(self, req: Request) -> Response:
        vols = await self._volumes.list_volumes(dfilters.parse(req.query.get("filters")))
        return JSONResponse({"Volumes": [volume_json(v) for v in vols], "Warnings": None})

    async def get_volume(self, req: Request) -> Response:
        return JSONResponse(volume_json(await self._volumes.get_volume(req.params["name"])))

    async def post_volumes_create(self, req: Request) -> Response:
        body = await req.json(default={})
        if not isinstance(body, dict):
            raise errdefs.InvalidArgument(
                "json: cannot unmarshal request body into Go value of type volume.CreateOptions")
        vol = await self._volumes.create_volume(
            _str(body, "Name"), _str(body, "Driver"), _str_map(body, "DriverOpts"),
            _str_map(body, "Labels"),
        )
        return JSONResponse(volume_json(vol), status=201)

    async def delete_volume(self, req: Request) -> Response:
        await self._volumes.remove_volume(req.params["name"], force=req.query.get_bool("force"))
        return EmptyResponse(204)

    async def post_volumes_prune(self, req: Request) -> Response:
        filters = dfilters.parse(req.query.get("filters"))
        # 1.42+: only anonymous volumes unless all=true; older clients meant every unused one.
        if not at_least(req.api_version, "1.42"):
            filters["all"] = ["true"]
        rep = await self._volumes.prune_volumes(filters)
        return JSONResponse({"VolumesDeleted": rep.deleted,
                             "SpaceReclaimed": rep.space_reclaimed})
