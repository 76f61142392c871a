"""Swarm, services, nodes, tasks, secrets, configs and plugins: answered as a dockerd outside a swarm.

berth has no swarm mode. Every such endpoint answers at once with the error a dockerd that is not
part of a swarm gives (503, its texts), so clients such as docker-py and the CLI react as they do
there (`docker swarm leave --force` succeeds quietly, listings say "not a swarm manager") and never
wait. `swarm init`/`join` say plainly that berth does not do swarm mode. Plugins: none installed.
"""

from __future__ import annotations

import errdefs
from gateway_svc.http import JSONResponse, Request, Response
from gateway_svc.router import Router

__all__ = ["SwarmRoutes"]

NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
               "to connect this node to swarm and try again.")
NOT_IN_SWARM = "This node is not part of a swarm"
NO_SWARM_MODE = "berth does not support swarm mode: it runs as a standalone engine"

# Resources a manager lists; on a standalone dockerd every call on them is NOT_MANAGER.
_MANAGER_ONLY = ("services", "nodes", "tasks", "secrets", "configs")
_METHODS = ("GET", "POST", "DELETE")


async def _not_manager(req: Request) -> Response:
    raise errdefs.Unavailable(NOT_MANAGER)


async def _not_in_swarm(req: Request) -> Response:
    raise errdefs.Unavailable(NOT_IN_SWARM)


async def _no_swarm_mode(req: Request) -> Response:
    raise errdefs.Unavailable(NO_SWARM_MODE)


async def _no_plugins(req: Request) -> Response:
    return JSONResponse([])


async def _no_such_plugin(req: Request) -> Response:
    raise errdefs.NotFound(f"plugin \"{req.params.get('name', '')}\" not found")


async def _plugin_install(req: Request) -> Response:
    raise errdefs.NotImplemented_("berth does not support engine plugins")


class SwarmRoutes:
    """The non-swarm answers; no backend needed."""

    def register(self, router: Router) -> None:
        router.add("GET", "/swarm", _not_manager)
        router.add("GET", "/swarm/unlockkey", _not_manager)
        router.add("POST", "/swarm/update", _not_manager)
        router.add("POST", "/swarm/unlock", _not_manager)
        router.add("POST", "/swarm/leave", _not_in_swarm)
        router.add("POST", "/swarm/init", _no_swarm_mode)
        router.add("POST", "/swarm/join", _no_swarm_mode)
        for res in _MANAGER_ONLY:
            for method in _METHODS:
                router.add(method, f"/{res}", _not_manager)
                router.add(method, f"/{res}/{{id}}", _not_manager)
            router.add("POST", f"/{res}/create", _not_manager)
            router.add("POST", f"/{res}/{{id}}/update", _not_manager)
        router.add("GET", "/services/{id}/logs", _not_manager)
        router.add("GET", "/tasks/{id}/logs", _not_manager)
        router.add("GET", "/plugins", _no_plugins)
        router.add("GET", "/plugins/privileges", _plugin_install)
        router.add("POST", "/plugins/pull", _plugin_install)
        router.add("POST", "/plugins/create", _plugin_install)
        router.add("GET", "/plugins/{name:.+}/json", _no_such_plugin)
        router.add("DELETE", "/plugins/{name:.+}", _no_such_plugin)
        for action in ("enable", "disable", "upgrade", "push", "set"):
            router.add("POST", f"/plugins/{{name:.+}}/{action}", _no_such_plugin)
