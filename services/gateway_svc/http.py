"""HTTP/1.1 server for the Docker Engine API: h11 over anyio byte streams, with hijacking.

One :class:`HttpServer` serves any number of connections; each connection runs requests
one at a time (keep-alive, pipelined requests wait in h11's buffer). An *app* is an async
callable ``Request -> Response``; :class:`gateway_svc.router.Router` is the usual one.

Responses::

    JSONResponse(obj, status=200)          fixed body, Content-Length
    TextResponse / BytesResponse           fixed body
    EmptyResponse(status)                  no body (204, 304, or Content-Length: 0)
    StreamResponse(chunks, content_type)   chunked, one write per chunk
    HijackResponse(callback, content_type) 101 UPGRADED (or 200), then raw bytes both ways

Handlers raise errdefs errors; :func:`gateway_svc.errors.error_response` turns them into
``{"message": ...}`` responses. Request bodies are only ever what was actually read from
the socket: ``Content-Length`` decides framing (h11) and nothing else (CVE-2024-41110).
"""

from __future__ import annotations

import array
import fcntl
import json
import logging
import ssl
import termios
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

import anyio
import anyio.abc
import h11

import errdefs
from dockerapi.versions import MAX_API

__all__ = [
    "DEFAULT_JSON_LIMIT",
    "MAX_HEAD_BYTES",
    "App",
    "BytesResponse",
    "EmptyResponse",
    "Headers",
    "HijackResponse",
    "HijackedStream",
    "HttpServer",
    "JSONResponse",
    "QueryParams",
    "Request",
    "Response",
    "StreamResponse",
    "TextResponse",
]

log = logging.getLogger("berth.gateway.http")

#: Largest request line + headers accepted (h11 ``max_incomplete_event_size``).
MAX_HEAD_BYTES: Final = 1 << 20
#: Default cap for :meth:`Request.json`.
DEFAULT_JSON_LIMIT: Final = 16 << 20
#: A request body a hijack handler left unread is drained up to this much.
_HIJACK_DRAIN_LIMIT: Final = 1 << 20
_RECEIVE_SIZE: Final = 65536
_HEADER_READ_WAIT: Final = 0.1  # seconds a hijack waits for the client to read its header
# After answering a request whose body was not read, keep reading (and dropping) for a
# moment before closing, so the client sees the response rather than a reset.
_LINGER_SECONDS: Final = 1.0
_LINGER_BYTES: Final = 4 << 20

_CLOSE_TIMEOUT: Final = 1.0
_FALSE_WORDS: Final = frozenset({"", "0", "no", "false", "none"})
_GONE = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    ConnectionError,
    ssl.SSLError,
)


class Headers:
    """Read-only, case-insensitive multi-map of request headers (values decoded latin-1)."""

    def __init__(self, raw: Iterable[tuple[bytes | str, bytes | str]]) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in raw:
            n = name.decode("latin-1") if isinstance(name, bytes) else name
            v = value.decode("latin-1") if isinstance(value, bytes) else value
            self._items.append((n.lower(), v))

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of ``name``, or ``default``."""
        key = name.lower()
        for n, v in self._items:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Return every value of ``name`` in arrival order."""
        key = name.lower()
        return [v for n, v in self._items if n == key]

    def items(self) -> list[tuple[str, str]]:
        """Return ``(lowercase name, value)`` pairs."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n == name.lower() for n, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        return (n for n, _ in self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class QueryParams:
    """The query string as a multi-dict (``a=1&a=2``); values are percent- and ``+``-decoded."""

    def __init__(self, raw: str = "") -> None:
        self._items: list[tuple[str, str]] = parse_qsl(raw, keep_blank_values=True)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of ``name``, or ``default`` when absent."""
        for n, v in self._items:
            if n == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Return every value of ``name``."""
        return [v for n, v in self._items if n == name]

    def get_bool(self, name: str, default: bool = False) -> bool:
        """Read a Docker boolean (moby ``httputils.BoolValueOrDefault``).

        Absent gives ``default``; ``""``, ``0``, ``no``, ``false``, ``none`` (any case) are
        false; any other value is true.
        """
        value = self.get(name)
        if value is None:
            return default
        return value.strip().lower() not in _FALSE_WORDS

    def get_int(self, name: str, default: int | None = None) -> int | None:
        """Read an integer; absent or empty gives ``default``.

        Raises:
            errdefs.InvalidArgument: the value is not an integer.
        """
        value = self.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value, 10)
        except ValueError:
            raise errdefs.InvalidArgument(
                f"invalid value for {name}: {value!r} is not an integer"
            ) from None

    def keys(self) -> list[str]:
        """Return the distinct names in first-seen order."""
        return list(dict.fromkeys(n for n, _ in self._items))

    def items(self) -> list[tuple[str, str]]:
        """Return all ``(name, value)`` pairs."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return any(n == name for n, _ in self._items)

    def __repr__(self) -> str:
        return f"QueryParams({self._items!r})"


