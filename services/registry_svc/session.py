"""One repository on one registry over httpx: endpoint fallback, auth challenges, token cache, errors."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import httpcore._async.http11 as _h11
import httpx

import errdefs
from registry_svc.api import AuthConfig
from registry_svc.transport import Endpoint, TransportConfig

__all__ = ["Challenge", "Session", "TokenCache", "error_codes", "parse_challenge", "raise_for_status"]

log = logging.getLogger(__name__)

USER_AGENT = "berth/0.1 (docker-compatible)"
CONNECT_TIMEOUT = 10.0
# A blob read that stalls this long is retried with a Range request.
READ_TIMEOUT = 30.0
# NOTE: httpcore reads HTTP/1.1 bodies 64 KiB at a time; blobs are hundreds of MB and each read
# costs a trip through h11 and the event loop. 1 MiB reads roughly double a single stream's rate.
_h11.AsyncHTTP11Connection.READ_NUM_BYTES = 1 << 20
_PARAM_RE = re.compile(r'([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


@dataclass(frozen=True, slots=True)
class Challenge:
    """A WWW-Authenticate challenge: scheme ("basic"/"bearer") and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> Challenge | None:
    """Parse the first challenge of a WWW-Authenticate header; None if there is none."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), {k: v.replace('\\"', '"') for k, v in params.items()})


@dataclass(slots=True)
class _Token:
    token: str
    expires: float


class TokenCache:
    """Bearer tokens per (realm, service, scopes, user); shared by every pull and push."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str, str], _Token] = {}

    def get(self, key: tuple[str, str, str, str]) -> str | None:
        t = self._tokens.get(key)
        if t is None or t.expires <= time.monotonic():
            self._tokens.pop(key, None)
            return None
        return t.token

    def put(self, key: tuple[str, str, str, str], token: str, ttl: float) -> None:
        self._tokens[key] = _Token(token, time.monotonic() + max(ttl - 5, 1))


def _errors_text(body: bytes) -> str:
    """The registry's {"errors":[{"code","message"}]} as Docker prints them."""
    try:
        doc = json.loads(body)
        parts = []
        for e in doc.get("errors") or []:
            code = str(e.get("code", "")).lower().replace("_", " ")
            msg = str(e.get("message", ""))
            parts.append(f"{code}: {msg}" if code else msg)
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError, TypeError):
        pass
    return ""


def _error_codes(body: bytes) -> set[str]:
    try:
        return {str(e.get("code", "")) for e in json.loads(body).get("errors") or []}
    except (ValueError, AttributeError, TypeError):
        return set()


