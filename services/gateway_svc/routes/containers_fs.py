"""Routes for a container's files: docker diff (changes), docker export, docker cp (archive)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import errdefs
from containers_svc.api import ContainersAPI, PathStat
from gateway_svc.backend import Backends
from gateway_svc.http import EmptyResponse, JSONResponse, Request, Response, StreamResponse
from gateway_svc.router import Router

__all__ = ["ContainerFSRoutes", "path_stat_header"]

TAR = "application/x-tar"
STAT_HEADER = "X-Docker-Container-Path-Stat"


def path_stat_header(stat: PathStat) -> str:
    """moby's setContainerPathStatHeader: base64 (standard, padded) of the stat JSON."""
    doc = {"name": stat.name, "size": stat.size, "mode": stat.mode, "mtime": stat.mtime,
           "linkTarget": stat.link_target}  # fmt: skip
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.b64encode(raw).decode("ascii")


def _path(req: Request) -> str:
    return req.query.get("path") or ""  # the containers service refuses an empty one


class ContainerFSRoutes:
    """Handlers translate HTTP to one ContainersAPI call each and raise errdefs on failure."""

    def __init__(self, backends: Backends) -> None:
        if backends.containers is None:
            raise ValueError("ContainerFSRoutes needs backends.containers")
        self._containers: ContainersAPI = backends.containers

    def register(self, r: Router) -> None:
        r.add("GET", "/containers/{name}/changes", self.get_container_changes)
        r.add("GET", "/containers/{name}/export", self.get_container_export)
        r.add("HEAD", "/containers/{name}/archive", self.head_container_archive)
        r.add("GET", "/containers/{name}/archive", self.get_container_archive)
        r.add("PUT", "/containers/{name}/archive", self.put_container_archive)

    async def get_container_changes(self, req: Request) -> Response:
        changes = await self._containers.container_changes(req.params["name"])
        # moby encodes an empty diff as null (a nil slice).
        return JSONResponse([{"Path": c.path, "Kind": int(c.kind)} for c in changes] or None)

    async def get_container_export(self, req: Request) -> Response:
        return StreamResponse(self._containers.export_container(req.params["name"]),
                              content_type=TAR, error_lines=False)  # fmt: skip

    async def head_container_archive(self, req: Request) -> Response:
        stat = await self._containers.stat_archive(req.params["name"], _path(req))
        return EmptyResponse(200, headers=[(STAT_HEADER, path_stat_header(stat))])

    async def get_container_archive(self, req: Request) -> Response:
        items = self._containers.get_archive(req.params["name"], _path(req))
        try:
            first = await anext(aiter(items))
        except BaseException:
            await _aclose(items)
            raise
        if not isinstance(first, PathStat):
            await _aclose(items)
            raise errdefs.Internal("archive stream did not start with the path's stat")

        async def body() -> AsyncIterator[bytes]:
            try:
                async for item in items:
                    if isinstance(item, bytes):
                        yield item
            finally:
                await _aclose(items)

        return StreamResponse(body(), content_type=TAR, error_lines=False,
                              headers=[(STAT_HEADER, path_stat_header(first))])  # fmt: skip

    async def put_container_archive(self, req: Request) -> Response:
        q = req.query
        await self._containers.put_archive(
            req.params["name"], _path(req), req.body(),
            no_overwrite_dir_non_dir=q.get_bool("noOverwriteDirNonDir"),
            copy_uid_gid=q.get_bool("copyUIDGID"),
        )  # fmt: skip
        return EmptyResponse(200)


async def _aclose(it: object) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()