class Request:
    """One HTTP request as a handler sees it.

    Attributes:
        method: ``GET``, ``POST``, ... (upper case).
        target: the raw request target (``/v1.41/containers/json?all=1``).
        path: the percent-decoded path, including any ``/vX.Y`` prefix.
        query: the query string as :class:`QueryParams`.
        headers: :class:`Headers`.
        http_version: ``"1.1"`` or ``"1.0"``.
        api_version: the API version in effect (set by the router; ``MAX_API`` if unversioned).
        params: path parameters filled in by the router (``{"name": "web"}``).
    """

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        *,
        http_version: str = "1.1",
        body: AsyncIterable[bytes] | None = None,
    ) -> None:
        self.method = method
        self.target = target
        raw_path, _, raw_query = target.partition("?")
        self.path = unquote(raw_path)
        self.query = QueryParams(raw_query)
        self.headers = headers
        self.http_version = http_version
        self.api_version: str = MAX_API
        self.params: dict[str, str] = {}
        self._body_source = body
        self._body_claimed = False
        self._body_done = body is None

    @property
    def body_complete(self) -> bool:
        """True once the whole request body has been read (or there was none)."""
        return self._body_done

    def body(self) -> AsyncIterator[bytes]:
        """Return an async iterator over the body chunks as they arrive.

        Content-Length and chunked bodies both work; the body can be claimed once, and a
        claimed body is left to the handler (or its StreamResponse iterator) to read.

        Raises:
            errdefs.InvalidArgument: the body was already claimed; while iterating, a
                malformed body.
            errdefs.Canceled: while iterating, the client closed the connection mid-body.
        """
        if self._body_claimed:
            raise errdefs.InvalidArgument("request body was already read")
        self._body_claimed = True
        return self._iter_body()

    async def _iter_body(self) -> AsyncGenerator[bytes, None]:
        if self._body_source is None:
            return
        async for chunk in self._body_source:
            yield chunk
        self._body_done = True

    async def read_all(self, limit: int) -> bytes:
        """Read the whole body into memory.

        Raises:
            errdefs.InvalidArgument: more than ``limit`` bytes arrived.
        """
        parts: list[bytes] = []
        size = 0
        async for chunk in self.body():
            size += len(chunk)
            if size > limit:
                raise errdefs.InvalidArgument(
                    f"request body too large: the limit is {limit} bytes"
                )
            parts.append(chunk)
        return b"".join(parts)

    async def json(self, limit: int = DEFAULT_JSON_LIMIT, *, default: Any = ...) -> Any:
        """Read and decode a JSON body.

        Args:
            limit: largest body accepted, in bytes.
            default: returned for an empty body; without it an empty body is an error.

        Raises:
            errdefs.InvalidArgument: empty body (no ``default``), malformed JSON, too large.
        """
        data = await self.read_all(limit)
        if not data.strip():
            if default is not ...:
                return default
            raise errdefs.InvalidArgument("invalid JSON: got EOF while reading request body")
        try:
            return json.loads(data)
        except UnicodeDecodeError:
            raise errdefs.InvalidArgument("invalid JSON: body is not UTF-8") from None
        except json.JSONDecodeError as exc:
            raise errdefs.InvalidArgument(
                f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except RecursionError:
            raise errdefs.InvalidArgument("invalid JSON: nested too deeply") from None

    async def json_object(
        self, limit: int = DEFAULT_JSON_LIMIT, *, default: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Like :meth:`json`, for endpoints whose body must be a JSON object.

        Raises:
            errdefs.InvalidArgument: as :meth:`json`, or the body is not an object.
        """
        body = await self.json(limit, default=... if default is None else default)
        if not isinstance(body, dict):
            raise errdefs.InvalidArgument("invalid JSON: body must be an object")
        return body

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target}>"


class Response:
    """Base of all responses: a status and extra headers (``[(name, value), ...]``)."""

    def __init__(self, status: int = 200, headers: Iterable[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.headers: list[tuple[str, str]] = list(headers or ())


class _FixedResponse(Response):
    """A response whose whole body is known up front."""

    def __init__(
        self,
        body: bytes,
        content_type: str | None,
        status: int,
        headers: Iterable[tuple[str, str]] | None,
    ) -> None:
        super().__init__(status, headers)
        self.body = body
        self.content_type = content_type


class JSONResponse(_FixedResponse):
    """``obj`` encoded as compact JSON plus a newline (as Go's ``json.Encoder`` writes)."""

    def __init__(
        self, obj: Any, status: int = 200, headers: Iterable[tuple[str, str]] | None = None
    ) -> None:
        body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        super().__init__(body, "application/json", status, headers)


class TextResponse(_FixedResponse):
    """A text body, ``text/plain; charset=utf-8`` unless told otherwise."""

    def __init__(
        self,
        text: str,
        status: int = 200,
        content_type: str = "text/plain; charset=utf-8",
        headers: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(text.encode(), content_type, status, headers)


class BytesResponse(_FixedResponse):
    """A bytes body with the given content type."""

    def __init__(
        self,
        body: bytes,
        content_type: str = "application/octet-stream",
        status: int = 200,
        headers: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(body, content_type, status, headers)


class EmptyResponse(_FixedResponse):
    """No body: 204/304 carry no Content-Length, other statuses ``Content-Length: 0``."""

    def __init__(self, status: int = 204, headers: Iterable[tuple[str, str]] | None = None) -> None:
        super().__init__(b"", None, status, headers)


class StreamResponse(Response):
    """A chunked body produced by an async iterator, each chunk sent as soon as it is yielded.

    Headers go out with the first chunk, so an error raised *before* the first yield still
    becomes a normal error response (404, 409, ...). Yield ``b""`` first to send the headers
    at once (``POST /containers/{id}/wait`` must flush them before the container exits).

    Resource handling:
        The iterator is closed (``aclose``) when the response ends, fails or the client
        goes away; a client disconnect is noticed while waiting for the next chunk.

    Error handling:
        An exception after the headers were sent is written in-band with
        :func:`gateway_svc.errors.stream_error_line` when ``error_lines`` is true (default:
        JSON content types); otherwise the connection is cut without the final chunk so
        the client sees a truncated body.
    """

    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        content_type: str = "application/json",
        status: int = 200,
        headers: Iterable[tuple[str, str]] | None = None,
        *,
        error_lines: bool | None = None,
    ) -> None:
        super().__init__(status, headers)
        self.chunks = chunks
        self.content_type = content_type
        if error_lines is None:
            error_lines = content_type.startswith("application/json")
        self.error_lines = error_lines


HijackCallback = Callable[["HijackedStream"], Awaitable[None]]


class HijackResponse(Response):
    """Take over the connection: send the hijack header, then call ``callback(stream)``.

    The header is ``HTTP/1.1 101 UPGRADED`` with ``Connection: Upgrade``/``Upgrade: tcp`` if
    the request carried ``Upgrade``, else ``HTTP/1.1 200 OK``; both carry ``content_type``
    (``application/vnd.docker.raw-stream`` or, 1.42+ without TTY,
    ``application/vnd.docker.multiplexed-stream``). Check every argument and open the
    backend stream *before* returning this: later errors can only be logged.

    Resource handling:
        The server closes the connection when ``callback`` returns or raises.
    """

    def __init__(
        self,
        callback: HijackCallback,
        content_type: str = "application/vnd.docker.raw-stream",
        headers: Iterable[tuple[str, str]] | None = None,
        status_line: str = "",
    ) -> None:
        super().__init__(101, headers)
        self.callback = callback
        self.content_type = content_type
        # Set: this status line and ``headers`` only (a WebSocket's 101 Switching Protocols).
        self.status_line = status_line


class HijackedStream:
    """The raw connection after a hijack, starting with any bytes already buffered.

    ``async for chunk in stream`` yields what the client sends until it half-closes.
    """

    def __init__(
        self, stream: anyio.abc.ByteStream, buffered: bytes = b"", peer_eof: bool = False
    ) -> None:
        self._stream = stream
        self._buffered = buffered
        self._peer_eof = peer_eof
        self._closed = False

    @property
    def raw(self) -> anyio.abc.ByteStream:
        """The underlying anyio stream (for ``extra()`` lookups such as the peer address)."""
        return self._stream

    async def receive(self, max_bytes: int = _RECEIVE_SIZE) -> bytes:
        """Return the next bytes from the client; ``b""`` once it half-closed or went away."""
        if self._buffered:
            data, self._buffered = self._buffered[:max_bytes], self._buffered[max_bytes:]
            return data
        if self._peer_eof or self._closed:
            return b""
        try:
            return await self._stream.receive(max_bytes)
        except _GONE:
            self._peer_eof = True
            return b""

    async def send(self, data: bytes) -> None:
        """Send raw bytes to the client.

        Raises:
            errdefs.Canceled: the client is gone.
        """
        if not data:
            return
        try:
            await self._stream.send(data)
        except _GONE as exc:
            raise errdefs.Canceled(f"client closed the connection: {exc!r}") from None

    async def send_eof(self) -> None:
        """Half-close: ``shutdown(SHUT_WR)`` on unix/TCP sockets; the client reads EOF.

        TLS cannot half-close; there this is a no-op and EOF comes with :meth:`aclose`.
        """
        try:
            await self._stream.send_eof()
        except NotImplementedError:
            log.debug("half-close not supported on %s", type(self._stream).__name__)
        except _GONE:
            pass

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await _close_stream(self._stream)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        data = await self.receive()
        if not data:
            raise StopAsyncIteration
        return data


App = Callable[[Request], Awaitable[Response]]


class _ClientGone(Exception):
    """Raised internally when the peer vanished while we were writing."""


class _Connection:
    """One client connection: the byte stream plus its h11 state machine."""

    def __init__(self, stream: anyio.abc.ByteStream, max_head: int) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
        self.peer_eof = False

    async def fill(self) -> None:
        """Read more bytes from the socket into h11 (``b""`` marks EOF)."""
        if self.peer_eof:
            self.h11.receive_data(b"")
            return
        try:
            data = await self.stream.receive(_RECEIVE_SIZE)
        except _GONE:
            data = b""
        if not data:
            self.peer_eof = True
        self.h11.receive_data(data)

    async def next_event(self) -> Any:
        """Return the next h11 event, reading from the socket as needed (never NEED_DATA)."""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                await self.fill()
                continue
            return event

    def drain_buffered(self) -> bool:
        """Drop request body bytes already received; True once the body is complete.

        Never reads the socket, so it is safe while nobody else is reading.
        """
        if self.h11.their_state is not h11.SEND_BODY:
            # Past EndOfMessage already: never parse (and lose) a pipelined request.
            return self.h11.their_state in (h11.DONE, h11._state.MIGHT_SWITCH_PROTOCOL)
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError:
                return False
            if isinstance(event, h11.EndOfMessage):
                return True
            if not isinstance(event, h11.Data):
                return False  # NEED_DATA: the rest is still on its way

    async def send(self, event: Any) -> None:
        data = self.h11.send(event)
        if data:
            await self.send_raw(data)

    async def send_raw(self, data: bytes) -> None:
        try:
            await self.stream.send(data)
        except _GONE as exc:
            raise _ClientGone(repr(exc)) from None

    async def body_events(self) -> AsyncGenerator[bytes, None]:
        """Yield the current request's body chunks until EndOfMessage."""
        if self.h11.they_are_waiting_for_100_continue:
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))
        while True:
            try:
                event = await self.next_event()
            except h11.RemoteProtocolError as exc:
                if self.peer_eof:
                    raise errdefs.Canceled("client closed the connection mid-body") from None
                raise errdefs.InvalidArgument(f"malformed request body: {exc}") from None
            if isinstance(event, h11.Data):
                if event.data:
                    yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise errdefs.Canceled("client closed the connection mid-body")
            else:  # PAUSED cannot happen before EndOfMessage
                raise errdefs.InvalidArgument(f"unexpected HTTP event {type(event).__name__}")


async def _close_stream(stream: anyio.abc.ByteStream) -> None:
    """Close gracefully (TLS close_notify) but never wait long, even when cancelled."""
    with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True) as scope:
        try:
            await stream.aclose()
        except Exception:
            pass
    if scope.cancelled_caught:
        await anyio.aclose_forcefully(stream)


def _reason(status: int) -> bytes:
    if status == 101:
        return b"UPGRADED"
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


async def _header_read(stream: anyio.abc.ByteStream) -> None:
    """Give the client a moment to read the hijack header before the stream's first bytes.

    docker-py parses the header with a buffered reader, then reads the hijacked stream from the
    raw socket: bytes that arrived together with the header sit in that buffer and are lost.
    dockerd's slower start hides this; here the header's send queue is polled (SIOCOUTQ: on a
    unix socket, bytes the peer has not read) for up to ``_HEADER_READ_WAIT``.
    """
    try:
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    except anyio.TypedAttributeLookupError:
        return
    buf = array.array("i", [0])
    deadline = time.monotonic() + _HEADER_READ_WAIT
    while time.monotonic() < deadline:
        try:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf, True)
        except OSError:
            return
        if buf[0] == 0:
            return
        await anyio.sleep(0.001)


