"""Route table and API-version middleware of the gateway (moby CreateMux + VersionMiddleware).

Usage::

    router = Router(server_version="0.1.0")   # already answers GET/HEAD /_ping
    router.add("POST", "/containers/{name}/stop", post_containers_stop)

    @router.route("GET", "/images/{name:.*}/json")
    async def get_images_json(req: Request) -> Response: ...

    server = HttpServer(router)                  # takes router.server_version

Every route answers both ``/vX.Y/<path>`` and the unversioned ``/<path>`` (= ``MAX_API``).
``{param}`` matches one path segment; ``{param:<regex>}`` matches the regex, so
``{name:.*}`` takes image names with slashes. Routes without parameters win over
parameterised ones; otherwise the first registered match wins. An unknown path, or a
known path with another method, is 404 ``page not found`` as in moby.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import errdefs
from dockerapi import versions
from dockerapi.versions import MAX_API, MIN_API
from gateway_svc.http import EmptyResponse, Request, Response, TextResponse

__all__ = ["Handler", "Router", "api_at_least", "ping_handler"]

Handler = Callable[[Request], Awaitable[Response]]

_VERSIONED = re.compile(r"^/v([0-9.]+)(/.*)$")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*(?:\{[^{}]*\}[^{}]*)*))?\}")


def _compile(pattern: str) -> re.Pattern[str]:
    if not pattern.startswith("/"):
        raise ValueError(f"route pattern must start with '/': {pattern!r}")
    out: list[str] = []
    pos = 0
    for m in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[pos : m.start()]))
        regex = m.group(2) if m.group(2) is not None else "[^/]+"
        out.append(f"(?P<{m.group(1)}>{regex})")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(out) + "$")


class Router:
    """Dispatch requests to handlers by method and path, enforcing the API version range.

    A Router is an :data:`gateway_svc.http.App`: pass it to ``HttpServer``.

    Args:
        server_version: berth's version; ``HttpServer`` sends it in ``Server``.
        ping: register ``GET``/``HEAD /_ping`` (see :func:`ping_handler`).
        builder_version: ``Builder-Version`` of the ping answer (``1`` = legacy builder).
        swarm: ``Swarm`` of the ping answer.
    """

    def __init__(
        self,
        server_version: str | None = None,
        *,
        ping: bool = True,
        builder_version: str = "1",
        swarm: str = "inactive",
    ) -> None:
        self.server_version = server_version
        self._static: dict[tuple[str, str], Handler] = {}
        self._dynamic: list[tuple[str, str, re.Pattern[str], Handler]] = []
        self._patterns: set[tuple[str, str]] = set()
        if ping:
            handler = ping_handler(builder_version=builder_version, swarm=swarm)
            self.add("GET", "/_ping", handler)
            self.add("HEAD", "/_ping", handler)

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` (``GET``, ``HEAD``, ...) and ``pattern``.

        HEAD is not implied by GET (as in moby); register it explicitly.

        Raises:
            ValueError: the same method and pattern were registered before.
        """
        method = method.upper()
        key = (method, pattern)
        if key in self._patterns:
            raise ValueError(f"route already registered: {method} {pattern}")
        self._patterns.add(key)
        if "{" in pattern:
            self._dynamic.append((method, pattern, _compile(pattern), handler))
        else:
            self._static[key] = handler

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`."""

        def register(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler

        return register

    def include(self, other: Router) -> None:
        """Add every route of ``other`` (one table per resource, merged at startup)."""
        for (method, pattern), handler in other._static.items():
            self.add(method, pattern, handler)
        for method, pattern, _, handler in other._dynamic:
            self.add(method, pattern, handler)

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """Find the handler for an unversioned ``path``; None when nothing matches."""
        method = method.upper()
        handler = self._static.get((method, path))
        if handler is not None:
            return handler, {}
        for route_method, _, regex, route_handler in self._dynamic:
            if route_method != method:
                continue
            m = regex.match(path)
            if m is not None:
                return route_handler, m.groupdict()
        return None

    async def __call__(self, req: Request) -> Response:
        """Route ``req``: strip and check the version prefix, fill ``req.params``, call.

        Raises:
            errdefs.NotFound: ``page not found`` for unknown paths or methods.
            errdefs.InvalidArgument: the ``/vX.Y`` version is outside [MIN_API, MAX_API].
        """
        version: str | None = None
        path = req.path
        m = _VERSIONED.match(path)
        if m is not None:
            version, path = m.group(1), m.group(2)
        found = self.match(req.method, path)
        if found is None:
            raise errdefs.NotFound("page not found")
        if version is not None:
            if versions.compare(version, MIN_API) < 0:
                raise errdefs.InvalidArgument(
                    f"client version {version} is too old. Minimum supported API version is "
                    f"{MIN_API}, please upgrade your client to a newer version"
                )
            if versions.compare(version, MAX_API) > 0:
                raise errdefs.InvalidArgument(
                    f"client version {version} is too new. Maximum supported API version is "
                    f"{MAX_API}"
                )
        handler, params = found
        req.api_version = version or MAX_API
        req.params = params
        return await handler(req)


def api_at_least(req: Request, minimum: str) -> bool:
    """True when the request's API version is >= ``minimum`` (gate for version quirks)."""
    return versions.at_least(req.api_version, minimum)


def ping_handler(
    *, builder_version: str = "1", swarm: str = "inactive"
) -> Handler:
    """Build the ``GET``/``HEAD /_ping`` handler with moby's headers.

    GET answers ``OK`` (text/plain); HEAD answers ``Content-Length: 0``. Both send
    ``Cache-Control``/``Pragma: no-cache``, ``Builder-Version`` and ``Swarm``.
    """
    headers = [
        ("Cache-Control", "no-cache, no-store, must-revalidate"),
        ("Pragma", "no-cache"),
        ("Builder-Version", builder_version),
        ("Swarm", swarm),
    ]

    async def ping(req: Request) -> Response:
        if req.method == "HEAD":
            return EmptyResponse(
                200, headers=[*headers, ("Content-Type", "text/plain; charset=utf-8")]
            )
        return TextResponse("OK", headers=headers)

    return ping