class Session:
    """Talks to one repository (``host/path``) for one operation.

    Resource handling:
        Use as an async context manager; the HTTP client (and its connections) close on exit.

    Error handling:
        Transport failures are ``errdefs.Unavailable``; 401 ``errdefs.Unauthenticated``;
        403 ``errdefs.PermissionDenied``; 404 ``errdefs.NotFound``; other statuses
        ``errdefs.Unavailable`` with the registry's own error text.
    """

    def __init__(
        self,
        transport: TransportConfig,
        tokens: TokenCache,
        host: str,
        path: str,
        auth: AuthConfig,
        actions: str = "pull",
        extra_scopes: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.path = path
        self._transport = transport
        self._tokens = tokens
        self._auth = auth
        self._scopes = (f"repository:{path}:{actions}", *extra_scopes) if path else extra_scopes
        self._client: httpx.AsyncClient | None = None
        self.endpoint: Endpoint | None = None
        self._challenge: Challenge | None = None
        self._header: str | None = None

    async def __aenter__(self) -> Session:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _new_client(self, ep: Endpoint) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=ep.tls, follow_redirects=False, headers={"User-Agent": USER_AGENT},
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    async def open(self) -> None:
        """Ping ``/v2/`` on each endpoint in turn; keep the first that answers like a registry.

        Raises:
            errdefs.Unavailable: no endpoint answered.
        """
        endpoints = await anyio.to_thread.run_sync(self._transport.endpoints, self.host)
        last = "docker.io is switched off (BERTH_REGISTRY_HUB=0) and no registry mirror is set"
        for ep in endpoints:
            client = self._new_client(ep)
            try:
                resp = await client.get(f"{ep.url}/v2/")
            except httpx.HTTPError as e:
                await client.aclose()
                last = f'Get "{ep.url}/v2/": {_transport_text(e)}'
                log.info("registry endpoint %s: %s", ep.url, last)
                continue
            if resp.status_code not in (200, 401):
                await client.aclose()
                last = (f'Get "{ep.url}/v2/": unexpected status {resp.status_code} '
                        f"{resp.reason_phrase}: this does not look like a registry")
                continue
            self._client, self.endpoint = client, ep
            if resp.status_code == 401:
                self._challenge = parse_challenge(resp.headers.get("www-authenticate", ""))
            return
        raise errdefs.Unavailable(f"error pinging registry {self.host}: {last}")

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise errdefs.Internal("registry session is not open")
        return self._client

    def url(self, suffix: str) -> str:
        """Absolute URL of ``/v2/<path>/<suffix>``."""
        assert self.endpoint is not None
        return f"{self.endpoint.url}/v2/{self.path}/{suffix}"

    def absolute(self, location: str) -> str:
        """Resolve a Location header against the endpoint."""
        assert self.endpoint is not None
        return str(httpx.URL(self.endpoint.url + "/").join(location))

    # -- auth -----------------------------------------------------------------------------

    async def _auth_header(self) -> str | None:
        if self._header is not None:
            return self._header
        ch = self._challenge
        if ch is None:
            return None
        a = self._auth
        if ch.scheme == "basic":
            if not a.username:
                return None
            self._header = "Basic " + base64.b64encode(f"{a.username}:{a.password}".encode()).decode()
        elif ch.scheme == "bearer":
            if a.registry_token:
                self._header = f"Bearer {a.registry_token}"
            else:
                self._header = f"Bearer {await self._fetch_token(ch, self._scopes)}"
        return self._header

    async def _fetch_token(self, ch: Challenge, scopes: tuple[str, ...]) -> str:
        realm = ch.params.get("realm", "")
        service = ch.params.get("service", "")
        if not realm.startswith(("https://", "http://")):
            raise errdefs.Unavailable(f"registry {self.host}: bad token realm {realm!r}")
        key = (realm, service, " ".join(scopes), self._auth.username)
        cached = self._tokens.get(key)
        if cached is not None:
            return cached
        params: list[tuple[str, str | int | float | bool | None]] = (
            [("service", service)] if service else [])
        params += [("scope", s) for s in scopes]
        headers: dict[str, str] = {}
        if self._auth.username:
            # Credentials go to the registry and to the realm it names, nowhere else.
            basic = f"{self._auth.username}:{self._auth.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(basic).decode()
            params.append(("account", self._auth.username))
        try:
            resp = await self.client.get(realm, params=params, headers=headers)
        except httpx.HTTPError as e:
            raise errdefs.Unavailable(f'Get "{realm}": {_transport_text(e)}') from None
        if resp.status_code in (401, 403):
            why = _errors_text(resp.content) or resp.text.strip() or "authentication required"
            raise errdefs.Unauthenticated(f"unauthorized: {why}")
        if resp.status_code != 200:
            raise errdefs.Unavailable(f"token server {realm} answered {resp.status_code}")
        try:
            doc = resp.json()
            token = str(doc.get("token") or doc.get("access_token") or "")
            ttl = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError):
            token, ttl = "", 0
        if not token:
            raise errdefs.Unavailable(f"token server {realm} returned no token")
        self._tokens.put(key, token, ttl)
        return token

    async def check_login(self) -> None:
        """GET /v2/ with the credentials; fine when the registry answers 200.

        Raises:
            errdefs.Unauthenticated: the registry rejected them.
        """
        header = await self._auth_header()
        resp = await self.request("GET", f"{self.endpoint.url}/v2/" if self.endpoint else "",
                                  auth_header=header, ok=())
        if resp.status_code != 200:
            raise errdefs.Unauthenticated(
                f"login attempt to {self.endpoint.url if self.endpoint else ''}/v2/ failed with "
                f"status: {resp.status_code} {resp.reason_phrase}"
            )

    # -- requests -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: Any = None,
        params: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        auth_header: str | None = None,
        what: str = "",
    ) -> httpx.Response:
        """Send a request with auth; raise for statuses outside ``ok`` (empty: never)."""
        h = dict(headers or {})
        auth = auth_header if auth_header is not None else await self._auth_header()
        if auth:
            h["Authorization"] = auth
        try:
            resp = await self.client.request(method, url, headers=h, content=content, params=params)
        except httpx.HTTPError as e:
            raise errdefs.Unavailable(f'{method.capitalize()} "{url}": {_transport_text(e)}') from None
        if ok and resp.status_code not in ok:
            raise_for_status(resp, what or f"{method} {url}")
        return resp

    @asynccontextmanager
    async def stream(
        self, url: str, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """GET ``url`` streaming, following redirects to other hosts without credentials."""
        h = dict(headers or {})
        auth = await self._auth_header()
        if auth:
            h["Authorization"] = auth
        for _ in range(5):
            req = self.client.build_request("GET", url, headers=h)
            resp = await self.client.send(req, stream=True)
            if resp.status_code in (301, 302, 303, 307, 308) and "location" in resp.headers:
                nxt = str(resp.url.join(resp.headers["location"]))
                await resp.aclose()
                if httpx.URL(nxt).host != httpx.URL(url).host:
                    h.pop("Authorization", None)  # never hand credentials to another host
                url = nxt
                continue
            try:
                yield resp
            finally:
                await resp.aclose()
            return
        raise errdefs.Unavailable(f"too many redirects fetching {url}")


def raise_for_status(resp: httpx.Response, what: str) -> None:
    """Raise the errdefs error a registry answer means."""
    body = resp.content if not resp.is_stream_consumed or resp.is_closed else b""
    text = _errors_text(body)
    code = resp.status_code
    detail = text or f"{code} {resp.reason_phrase}"
    if code == 401:
        raise errdefs.Unauthenticated(f"{what}: {detail}")
    if code == 403:
        raise errdefs.PermissionDenied(f"{what}: {detail}")
    if code == 404:
        raise errdefs.NotFound(f"{what}: {detail}")
    raise errdefs.Unavailable(f"{what}: registry answered {detail}")


def error_codes(resp: httpx.Response) -> set[str]:
    """The registry error codes (MANIFEST_UNKNOWN, NAME_UNKNOWN, ...) of a read response."""
    return _error_codes(resp.content)


def _transport_text(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
            return "connect: connection refused"
        cause = cause.__cause__ or cause.__context__
    if isinstance(e, httpx.TimeoutException):
        return f"timeout ({type(e).__name__})"
    return msg
