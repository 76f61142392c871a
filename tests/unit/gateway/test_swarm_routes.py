"""Swarm, services, secrets and plugin endpoints answer as a dockerd outside a swarm, at once."""

from __future__ import annotations

import anyio
import pytest

import errdefs
from gateway_svc.router import Router
from gateway_svc.routes.swarm import NOT_IN_SWARM, NOT_MANAGER, SwarmRoutes


@pytest.fixture
def router() -> Router:
    r = Router(ping=False)
    SwarmRoutes().register(r)
    return r


@pytest.mark.parametrize(("method", "path", "message"), [
    ("GET", "/swarm", NOT_MANAGER),
    ("POST", "/swarm/leave", NOT_IN_SWARM),
    ("GET", "/services", NOT_MANAGER),
    ("POST", "/services/create", NOT_MANAGER),
    ("GET", "/nodes/abc", NOT_MANAGER),
    ("DELETE", "/secrets/s1", NOT_MANAGER),
    ("POST", "/configs/c1/update", NOT_MANAGER),
    ("GET", "/tasks/t1/logs", NOT_MANAGER),
])
def test_non_swarm_answers(router: Router, method: str, path: str, message: str) -> None:
    found = router.match(method, path)
    assert found is not None, path
    handler, params = found

    class Req:
        pass

    req = Req()
    req.params = params  # type: ignore[attr-defined]
    with pytest.raises(errdefs.Unavailable) as e:
        anyio.run(handler, req)  # type: ignore[arg-type]
    assert e.value.message == message
    assert e.value.http_status == 503


def test_plugins_none_installed(router: Router) -> None:
    assert router.match("GET", "/plugins") is not None
    found = router.match("GET", "/plugins/vieux/sshfs:latest/json")
    assert found is not None and found[1] == {"name": "vieux/sshfs:latest"}
