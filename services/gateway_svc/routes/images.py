"""Routes for /images: list, inspect, import, load, save, tag, rmi, history, prune."""

from __future__ import annotations

from pathlib import Path

import errdefs
from dockerapi import filters as dfilters
from gateway_svc import shapes
from gateway_svc.backend import Backends
from gateway_svc.http import EmptyResponse, JSONResponse, Request, Response, StreamResponse
from gateway_svc.router import Router
from gateway_svc.routes._stream import progress_stream
from gateway_svc.routes.registry import pull_response
from images_svc.api import ImportOptions

__all__ = ["ImageRoutes"]

JSON_STREAM = "application/json"
TAR = "application/x-tar"


class ImageRoutes:
    """Handlers translate HTTP to one ImagesAPI call each and raise errdefs on failure."""

    def __init__(self, backends: Backends, data_root: Path) -> None:
        self._images = backends.images
        self._backends = backends
        self._data_root = data_root

    def register(self, r: Router) -> None:
        r.add("GET", "/images/json", self.get_images_json)
        r.add("POST", "/images/create", self.post_images_create)
        r.add("POST", "/images/load", self.post_images_load)
        r.add("GET", "/images/get", self.get_images_get)
        r.add("POST", "/images/prune", self.post_images_prune)
        r.add("GET", "/images/{name:.*}/json", self.get_image_json)
        r.add("GET", "/images/{name:.*}/history", self.get_image_history)
        r.add("GET", "/images/{name:.*}/get", self.get_image_get)
        r.add("POST", "/images/{name:.*}/tag", self.post_image_tag)
        r.add("DELETE", "/images/{name:.*}", self.delete_image)

    async def get_images_json(self, req: Request) -> Response:
        filters = dfilters.parse(req.query.get("filters"))
        legacy = req.query.get("filter")  # API < 1.41: a bare reference pattern
        if legacy:
            filters.setdefault("reference", []).append(legacy)
        recs = await self._images.list_images(filters, all=req.query.get_bool("all", False))
        return JSONResponse([shapes.image_summary(r, req.api_version) for r in recs])

    async def get_image_json(self, req: Request) -> Response:
        rec = await self._images.get_image(req.params["name"])
        return JSONResponse(shapes.image_inspect(rec, req.api_version, self._data_root))

    async def get_image_history(self, req: Request) -> Response:
        return JSONResponse(shapes.history(await self._images.image_history(req.params["name"])))

    async def post_images_create(self, req: Request) -> Response:
        src = req.query.get("fromSrc")
        if req.query.get("fromImage") and not src:
            return await pull_response(self._backends, req)
        if src is None:
            raise errdefs.InvalidArgument("fromImage or fromSrc must be set")
        if src != "-":
            raise errdefs.InvalidArgument(
                f"importing from a URL is not supported: {src!r}; send the tarball in the body"
            )
        plat = (req.query.get("platform") or "").split("/")
        opts = ImportOptions(
            repo=req.query.get("repo") or "",
            tag=req.query.get("tag") or "",
            changes=req.query.get_all("changes"),
            message=req.query.get("message") or "",
            platform_os=plat[0] if plat[0] else "",
            platform_arch=plat[1] if len(plat) > 1 else "",
            platform_variant=plat[2] if len(plat) > 2 else "",
        )
        events = self._images.import_image(opts, req.body())
        return StreamResponse(progress_stream(events), content_type=JSON_STREAM)

    async def post_images_load(self, req: Request) -> Response:
        events = self._images.load_images(req.body(), quiet=req.query.get_bool("quiet", False))
        return StreamResponse(progress_stream(events), content_type=JSON_STREAM)

    async def get_images_get(self, req: Request) -> Response:
        names = req.query.get_all("names")
        if not names:
            raise errdefs.InvalidArgument("no images specified")
        return StreamResponse(self._images.save_images(names), content_type=TAR)

    async def get_image_get(self, req: Request) -> Response:
        return StreamResponse(self._images.save_images([req.params["name"]]), content_type=TAR)

    async def post_image_tag(self, req: Request) -> Response:
        repo = req.query.get("repo") or ""
        if not repo:
            raise errdefs.InvalidArgument("repository name must have at least one component")
        await self._images.tag_image(req.params["name"], repo, req.query.get("tag") or "")
        return EmptyResponse(201)

    async def delete_image(self, req: Request) -> Response:
        items = await self._images.remove_image(
            req.params["name"], force=req.query.get_bool("force", False),
            noprune=req.query.get_bool("noprune", False),
        )
        return JSONResponse(shapes.delete_items(items))

    async def post_images_prune(self, req: Request) -> Response:
        rep = await self._images.prune_images(dfilters.parse(req.query.get("filters")))
        return JSONResponse({"ImagesDeleted": shapes.delete_items(rep.deleted) or None,
                             "SpaceReclaimed": rep.space_reclaimed})