class HttpServer:
    """Serve an :data:`App` over HTTP/1.1 on byte streams; call it with each accepted stream.

    Args:
        app: ``async (Request) -> Response``.
        server_version: berth's version, sent as ``Server: Docker/<version> (linux)``;
            defaults to ``app.server_version`` (a :class:`~gateway_svc.router.Router` has one).
        experimental: value of the ``Docker-Experimental`` header.
        max_head_bytes: largest request line + headers; larger requests get 431.

    Every response carries ``Api-Version``, ``Ostype``, ``Server``, ``Docker-Experimental``
    and ``Date``.
    """

    def __init__(
        self,
        app: App,
        *,
        server_version: str | None = None,
        experimental: bool = False,
        max_head_bytes: int = MAX_HEAD_BYTES,
    ) -> None:
        if server_version is None:
            server_version = str(getattr(app, "server_version", None) or "dev")
        self.app = app
        self.server_version = server_version
        self.experimental = experimental
        self.max_head_bytes = max_head_bytes
        self._static_headers: list[tuple[str, str]] = [
            ("Api-Version", MAX_API),
            ("Docker-Experimental", "true" if experimental else "false"),
            ("Ostype", "linux"),
            ("Server", f"Docker/{server_version} (linux)"),
        ]

    def common_headers(self) -> list[tuple[str, str]]:
        """Headers sent on every response, ``Date`` included."""
        return [*self._static_headers, ("Date", formatdate(usegmt=True))]

    async def __call__(self, stream: anyio.abc.ByteStream) -> None:
        await self.serve_connection(stream)

    async def serve_connection(self, stream: anyio.abc.ByteStream) -> None:
        """Run requests on ``stream`` until the client or the protocol ends it; close it.

        Never raises for client or protocol errors; those are logged at debug level.
        """
        conn = _Connection(stream, self.max_head_bytes)
        hijacked = False
        try:
            while True:
                try:
                    event = await conn.next_event()
                except h11.RemoteProtocolError as exc:
                    await self._send_protocol_error(conn, exc)
                    break
                if isinstance(event, h11.Request):
                    keep_alive, hijacked = await self._handle(conn, event)
                    if hijacked or not keep_alive:
                        break
                    if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
                        conn.h11.start_next_cycle()
                        continue
                    break
                # ConnectionClosed, or anything unexpected: done with this connection.
                break
        except _ClientGone as exc:
            log.debug("client went away: %s", exc)
        except _GONE as exc:
            log.debug("connection error: %r", exc)
        except Exception:
            log.exception("error serving HTTP connection")
        finally:
            if not hijacked:
                await _close_stream(stream)

    async def _send_protocol_error(self, conn: _Connection, exc: h11.RemoteProtocolError) -> None:
        if conn.peer_eof and not conn.h11.trailing_data[0]:
            return  # client closed mid-request: nobody to answer
        status = exc.error_status_hint
        log.debug("bad request (%d): %s", status, exc)
        if conn.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        if status == 431:
            message = f"request header too large: limit is {self.max_head_bytes} bytes"
        else:
            message = f"malformed HTTP request: {exc}"
        body = json.dumps({"message": message}).encode() + b"\n"
        headers = [
            *self.common_headers(),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
        try:
            await conn.send(
                h11.Response(status_code=status, headers=headers, reason=_reason(status))
            )
            await conn.send(h11.Data(data=body))
            await conn.send(h11.EndOfMessage())
        except (h11.LocalProtocolError, _ClientGone) as send_exc:
            log.debug("could not send error response: %s", send_exc)
            return
        await self._linger(conn)

    async def _handle(self, conn: _Connection, event: h11.Request) -> tuple[bool, bool]:
        """Run one request; return ``(keep_alive, hijacked)``."""
        from gateway_svc.errors import error_response  # errors imports this module

        started = time.monotonic()
        req = Request(
            event.method.decode("ascii", "replace").upper(),
            event.target.decode("latin-1"),
            Headers(event.headers),
            http_version=event.http_version.decode("ascii", "replace"),
            body=conn.body_events(),
        )
        resp: Response
        try:
            resp = await self.app(req)
        except Exception as exc:
            resp = error_response(exc)
        # A body nobody claimed (GET, or a handler that ignores it) is dropped here, so
        # that its EndOfMessage is consumed and the connection can be reused.
        if not req._body_claimed or not isinstance(resp, (StreamResponse, HijackResponse)):
            self._drain_buffered(conn, req)
        if conn.peer_eof and not req.body_complete:
            log.debug("%s %s: client went away", req.method, req.path)
            return False, False

        if isinstance(resp, HijackResponse):
            try:
                await self._drain_body(conn, req)
            except errdefs.EngineError as exc:
                resp = error_response(exc)
            else:
                await self._hijack(conn, req, resp)
                return False, True

        if isinstance(resp, StreamResponse):
            keep = await self._send_stream(conn, req, resp)
        elif isinstance(resp, _FixedResponse):
            keep = await self._send_fixed(conn, req, resp)
        else:
            keep = await self._send_fixed(
                conn, req, error_response(TypeError(f"handler returned {type(resp).__name__}"))
            )
        log.debug(
            "%s %s -> %d (%.1f ms)", req.method, req.path, resp.status,
            (time.monotonic() - started) * 1000,
        )
        self._drain_buffered(conn, req)
        if keep and not req.body_complete:
            keep = False
        if not keep:
            await self._linger(conn)
        return keep, False

    @staticmethod
    def _drain_buffered(conn: _Connection, req: Request) -> None:
        if not req.body_complete and conn.drain_buffered():
            req._body_done = True

    def _headers_for(
        self, req: Request, resp: Response, content_type: str | None, *, may_finish: bool
    ) -> list[tuple[str, str]]:
        headers = self.common_headers()
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        headers.extend(resp.headers)
        if not req.body_complete and not may_finish:
            # Unread body bytes cannot start the next request: this connection ends here.
            headers.append(("Connection", "close"))
        return headers

    async def _send_fixed(self, conn: _Connection, req: Request, resp: _FixedResponse) -> bool:
        headers = self._headers_for(req, resp, resp.content_type, may_finish=False)
        if resp.status >= 200 and resp.status not in (204, 304):
            headers.append(("Content-Length", str(len(resp.body))))
        await conn.send(
            h11.Response(status_code=resp.status, headers=headers, reason=_reason(resp.status))
        )
        if resp.body and req.method != "HEAD" and resp.status not in (204, 304):
            await conn.send(h11.Data(data=resp.body))
        await conn.send(h11.EndOfMessage())
        return conn.h11.our_state is h11.DONE

    async def _send_stream(self, conn: _Connection, req: Request, resp: StreamResponse) -> bool:
        from gateway_svc.errors import error_response, stream_error_line

        iterator = aiter(resp.chunks)
        headers_sent = False
        client_gone = False

        async def send_headers() -> None:
            nonlocal headers_sent
            # A claimed body may still be read by the iterator after the headers are out.
            headers = self._headers_for(req, resp, resp.content_type,
                                        may_finish=req._body_claimed)
            await conn.send(
                h11.Response(status_code=resp.status, headers=headers, reason=_reason(resp.status))
            )
            headers_sent = True

        async def watch_disconnect(scope: anyio.CancelScope) -> None:
            # Only reads once the request body is complete; extra bytes are pipelined
            # requests and stay buffered in h11 for the next cycle.
            nonlocal client_gone
            buffered = 0
            while buffered < MAX_HEAD_BYTES:
                before = len(conn.h11.trailing_data[0])
                await conn.fill()
                if conn.peer_eof:
                    client_gone = True
                    scope.cancel()
                    return
                buffered += len(conn.h11.trailing_data[0]) - before
            await anyio.sleep_forever()

        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                if req.body_complete and not conn.peer_eof:
                    tg.start_soon(watch_disconnect, tg.cancel_scope)
                # Nothing may escape this block: anyio would wrap it in an ExceptionGroup.
                try:
                    if req.method != "HEAD":
                        async for chunk in iterator:
                            if not headers_sent:
                                await send_headers()
                            if chunk:
                                await conn.send(h11.Data(data=chunk))
                    if not headers_sent:
                        await send_headers()
                    await conn.send(h11.EndOfMessage())
                except _ClientGone:
                    client_gone = True
                except Exception as exc:
                    failure = exc
                tg.cancel_scope.cancel()
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await aclose()
                    except Exception:
                        log.debug("error closing response iterator", exc_info=True)
        if failure is not None and not client_gone:
            if not headers_sent:
                return await self._send_fixed(conn, req, error_response(failure))
            if resp.error_lines and conn.h11.our_state is h11.SEND_BODY:
                await conn.send(h11.Data(data=stream_error_line(failure)))
                await conn.send(h11.EndOfMessage())
            else:
                log.warning("%s %s: stream failed: %s", req.method, req.path, failure)
                return False
        if client_gone:
            log.debug("%s %s: client went away mid-response", req.method, req.path)
            return False
        return conn.h11.our_state is h11.DONE

    async def _drain_body(self, conn: _Connection, req: Request) -> None:
        """Read and drop whatever body the hijack handler left unread.

        Raises:
            errdefs.InvalidArgument: more than ``_HIJACK_DRAIN_LIMIT`` bytes were left.
        """
        self._drain_buffered(conn, req)
        if req.body_complete:
            return
        dropped = 0
        async for chunk in conn.body_events():
            dropped += len(chunk)
            if dropped > _HIJACK_DRAIN_LIMIT:
                raise errdefs.InvalidArgument("request body too large for a hijacked stream")
        req._body_done = True

    async def _hijack(self, conn: _Connection, req: Request, resp: HijackResponse) -> None:
        if resp.status_line:
            lines = [resp.status_line]
        elif "upgrade" in req.headers:
            lines = [
                "HTTP/1.1 101 UPGRADED",
                f"Content-Type: {resp.content_type}",
                "Connection: Upgrade",
                "Upgrade: tcp",
            ]
        else:
            lines = ["HTTP/1.1 200 OK", f"Content-Type: {resp.content_type}"]
        lines += [f"{n}: {v}" for n, v in (*self.common_headers(), *resp.headers)]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        buffered, closed = conn.h11.trailing_data
        stream = HijackedStream(conn.stream, bytes(buffered), peer_eof=closed or conn.peer_eof)
        try:
            await conn.send_raw(head)
            await _header_read(conn.stream)
            log.debug("%s %s -> hijacked (%s)", req.method, req.path, resp.content_type)
            await resp.callback(stream)
        except (_ClientGone, errdefs.Canceled) as exc:
            log.debug("%s %s: hijacked client went away: %s", req.method, req.path, exc)
        except Exception:
            log.exception("%s %s: error in hijacked stream", req.method, req.path)
        finally:
            await stream.aclose()

    async def _linger(self, conn: _Connection) -> None:
        """Half-close and drain briefly, so unread request bytes do not turn into a reset."""
        if conn.peer_eof:
            return
        try:
            await conn.stream.send_eof()
        except (NotImplementedError, *_GONE):
            return
        dropped = 0
        with anyio.move_on_after(_LINGER_SECONDS):
            while dropped < _LINGER_BYTES:
                try:
                    data = await conn.stream.receive(_RECEIVE_SIZE)
                except _GONE:
                    return
                dropped += len(data)
