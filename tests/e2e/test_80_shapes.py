"""Response JSON checked against the Engine API spec of the request's version (1.41 and 1.50).

Raw HTTP over the unix socket (httpx), so no client library reshapes anything: inspect and list of
containers, images, networks and volumes, /info, /version, /system/df, an event, a stats sample and
an exec inspect, each validated strictly by testkit.swagger. Then the ``docker inspect --format``
templates popular tools use.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from testkit.berthd import BerthdProcess
from testkit.netpeer import free_prefix
from testkit.swagger import load_spec

pytestmark = pytest.mark.needs_root

VERSIONS = ["1.41", "1.50"]
HTTPD = ["sh", "-c", "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www"]


@dataclass
class World:
    """The objects every shape is read from."""

    container: str  # id
    name: str
    exited: str  # id of a container that ran `false`, no healthcheck, default bridge
    network: str  # id
    network_name: str
    volume: str
    image: str  # id
    since: int


def _until_healthy(berthd: BerthdProcess, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        out = berthd.docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
        if out == "healthy":
            return
        assert time.monotonic() < deadline, f"{name} never became healthy ({out})"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def world(berthd: BerthdProcess, busybox_image: str) -> Iterator[World]:
    tag = uuid.uuid4().hex[:8]
    name, net, vol = f"shape-{tag}", f"shapenet-{tag}", f"shapevol-{tag}"
    since = int(time.time()) - 1
    made: list[tuple[str, ...]] = []
    try:
        berthd.docker("volume", "create", "--label", "suite=shapes", vol)
        made.append(("volume", "rm", "-f", vol))
        net_id = berthd.docker(
            "network", "create", "--subnet", f"{free_prefix()}.0/24", "--label", "suite=shapes", net
        ).stdout.strip()
        made.append(("network", "rm", net))
        cid = berthd.docker(
            "run", "-d", "--name", name, "--network", net, "-p", "127.0.0.1::80", "-v", f"{vol}:/data",
            "--label", "com.example.role=web", "--health-cmd", "true", "--health-interval", "1s",
            "busybox", *HTTPD,
        ).stdout.strip()
        made.append(("rm", "-f", cid))
        exited = berthd.docker("create", "busybox", "false").stdout.strip()
        made.append(("rm", "-f", exited))
        berthd.docker("start", "-a", exited, check=False)
        _until_healthy(berthd, name)
        yield World(cid, name, exited, net_id, net, vol, busybox_image, since)
    finally:
        for args in reversed(made):
            berthd.docker(*args, check=False)


@pytest.fixture(scope="module")
def http(berthd: BerthdProcess) -> Iterator[httpx.Client]:
    transport = httpx.HTTPTransport(uds=str(berthd.socket_path))
    with httpx.Client(transport=transport, base_url="http://docker", timeout=60) as client:
        yield client


def _get(http: httpx.Client, version: str, url: str, **params: Any) -> Any:
    resp = http.get(f"/v{version}{url}", params=params)
    assert resp.status_code == 200, f"GET {url}: {resp.status_code} {resp.text}"
    assert resp.headers["content-type"].startswith("application/json")
    return resp.json()


def _check(version: str, template: str, body: Any, what: str) -> None:
    load_spec(version).check(body, template, "get", 200, what=what)


@pytest.mark.parametrize("version", VERSIONS)
def test_containers(http: httpx.Client, world: World, version: str) -> None:
    body = _get(http, version, f"/containers/{world.container}/json", size=1)
    _check(version, "/containers/{id}/json", body, "container inspect")
    assert body["State"]["Health"]["Status"] == "healthy"
    assert body["Config"]["Labels"]["com.example.role"] == "web"
    assert set(body["NetworkSettings"]["Networks"]) == {world.network_name}
    assert body["Mounts"][0]["Name"] == world.volume and body["Mounts"][0]["Type"] == "volume"
    listed = _get(http, version, "/containers/json", all=1, size=1)
    _check(version, "/containers/json", listed, "container list")
    mine = [c for c in listed if c["Id"] == world.container]
    assert len(mine) == 1 and mine[0]["Status"].endswith("(healthy)")
    assert isinstance(mine[0]["SizeRw"], int) and isinstance(mine[0]["SizeRootFs"], int)
    assert [p for p in mine[0]["Ports"] if p["PrivatePort"] == 80 and p.get("PublicPort")]
    assert world.exited in [c["Id"] for c in listed]
    body = _get(http, version, f"/containers/{world.exited}/json")
    _check(version, "/containers/{id}/json", body, "exited container inspect")
    assert body["State"]["Status"] == "exited" and body["State"]["ExitCode"] == 1
    assert "Health" not in body["State"] and body["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""


@pytest.mark.parametrize("version", VERSIONS)
def test_images(http: httpx.Client, world: World, version: str) -> None:
    body = _get(http, version, f"/images/{world.image}/json")
    _check(version, "/images/{name}/json", body, "image inspect")
    assert body["Id"] == world.image
    listed = _get(http, version, "/images/json")
    _check(version, "/images/json", listed, "image list")
    assert world.image in [i["Id"] for i in listed]
    if version == "1.41":
        assert all("VirtualSize" in i for i in listed)


@pytest.mark.parametrize("version", VERSIONS)
def test_networks(http: httpx.Client, world: World, version: str) -> None:
    body = _get(http, version, f"/networks/{world.network}")
    _check(version, "/networks/{id}", body, "network inspect")
    assert world.container in body["Containers"]
    listed = _get(http, version, "/networks")
    _check(version, "/networks", listed, "network list")
    assert {"bridge", "host", "none", world.network_name} <= {n["Name"] for n in listed}


@pytest.mark.parametrize("version", VERSIONS)
def test_volumes(http: httpx.Client, world: World, version: str) -> None:
    body = _get(http, version, f"/volumes/{world.volume}")
    _check(version, "/volumes/{name}", body, "volume inspect")
    assert body["Labels"] == {"suite": "shapes"}
    listed = _get(http, version, "/volumes")
    _check(version, "/volumes", listed, "volume list")
    assert world.volume in [v["Name"] for v in listed["Volumes"]]


@pytest.mark.parametrize("version", VERSIONS)
def test_system(http: httpx.Client, world: World, version: str) -> None:
    _check(version, "/info", _get(http, version, "/info"), "info")
    body = _get(http, version, "/version")
    _check(version, "/version", body, "version")
    df = _get(http, version, "/system/df")
    _check(version, "/system/df", df, "system df")
    assert world.volume in [v["Name"] for v in df["Volumes"]]


@pytest.mark.parametrize("version", VERSIONS)
def test_event(http: httpx.Client, world: World, version: str) -> None:
    params = {"since": str(world.since), "until": str(int(time.time()) + 1),
              "filters": json.dumps({"container": [world.container], "event": ["start"]})}
    resp = http.get(f"/v{version}/events", params=params)
    assert resp.status_code == 200, resp.text
    events = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
    assert events, "no start event in the window"
    for ev in events:
        _check(version, "/events", ev, "event")
    assert events[0]["Action"] == "start" and events[0]["Actor"]["ID"] == world.container
    # since=0 is the epoch, not "no since": dockerd replays its whole buffer
    resp = http.get(f"/v{version}/events", params={**params, "since": "0"})
    assert [json.loads(line)["timeNano"] for line in resp.text.splitlines()] == [
        ev["timeNano"] for ev in events
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_stats_sample(http: httpx.Client, world: World, version: str) -> None:
    body = _get(http, version, f"/containers/{world.container}/stats", stream=0)
    _check(version, "/containers/{id}/stats", body, "stats")
    assert body["name"] == f"/{world.name}" and body["memory_stats"]["usage"] > 0
    assert "eth0" in body["networks"]  # keyed by interface, as dockerd


@pytest.mark.parametrize("version", VERSIONS)
def test_exec_inspect(http: httpx.Client, world: World, version: str) -> None:
    resp = http.post(
        f"/v{version}/containers/{world.container}/exec",
        json={"Cmd": ["sleep", "30"], "AttachStdout": False, "AttachStderr": False},
    )
    assert resp.status_code == 201, resp.text
    exec_id = resp.json()["Id"]
    created = _get(http, version, f"/exec/{exec_id}/json")
    _check(version, "/exec/{id}/json", created, "exec inspect (created)")
    assert created["Running"] is False and created["ExitCode"] is None
    resp = http.post(f"/v{version}/exec/{exec_id}/start", json={"Detach": True, "Tty": False})
    assert resp.status_code == 200, resp.text
    running = _get(http, version, f"/exec/{exec_id}/json")
    _check(version, "/exec/{id}/json", running, "exec inspect (running)")
    assert running["Running"] is True and running["Pid"] > 0
    assert running["ProcessConfig"] == {**running["ProcessConfig"], "entrypoint": "sleep",
                                        "arguments": ["30"]}


def test_inspect_format_templates(berthd: BerthdProcess, world: World) -> None:
    def fmt(template: str) -> str:
        return berthd.docker("inspect", "--format", template, world.name).stdout.strip()

    assert fmt("{{.State.Health.Status}}") == "healthy"
    port = fmt('{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}')
    assert port.isdigit() and 1024 < int(port) < 65536
    host_ip = fmt('{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostIp}}')
    assert host_ip == "127.0.0.1"
    networks = fmt("{{.NetworkSettings.Networks}}")
    assert networks.startswith(f"map[{world.network_name}:0x") or networks.startswith(
        f"map[{world.network_name}:{{"
    ), networks
    assert json.loads(fmt("{{json .Config.Labels}}")) == {"com.example.role": "web"}
    assert fmt("{{range $k, $v := .NetworkSettings.Networks}}{{$v.IPAddress}}{{end}}").startswith("10.")
