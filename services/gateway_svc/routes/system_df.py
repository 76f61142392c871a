"""Route for GET /system/df (docker system df): images, containers and volumes with their usage."""

from __future__ import annotations

from typing import Any

import errdefs
from gateway_svc import shapes
from gateway_svc.backend import Backends
from gateway_svc.container_shapes import container_summary
from gateway_svc.http import JSONResponse, Request, Response
from gateway_svc.router import Router
from gateway_svc.routes.volumes import volume_json
from images_svc.model import ImageRecord

__all__ = ["SystemDfRoutes", "layer_usage"]

_TYPES = ("container", "image", "volume", "build-cache")


def layer_usage(images: list[ImageRecord]) -> tuple[int, dict[str, int]]:
    """LayersSize and each image's SharedSize from the image records alone.

    Layers are shared as chain prefixes; a prefix's size is known when some image ends exactly
    there. A shared prefix ending between two such points counts up to the last known one, so
    SharedSize may be under-reported and LayersSize over-reported (never by a whole image).
    """
    known: dict[str, int] = {r.chain_ids[-1]: r.size for r in images if r.chain_ids}
    users: dict[str, int] = {}
    for rec in images:
        for chain in set(rec.chain_ids):
            users[chain] = users.get(chain, 0) + 1
    segments: dict[str, int] = {}  # keyed by the chain id that ends the segment
    shared: dict[str, int] = {}
    for rec in images:
        base = 0
        shared_size = 0
        for i, chain in enumerate(rec.chain_ids):
            size = known.get(chain)
            if size is None and i == len(rec.chain_ids) - 1:
                size = rec.size
            if size is None:
                continue
            segments.setdefault(chain, max(size - base, 0))
            base = size
            if users.get(chain, 0) > 1:
                shared_size = size
        shared[rec.id] = shared_size
    return sum(segments.values()), shared


class SystemDfRoutes:
    """GET /system/df composed from the images, containers and volumes backends."""

    def __init__(self, backends: Backends) -> None:
        assert backends.containers is not None and backends.volumes is not None
        self._images = backends.images
        self._containers = backends.containers
        self._volumes = backends.volumes

    def register(self, r: Router) -> None:
        r.add("GET", "/system/df", self.get_system_df)

    async def get_system_df(self, req: Request) -> Response:
        wanted = set(req.query.get_all("type")) or set(_TYPES)
        for t in wanted:
            if t not in _TYPES:
                raise errdefs.InvalidArgument(f"unknown object type: {t}")
        out: dict[str, Any] = {"LayersSize": 0, "Images": None, "Containers": None,
                               "Volumes": None, "BuildCache": None}
        recs = await self._containers.list_containers(
            all=True, limit=-1, size="container" in wanted, filters={})
        if "image" in wanted:
            # Intermediate images are not listed but their sizes mark where shared prefixes end.
            layers_size, shared = layer_usage(await self._images.list_images({}, all=True))
            images = await self._images.list_images({}, all=False)
            per_image: dict[str, int] = {}
            for c in recs:
                per_image[c.image_id] = per_image.get(c.image_id, 0) + 1
            summaries = []
            for img in images:
                s = shapes.image_summary(img, req.api_version)
                s["Containers"] = per_image.get(img.id, 0)
                s["SharedSize"] = shared.get(img.id, 0)
                summaries.append(s)
            out["LayersSize"] = layers_size
            out["Images"] = summaries
        if "container" in wanted:
            out["Containers"] = [container_summary(c, req.api_version) for c in recs]
        if "volume" in wanted:
            vols = await self._volumes.list_volumes({}, usage=True)
            out["Volumes"] = [volume_json(v) for v in vols]
        if "build-cache" in wanted:
            out["BuildCache"] = []
        return JSONResponse(out)
