"""Routes for /_ping, /version and /info."""

from __future__ import annotations

from gateway_svc import shapes
from gateway_svc.backend import Backends
from gateway_svc.http import JSONResponse, Request, Response
from gateway_svc.router import Router

__all__ = ["SystemRoutes"]


class SystemRoutes:
    """System handlers; /_ping itself is answered by the router (never versioned)."""

    def __init__(self, backends: Backends) -> None:
        self._system = backends.system

    def register(self, r: Router) -> None:
        r.add("GET", "/version", self.get_version)
        r.add("GET", "/info", self.get_info)

    async def get_version(self, req: Request) -> Response:
        return JSONResponse(shapes.version(await self._system.version()))

    async def get_info(self, req: Request) -> Response:
        return JSONResponse(shapes.info(await self._system.info(), req.api_version))
