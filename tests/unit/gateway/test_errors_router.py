"""errors.py mapping, Router matching and Request helpers, without sockets."""

from __future__ import annotations

import json

import pytest

import errdefs
from gateway_svc.errors import error_response, http_status, stream_error_line
from gateway_svc.http import EmptyResponse, Headers, JSONResponse, QueryParams, Request, Response
from gateway_svc.router import Router, api_at_least


@pytest.mark.parametrize(
    ("exc", "status"),
    [(errdefs.InvalidArgument("x"), 400), (errdefs.NotFound("x"), 404),
     (errdefs.AlreadyExists("x"), 409), (errdefs.Conflict("x"), 409),
     (errdefs.NotModified("x"), 304), (errdefs.Unauthenticated("x"), 401),
     (errdefs.PermissionDenied("x"), 403), (errdefs.Unavailable("x"), 503),
     (errdefs.NotImplemented_("x"), 501), (errdefs.Internal("x"), 500),
     (ValueError("x"), 500)],
)
def test_http_status(exc: Exception, status: int) -> None:
    assert http_status(exc) == status


def test_error_response_bodies() -> None:
    r = error_response(errdefs.NotFound("No such container: web"))
    assert isinstance(r, JSONResponse)
    assert (r.status, r.content_type) == (404, "application/json")
    assert json.loads(r.body) == {"message": "No such container: web"}
    r304 = error_response(errdefs.NotModified("already started"))
    assert isinstance(r304, EmptyResponse) and r304.status == 304 and r304.body == b""
    r500 = error_response(KeyError("boom"))
    assert json.loads(r500.body) == {"message": "internal error: 'boom'"}


def test_stream_error_line() -> None:
    line = stream_error_line(errdefs.NotFound("manifest unknown"))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"errorDetail": {"message": "manifest unknown"},
                                "error": "manifest unknown"}


async def _h(req: Request) -> Response:
    return EmptyResponse()


def test_router_match_and_precedence() -> None:
    r = Router(ping=False)
    r.add("GET", "/images/{name:.*}/json", _h)
    r.add("GET", "/images/json", _h)
    r.add("POST", "/containers/{name}/stop", _h)
    assert r.match("GET", "/images/json") == (_h, {})
    assert r.match("GET", "/images/a/b:1/json") == (_h, {"name": "a/b:1"})
    assert r.match("post", "/containers/x/stop") == (_h, {"name": "x"})
    assert r.match("POST", "/containers/x/y/stop") is None
    assert r.match("GET", "/containers/x/stop") is None
    with pytest.raises(ValueError):
        r.add("GET", "/images/json", _h)
    other = Router(ping=False)
    other.add("DELETE", "/images/{name:.*}", _h)
    r.include(other)
    assert r.match("DELETE", "/images/library/debian") == (_h, {"name": "library/debian"})


def test_query_params_docker_bools() -> None:
    q = QueryParams("a=1&t=true&T=True&f=false&z=0&e=&n=none&no=no&x=yes&s=%20")
    assert [q.get_bool(k) for k in ("a", "t", "T", "x")] == [True] * 4
    assert [q.get_bool(k, True) for k in ("f", "z", "e", "n", "no", "s")] == [False] * 6
    assert q.get_bool("missing") is False and q.get_bool("missing", True) is True
    with pytest.raises(errdefs.InvalidArgument):
        QueryParams("t=1.5").get_int("t")
    assert QueryParams("t=-1").get_int("t") == -1
    assert QueryParams("t=").get_int("t", 10) == 10


def test_headers_case_insensitive() -> None:
    h = Headers([(b"Upgrade", b"tcp"), (b"X-A", b"1"), (b"x-a", b"2")])
    assert "upgrade" in h and "UPGRADE" in h
    assert h.get("UPGRADE") == "tcp"
    assert h.get_all("x-A") == ["1", "2"]
    assert h.get("missing", "d") == "d"


def test_api_at_least() -> None:
    req = Request("GET", "/v1.41/x", Headers([]))
    req.api_version = "1.41"
    assert api_at_least(req, "1.41") and not api_at_least(req, "1.42")
    assert req.path == "/v1.41/x"
