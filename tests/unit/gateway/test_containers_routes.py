"""Container routes over a real socket with a fake ContainersAPI: statuses, JSON shapes, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from containers_svc.api import CreateRequest

from .client import fetch
from .conftest import ServeFn
from .containers_fake import IMAGE_ID, FakeContainers, make_router

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake() -> FakeContainers:
    return FakeContainers()


@pytest.fixture
async def api(serving: ServeFn, fake: FakeContainers) -> AsyncIterator[Path]:
    async with serving(make_router(fake)) as path:
        yield path


async def create(api: Path, name: str = "web", **config: object) -> str:
    body = {"Image": "busybox", "Cmd": ["top"], **config}
    r = await fetch(api, "POST", f"/v1.50/containers/create?name={name}",
                    [("Content-Type", "application/json")], json.dumps(body).encode())
    assert r.status == 201, r.body
    cid = json.loads(r.body)["Id"]
    assert isinstance(cid, str)
    return cid


async def test_create_splits_body_into_config_hostconfig_networking(
    api: Path, fake: FakeContainers
) -> None:
    body = {"Image": "busybox", "Cmd": ["sh"], "Tty": True,
            "HostConfig": {"NetworkMode": "none", "ConsoleSize": [24, 80]},
            "NetworkingConfig": {"EndpointsConfig": {"none": {}}}}
    r = await fetch(api, "POST", "/v1.41/containers/create?name=box&platform=linux/amd64", [],
                    json.dumps(body).encode())
    assert r.status == 201
    doc = json.loads(r.body)
    assert doc == {"Id": doc["Id"], "Warnings": []}
    req = fake.calls[-1][1]
    assert isinstance(req, CreateRequest)
    assert req.name == "box" and req.platform == "linux/amd64" and req.api_version == "1.41"
    assert req.config == {"Image": "busybox", "Cmd": ["sh"], "Tty": True}
    assert req.host_config == {"NetworkMode": "none", "ConsoleSize": [24, 80]}
    assert req.networking_config == {"EndpointsConfig": {"none": {}}}


@pytest.mark.parametrize("body", [b"{nope", b"", b"[1]", b'{"Image":"x","HostConfig":[]}'])
async def test_create_bad_body_is_400(api: Path, body: bytes) -> None:
    r = await fetch(api, "POST", "/containers/create", [], body)
    assert r.status == 400
    assert json.loads(r.body)["message"].startswith("invalid JSON")


async def test_create_missing_image_404_and_name_conflict_409(api: Path) -> None:
    r = await fetch(api, "POST", "/containers/create", [], b'{"Image":"missing:latest"}')
    assert r.status == 404
    assert json.loads(r.body) == {"message": "No such image: missing:latest"}
    await create(api, "dup")
    r = await fetch(api, "POST", "/containers/create?name=dup", [], b'{"Image":"busybox"}')
    assert r.status == 409
    assert 'The container name "/dup" is already in use' in json.loads(r.body)["message"]


async def test_inspect_shape_and_defaults(api: Path) -> None:
    cid = await create(api, "web", Cmd=["sleep", "10 s"], Labels={"a": "b"})
    r = await fetch(api, "GET", "/v1.50/containers/web/json")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    doc = json.loads(r.body)
    assert doc["Id"] == cid and doc["Name"] == "/web" and doc["Image"] == IMAGE_ID
    assert doc["Path"] == "sleep" and doc["Args"] == ["10 s"]
    assert doc["State"]["Status"] == "created" and doc["State"]["StartedAt"] == "0001-01-01T00:00:00Z"
    assert "Health" not in doc["State"]
    hc = doc["HostConfig"]
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert hc["NetworkMode"] == "bridge" and hc["ConsoleSize"] == [0, 0] and hc["Runtime"] == "runc"
    assert doc["Config"]["Labels"] == {"a": "b"} and doc["Config"]["Image"] == "busybox"
    assert "SizeRw" not in doc
    ns = doc["NetworkSettings"]
    assert ns["Ports"] == {} and ns["Bridge"] == "" and list(ns["Networks"]) == ["bridge"]
    assert ns["Networks"]["bridge"]["IPAddress"] == "" and ns["Networks"]["bridge"]["DNSNames"] is None
    r = await fetch(api, "GET", "/containers/web/json?size=1")
    doc = json.loads(r.body)
    assert doc["SizeRw"] == 12 and doc["SizeRootFs"] == 4096


async def test_inspect_network_none_and_version_gates(api: Path) -> None:
    await create(api, "n", HostConfig={"NetworkMode": "none"})
    doc = json.loads((await fetch(api, "GET", "/v1.41/containers/n/json")).body)
    assert list(doc["NetworkSettings"]["Networks"]) == ["none"]
    ep = doc["NetworkSettings"]["Networks"]["none"]
    assert ep["IPAddress"] == "" and ep["Gateway"] == "" and ep["MacAddress"] == ""
    assert "DNSNames" not in ep and "GwPriority" not in ep  # 1.44+ / 1.48+
    assert doc["Config"]["MacAddress"] == ""  # < 1.44 only
    doc = json.loads((await fetch(api, "GET", "/v1.50/containers/n/json")).body)
    assert "MacAddress" not in doc["Config"]
    assert "DNSNames" in doc["NetworkSettings"]["Networks"]["none"]


async def test_inspect_aliases_get_short_id_below_1_45(api: Path) -> None:
    cid = await create(api, "al", HostConfig={"NetworkMode": "mynet"},
                       NetworkingConfig={"EndpointsConfig": {"mynet": {"Aliases": ["db"]}}})
    old = json.loads((await fetch(api, "GET", "/v1.44/containers/al/json")).body)
    assert old["NetworkSettings"]["Networks"]["mynet"]["Aliases"] == ["db", cid[:12]]
    new = json.loads((await fetch(api, "GET", "/v1.45/containers/al/json")).body)
    assert new["NetworkSettings"]["Networks"]["mynet"]["Aliases"] == ["db"]


async def test_not_found_texts(api: Path) -> None:
    for method, target in [("GET", "/containers/x/json"), ("POST", "/containers/x/start"),
                           ("POST", "/containers/x/stop"), ("DELETE", "/containers/x"),
                           ("POST", "/containers/x/wait"), ("GET", "/containers/x/logs?stdout=1"),
                           ("POST", "/containers/x/attach?stream=1&stdout=1")]:
        r = await fetch(api, method, target)
        assert r.status == 404, target
        assert json.loads(r.body) == {"message": "No such container: x"}, target


async def test_ps_shape_all_limit_size_filters(api: Path, fake: FakeContainers) -> None:
    cid = await create(api, "one", Cmd=["sh", "-c", "sleep 1000"], Labels={"k": "v"})
    await create(api, "two")
    r = await fetch(api, "GET", "/containers/json")
    assert r.status == 200 and json.loads(r.body) == []
    assert (await fetch(api, "POST", "/containers/one/start")).status == 204
    q = '{"label":{"k=v":true}}'
    r = await fetch(api, "GET", f"/v1.50/containers/json?all=1&limit=5&size=1&filters={q}")
    assert fake.last() == ("list", True, 5, True, {"label": ["k=v"]})
    docs = json.loads(r.body)
    assert [d["Names"] for d in docs] == [["/two"], ["/one"]]
    one = docs[1]
    assert one["Id"] == cid and one["Image"] == "busybox" and one["ImageID"] == IMAGE_ID
    assert one["Command"] == "sh -c 'sleep 1000'"
    assert one["State"] == "running" and one["Status"].startswith("Up ")
    assert one["Labels"] == {"k": "v"} and one["Ports"] == [] and one["Mounts"] == []
    assert one["HostConfig"] == {"NetworkMode": "bridge"}
    assert list(one["NetworkSettings"]["Networks"]) == ["bridge"]
    assert isinstance(one["Created"], int) and one["Created"] > 0
    assert docs[0]["Status"] == "Created"
    # docker-py's list form of filters
    await fetch(api, "GET", '/containers/json?filters={"name":["one"]}')
    assert fake.calls[-1][4] == {"name": ["one"]}
    r = await fetch(api, "GET", "/containers/json?filters=nope")
    assert r.status == 400 and json.loads(r.body) == {"message": "invalid filter"}


async def test_ps_ports_of_running_container(api: Path) -> None:
    await create(api, "p", ExposedPorts={"80/tcp": {}, "53/udp": {}},
                 HostConfig={"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}})
    await fetch(api, "POST", "/containers/p/start")
    doc = json.loads((await fetch(api, "GET", "/containers/json")).body)[0]
    assert doc["Ports"] == [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"PrivatePort": 53, "Type": "udp"},
    ]
    ins = json.loads((await fetch(api, "GET", "/containers/p/json")).body)
    assert ins["NetworkSettings"]["Ports"]["53/udp"] is None
    assert ins["NetworkSettings"]["Ports"]["80/tcp"][0] == {"HostIp": "0.0.0.0", "HostPort": "8080"}


async def test_lifecycle_statuses(api: Path, fake: FakeContainers) -> None:
    await create(api, "c")
    r = await fetch(api, "POST", "/containers/c/start")
    assert r.status == 204 and r.body == b""
    r = await fetch(api, "POST", "/containers/c/start")
    assert r.status == 304 and r.body == b""
    assert (await fetch(api, "POST", "/containers/c/pause")).status == 204
    ps = json.loads((await fetch(api, "GET", "/containers/json")).body)
    assert ps[0]["State"] == "paused" and ps[0]["Status"].endswith("(Paused)")
    assert (await fetch(api, "POST", "/containers/c/unpause")).status == 204
    r = await fetch(api, "DELETE", "/containers/c")
    assert r.status == 409
    assert json.loads(r.body)["message"].startswith("You cannot remove a running container ")
    assert (await fetch(api, "POST", "/v1.41/containers/c/stop?t=5&signal=SIGINT")).status == 204
    assert fake.last() == ("stop", "c", 5, "")  # signal is 1.42+
    assert (await fetch(api, "POST", "/v1.42/containers/c/restart?signal=SIGINT")).status == 204
    assert fake.last() == ("restart", "c", None, "SIGINT")
    r = await fetch(api, "POST", "/containers/c/stop")
    assert r.status == 304 and r.body == b""
    r = await fetch(api, "POST", "/containers/c/stop?t=abc")
    assert r.status == 400
    ps = json.loads((await fetch(api, "GET", "/containers/json?all=1")).body)
    assert ps[0]["State"] == "exited" and ps[0]["Status"].startswith("Exited (143) ")
    assert (await fetch(api, "POST", "/containers/c/rename?name=d")).status == 204
    r = await fetch(api, "POST", "/containers/d/rename")
    assert r.status == 400
    r = await fetch(api, "DELETE", "/containers/d?force=1&v=1&link=0")
    assert r.status == 204
    assert fake.last() == ("remove", "d", True, True, False)


async def test_kill_texts_and_signal(api: Path, fake: FakeContainers) -> None:
    cid = await create(api, "k")
    r = await fetch(api, "POST", "/containers/k/kill")
    assert r.status == 409
    assert json.loads(r.body) == {"message": f"Cannot kill container: k: Container {cid} is not running"}
    await fetch(api, "POST", "/containers/k/start")
    assert (await fetch(api, "POST", "/containers/k/kill?signal=SIGTERM")).status == 204
    assert fake.last() == ("kill", "k", "SIGTERM")
    r = await fetch(api, "POST", "/containers/nope/kill")
    assert r.status == 404
    assert json.loads(r.body)["message"] == "Cannot kill container: nope: No such container: nope"


async def test_resize(api: Path, fake: FakeContainers) -> None:
    await create(api, "r")
    assert (await fetch(api, "POST", "/containers/r/resize?h=24&w=80")).status == 200
    assert fake.last() == ("resize", "r", 24, 80)
    r = await fetch(api, "POST", "/containers/r/resize?h=x&w=80")
    assert r.status == 400 and json.loads(r.body)["message"] == 'strconv.Atoi: parsing "x": invalid syntax'


async def test_prune(api: Path, fake: FakeContainers) -> None:
    r = await fetch(api, "POST", "/containers/prune")
    assert json.loads(r.body) == {"ContainersDeleted": None, "SpaceReclaimed": 0}
    cid = await create(api, "gone")
    r = await fetch(api, "POST", '/containers/prune?filters={"until":["10m"]}')
    assert r.status == 200
    assert json.loads(r.body) == {"ContainersDeleted": [cid], "SpaceReclaimed": 100}
    assert fake.last() == ("prune", {"until": ["10m"]})


async def test_routes_absent_without_backend(serving: ServeFn) -> None:
    from types import SimpleNamespace
    from typing import cast

    from gateway_svc.app import build_app
    from gateway_svc.backend import Backends

    backends = cast(Backends, SimpleNamespace(system=None, images=None, events=None, containers=None))
    async with serving(build_app(backends, Path("/nonexistent"), "t")) as path:
        r = await fetch(path, "GET", "/containers/json")
    assert r.status == 404 and json.loads(r.body) == {"message": "page not found"}
