"""HttpServer + Router over a real unix socket: headers, versions, bodies, streams, hijack."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import h11
import pytest

import errdefs
from gateway_svc.http import (
    EmptyResponse,
    HijackedStream,
    HijackResponse,
    JSONResponse,
    Request,
    Response,
    StreamResponse,
    TextResponse,
)
from gateway_svc.router import Router

from .client import connect, fetch, read_until_eof
from .conftest import SERVER_VERSION, ServeFn

pytestmark = pytest.mark.anyio


class Calls:
    """What the test handlers saw."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.stream_closed = anyio.Event()
        self.go_on = anyio.Event()


def make_app(calls: Calls) -> Router:
    r = Router(server_version=SERVER_VERSION)

    async def echo_version(req: Request) -> Response:
        return JSONResponse({"v": req.api_version, "path": req.path})

    async def stop(req: Request) -> Response:
        return JSONResponse({"name": req.params["name"], "t": req.query.get_int("t")})

    async def image_json(req: Request) -> Response:
        return JSONResponse({"name": req.params["name"]})

    async def image_delete(req: Request) -> Response:
        return JSONResponse({"deleted": req.params["name"],
                             "force": req.query.get_bool("force")})

    async def create(req: Request) -> Response:
        doc = await req.json()
        return JSONResponse({"got": doc}, status=201)

    async def body_info(req: Request) -> Response:
        data = await req.read_all(1 << 20)
        calls.bodies.append(data)
        return JSONResponse({"len": len(data), "sha256": hashlib.sha256(data).hexdigest()})

    async def small(req: Request) -> Response:
        await req.read_all(10)
        return EmptyResponse(204)

    async def boom(req: Request) -> Response:
        raise RuntimeError("boom")

    async def not_modified(req: Request) -> Response:
        raise errdefs.NotModified("container already started")

    async def conflict(req: Request) -> Response:
        raise errdefs.Conflict("conflict: unable to remove repository reference")

    async def slow_stream(req: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            try:
                yield b'{"status":"one"}\n'
                await calls.go_on.wait()
                yield b'{"status":"two"}\n'
            finally:
                calls.stream_closed.set()

        return StreamResponse(gen())

    async def endless_stream(req: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            try:
                yield b""  # flush headers now
                await anyio.sleep_forever()
                yield b"never"
            finally:
                calls.stream_closed.set()

        return StreamResponse(gen())

    async def failing_stream(req: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            yield b'{"status":"pulling"}\n'
            raise errdefs.NotFound("manifest unknown")

        return StreamResponse(gen())

    async def early_error_stream(req: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            raise errdefs.NotFound("No such image: nope")
            yield b""  # pragma: no cover

        return StreamResponse(gen(), content_type="application/x-tar")

    async def hijack(req: Request) -> Response:
        async def pump(stream: HijackedStream) -> None:
            got = b""
            async for chunk in stream:
                got += chunk
            await stream.send(b"echo:" + got)
            await stream.send_eof()

        return HijackResponse(pump, "application/vnd.docker.raw-stream")

    r.add("GET", "/echo", echo_version)
    r.add("POST", "/containers/{name}/stop", stop)
    r.add("GET", "/images/json", echo_version)
    r.add("GET", "/images/{name:.*}/json", image_json)
    r.add("DELETE", "/images/{name:.*}", image_delete)
    r.add("POST", "/containers/create", create)
    r.add("POST", "/body", body_info)
    r.add("POST", "/small", small)
    r.add("GET", "/boom", boom)
    r.add("POST", "/start", not_modified)
    r.add("GET", "/conflict", conflict)
    r.add("GET", "/stream", slow_stream)
    r.add("GET", "/endless", endless_stream)
    r.add("GET", "/failing", failing_stream)
    r.add("GET", "/early", early_error_stream)
    r.add("POST", "/hijack", hijack)
    return r


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def api(serving: ServeFn, calls: Calls) -> AsyncIterator[Path]:
    async with serving(make_app(calls)) as path:
        yield path


def assert_docker_headers(headers: dict[str, str]) -> None:
    assert headers["api-version"] == "1.50"
    assert headers["ostype"] == "linux"
    assert headers["server"] == f"Docker/{SERVER_VERSION} (linux)"
    assert headers["docker-experimental"] == "false"
    assert headers["date"].endswith(" GMT")


async def test_ping_get(api: Path) -> None:
    r = await fetch(api, "GET", "/_ping")
    assert r.status == 200
    assert r.body == b"OK"
    assert_docker_headers(r.headers)
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["builder-version"] == "1"
    assert r.headers["swarm"] == "inactive"
    assert r.headers["cache-control"] == "no-cache, no-store, must-revalidate"
    assert r.headers["pragma"] == "no-cache"


async def test_ping_head_then_keepalive(api: Path) -> None:
    async with connect(api) as c:
        await c.request("HEAD", "/_ping")
        r = await c.reply()
        assert r.status == 200
        assert r.body == b""
        assert r.headers["content-length"] == "0"
        assert_docker_headers(r.headers)
        # Same connection still usable: the HEAD reply carried no stray body.
        await c.request("GET", "/v1.41/_ping")
        r2 = await c.reply()
        assert (r2.status, r2.body) == (200, b"OK")


async def test_version_prefix(api: Path) -> None:
    r = await fetch(api, "GET", "/v1.41/echo")
    assert json.loads(r.body) == {"v": "1.41", "path": "/v1.41/echo"}
    r = await fetch(api, "GET", "/echo")
    assert json.loads(r.body)["v"] == "1.50"
    r = await fetch(api, "GET", "/v1.24/echo")
    assert json.loads(r.body)["v"] == "1.24"


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("1.51", "client version 1.51 is too new. Maximum supported API version is 1.50"),
        ("1.23", "client version 1.23 is too old. Minimum supported API version is 1.24, "
                 "please upgrade your client to a newer version"),
        ("2.0", "client version 2.0 is too new. Maximum supported API version is 1.50"),
    ],
)
async def test_version_out_of_range(api: Path, version: str, message: str) -> None:
    r = await fetch(api, "GET", f"/v{version}/_ping")
    assert r.status == 400
    assert r.headers["content-type"] == "application/json"
    assert json.loads(r.body) == {"message": message}
    assert_docker_headers(r.headers)


async def test_unknown_path_and_method(api: Path) -> None:
    for method, target in [("GET", "/nope"), ("GET", "/v1.41/nope"), ("POST", "/echo"),
                           ("GET", "/v1.x/echo"), ("GET", "/echo/")]:
        r = await fetch(api, method, target)
        assert r.status == 404, target
        assert json.loads(r.body) == {"message": "page not found"}


async def test_path_params(api: Path) -> None:
    r = await fetch(api, "POST", "/v1.41/containers/web/stop?t=5")
    assert json.loads(r.body) == {"name": "web", "t": 5}
    r = await fetch(api, "GET", "/images/registry:5000/library/debian:latest/json")
    assert json.loads(r.body) == {"name": "registry:5000/library/debian:latest"}
    # Static route wins over the greedy one; percent-encoding is decoded.
    r = await fetch(api, "GET", "/images/json")
    assert json.loads(r.body)["v"] == "1.50"
    r = await fetch(api, "GET", "/images/my%2Fimage/json")
    assert json.loads(r.body) == {"name": "my/image"}
    r = await fetch(api, "DELETE", "/v1.41/images/a/b:c?force=1")
    assert json.loads(r.body) == {"deleted": "a/b:c", "force": True}
    r = await fetch(api, "POST", "/containers/web/stop?t=x")
    assert r.status == 400


async def test_json_body(api: Path) -> None:
    r = await fetch(api, "POST", "/containers/create", [("Content-Type", "application/json")],
                    b'{"Image":"debian"}')
    assert r.status == 201
    assert json.loads(r.body) == {"got": {"Image": "debian"}}


@pytest.mark.parametrize("body", [b'{"Image":', b"not json", b"\xff\xfe", b""])
async def test_malformed_json_is_400(api: Path, body: bytes) -> None:
    r = await fetch(api, "POST", "/containers/create", [("Content-Type", "application/json")],
                    body)
    assert r.status == 400
    assert r.headers["content-type"] == "application/json"
    assert json.loads(r.body)["message"].startswith("invalid JSON")


async def test_body_over_limit(api: Path) -> None:
    r = await fetch(api, "POST", "/small", body=b"x" * 11)
    assert r.status == 400
    assert "too large" in json.loads(r.body)["message"]


async def test_chunked_request_body(api: Path, calls: Calls) -> None:
    parts = [b"a" * 1000, b"b" * 70000, b"c"]
    async with connect(api) as c:
        req = h11.Request(method="POST", target="/v1.50/body",
                          headers=[("Host", "docker"), ("Transfer-Encoding", "chunked")])
        await c.send_raw(c.conn.send(req) or b"")
        for p in parts:
            data = c.conn.send(h11.Data(data=p)) or b""
            assert data.startswith(b"%x\r\n" % len(p))  # really chunked on the wire
            await c.send_raw(data)
            await anyio.sleep(0.01)
        await c.send_raw(c.conn.send(h11.EndOfMessage()) or b"")
        r = await c.reply()
    whole = b"".join(parts)
    assert r.status == 200
    assert json.loads(r.body) == {"len": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}
    assert calls.bodies == [whole]


async def test_content_length_zero_extra_bytes_never_body(api: Path, calls: Calls) -> None:
    async with connect(api) as c:
        await c.send_raw(b"POST /body HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n"
                         b'{"Privileged": true}\r\n\r\n')
        with anyio.fail_after(5):
            data = await read_until_eof(c.stream)
    assert calls.bodies == [b""]
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b'{"len":0,' in data
    # The trailing bytes were parsed as a (bad) next request, never as this body.
    assert b"HTTP/1.1 400 " in data


async def test_keepalive_and_pipelining(api: Path) -> None:
    async with connect(api) as c:
        await c.request("GET", "/v1.41/echo")
        assert json.loads((await c.reply()).body)["v"] == "1.41"
        await c.request("GET", "/v1.45/echo")
        assert json.loads((await c.reply()).body)["v"] == "1.45"
    async with connect(api) as c:
        # Two requests in one write: answered in order.
        await c.send_raw(b"GET /v1.30/echo HTTP/1.1\r\nHost: d\r\n\r\n"
                         b"GET /v1.31/echo HTTP/1.1\r\nHost: d\r\n\r\n")
        data = b""
        with anyio.fail_after(5):
            while data.count(b'"v":') < 2:
                data += await c.stream.receive()
        assert data.index(b'"v":"1.30"') < data.index(b'"v":"1.31"')


async def test_oversized_headers_rejected(api: Path) -> None:
    async with connect(api) as c:
        await c.send_raw(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nX-Big: " + b"a" * (1 << 20))
        await c.send_raw(b"b" * 65536 + b"\r\n\r\n")
        data = await read_until_eof(c.stream)
    assert data.startswith(b"HTTP/1.1 431 ")
    assert b"request header too large" in data


async def test_errors_map_through_errdefs(api: Path) -> None:
    r = await fetch(api, "GET", "/boom")
    assert r.status == 500
    assert json.loads(r.body) == {"message": "internal error: boom"}
    r = await fetch(api, "POST", "/start")
    assert r.status == 304
    assert r.body == b""
    assert_docker_headers(r.headers)
    r = await fetch(api, "GET", "/conflict")
    assert r.status == 409
    assert json.loads(r.body)["message"].startswith("conflict:")


async def test_stream_is_flushed_per_chunk(api: Path, calls: Calls) -> None:
    async with connect(api) as c:
        await c.request("GET", "/stream")
        with anyio.fail_after(5):
            head = await c.response_head()
            assert head.status_code == 200
            hdrs = {k.lower(): v for k, v in head.headers}
            assert hdrs[b"transfer-encoding"] == b"chunked"
            assert hdrs[b"content-type"] == b"application/json"
            # The second chunk is only produced after we saw the first one.
            assert await c.next_chunk() == b'{"status":"one"}\n'
            calls.go_on.set()
            assert await c.next_chunk() == b'{"status":"two"}\n'
            assert await c.next_chunk() is None
            await calls.stream_closed.wait()


async def test_client_disconnect_stops_stream(api: Path, calls: Calls) -> None:
    with anyio.fail_after(5):
        async with connect(api) as c:
            await c.request("GET", "/endless")
            head = await c.response_head()
            assert head.status_code == 200
        await calls.stream_closed.wait()


async def test_stream_error_in_band(api: Path) -> None:
    r = await fetch(api, "GET", "/failing")
    assert r.status == 200
    lines = r.body.splitlines()
    assert json.loads(lines[0]) == {"status": "pulling"}
    assert json.loads(lines[1]) == {"errorDetail": {"message": "manifest unknown"},
                                    "error": "manifest unknown"}


async def test_stream_error_before_first_chunk_is_http_error(api: Path) -> None:
    r = await fetch(api, "GET", "/early")
    assert r.status == 404
    assert json.loads(r.body) == {"message": "No such image: nope"}


async def _read_head(stream: anyio.abc.ByteStream) -> tuple[bytes, bytes]:
    data = b""
    with anyio.fail_after(5):
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


async def test_hijack_upgrade_bidirectional_half_close(api: Path) -> None:
    stream = await anyio.connect_unix(api)
    async with stream:
        # Raw bytes right behind the request must reach the callback too.
        await stream.send(b"POST /v1.41/hijack?stream=1 HTTP/1.1\r\nHost: docker\r\n"
                          b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
                          b"early-")
        head, rest = await _read_head(stream)
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 101 UPGRADED"
        assert lines[1:4] == [b"Content-Type: application/vnd.docker.raw-stream",
                              b"Connection: Upgrade", b"Upgrade: tcp"]
        assert b"Api-Version: 1.50" in lines
        await stream.send(b"hello ")
        await anyio.sleep(0.05)
        await stream.send(b"world")
        await stream.send_eof()  # shutdown(SHUT_WR): the server sees EOF, we still read
        with anyio.fail_after(5):
            out = rest + await read_until_eof(stream)
    assert out == b"echo:early-hello world"


async def test_hijack_without_upgrade_is_200(api: Path) -> None:
    stream = await anyio.connect_unix(api)
    async with stream:
        await stream.send(b"POST /hijack HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n")
        head, rest = await _read_head(stream)
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK"
        assert lines[1] == b"Content-Type: application/vnd.docker.raw-stream"
        assert not any(line.lower().startswith(b"transfer-encoding") for line in lines)
        assert not any(line.lower().startswith(b"content-length") for line in lines)
        await stream.send(b"raw")
        await stream.send_eof()
        with anyio.fail_after(5):
            out = rest + await read_until_eof(stream)
    assert out == b"echo:raw"


async def test_hijack_after_json_body(serving: ServeFn) -> None:
    # exec start: a JSON body precedes the hijack; it must not leak into the raw stream.
    r = Router()

    async def exec_start(req: Request) -> Response:
        opts = await req.json()

        async def pump(stream: HijackedStream) -> None:
            await stream.send(json.dumps(opts).encode() + b"|" + await stream.receive())

        return HijackResponse(pump, "application/vnd.docker.multiplexed-stream")

    r.add("POST", "/exec/{id}/start", exec_start)
    async with serving(r) as path:
        stream = await anyio.connect_unix(path)
        async with stream:
            body = b'{"Detach":false,"Tty":true}'
            await stream.send(b"POST /exec/abc/start HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\n"
                              b"Upgrade: tcp\r\nContent-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n%sstdin" % (len(body), body))
            head, rest = await _read_head(stream)
            assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
            assert b"Content-Type: application/vnd.docker.multiplexed-stream" in head
            with anyio.fail_after(5):
                out = rest + await read_until_eof(stream)
    assert out == b'{"Detach": false, "Tty": true}|stdin'


async def test_handler_text_response_and_query(serving: ServeFn) -> None:
    r = Router(ping=False)

    async def q(req: Request) -> Response:
        qs = req.query
        return TextResponse(
            f"{qs.get_all('a')}|{qs.get_bool('t')}|{qs.get_bool('f', True)}|"
            f"{qs.get_bool('missing', True)}|{qs.get('sp')}"
        )

    r.add("GET", "/q", q)
    async with serving(r) as path:
        resp = await fetch(path, "GET", "/q?a=1&a=2&t=True&f=&sp=a+b%2Fc")
        assert resp.body == b"['1', '2']|True|False|True|a b/c"
        assert (await fetch(path, "GET", "/_ping")).status == 404
