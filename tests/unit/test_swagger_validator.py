"""testkit.swagger: response bodies checked against the Engine API 1.41 and 1.50 specs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from testkit.swagger import ShapeError, load_spec

IMAGE: dict[str, Any] = {
    "Id": "sha256:" + "a" * 64,
    "ParentId": "",
    "RepoTags": ["busybox:latest"],
    "RepoDigests": [],
    "Created": 1700000000,
    "Size": 4_000_000,
    "SharedSize": -1,
    "VirtualSize": 4_000_000,
    "Labels": None,
    "Containers": -1,
}

CONTAINER: dict[str, Any] = {
    "Id": "c" * 64,
    "Created": "2026-12-01T10:00:00.000000001Z",
    "Path": "sleep",
    "Args": ["1000"],
    "State": {
        "Status": "running", "Running": True, "Paused": False, "Restarting": False,
        "OOMKilled": False, "Dead": False, "Pid": 42, "ExitCode": 0, "Error": "",
        "StartedAt": "2026-12-01T10:00:01Z", "FinishedAt": "0001-01-01T00:00:00Z",
    },
    "Image": "sha256:" + "a" * 64,
    "ResolvConfPath": "/r", "HostnamePath": "/h", "HostsPath": "/hs", "LogPath": "/l",
    "Name": "/web", "RestartCount": 0, "Driver": "overlay2", "Platform": "linux",
    "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
    "HostConfig": {"NetworkMode": "bridge", "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                   "LogConfig": {"Type": "json-file", "Config": {}}, "Binds": None},
    "GraphDriver": {"Name": "overlay2", "Data": None},
    "Mounts": [],
    "Config": {"Hostname": "cccc", "Image": "busybox", "Labels": {"a": "b"}, "Env": ["PATH=/bin"],
               "MacAddress": None},
    "NetworkSettings": {
        "SandboxID": "s", "SandboxKey": "/k",
        "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
        "Networks": {"bridge": {"NetworkID": "n", "EndpointID": "e", "Gateway": "172.17.0.1",
                                "IPAddress": "172.17.0.2", "IPPrefixLen": 16,
                                "MacAddress": "02:42:ac:11:00:02",
                                "Aliases": None}},
    },
}


@pytest.fixture(scope="module", params=["1.41", "1.50"])
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_valid_bodies_pass(version: str) -> None:
    spec = load_spec(version)
    assert spec.problems([IMAGE], "/images/json", strict=True) == []
    assert spec.problems(CONTAINER, "/containers/{id}/json", strict=True) == []


def test_wrong_type_is_reported(version: str) -> None:
    spec = load_spec(version)
    bad = dict(IMAGE, Size="4MB")
    assert spec.problems([bad], "/images/json") == ["$[0].Size: '4MB' is not of type 'integer'"]
    # through a $ref two levels down, and a string where Go has no nil
    ctr = copy.deepcopy(CONTAINER)
    ctr["State"]["Pid"] = "42"
    ctr["Config"]["Hostname"] = None
    assert spec.problems(ctr, "/containers/{id}/json") == [
        "$.Config.Hostname: None is not of type 'string'",
        "$.State.Pid: '42' is not of type 'integer'",
    ]
    with pytest.raises(ShapeError, match=r"2 problem\(s\):\n  \$\.Config\.Hostname: None"):
        spec.check(ctr, "/containers/{id}/json")  # strict: the null is one problem, not two


def test_missing_required_field_is_reported(version: str) -> None:
    spec = load_spec(version)
    bad = {k: v for k, v in IMAGE.items() if k != "Containers"}
    assert spec.problems([bad], "/images/json") == ["$[0]: 'Containers' is a required property"]


def test_required_fields_follow_the_version() -> None:
    no_virtual = {k: v for k, v in IMAGE.items() if k != "VirtualSize"}
    assert load_spec("1.41").problems([no_virtual], "/images/json") == [
        "$[0]: 'VirtualSize' is a required property"
    ]
    assert load_spec("1.50").problems([no_virtual], "/images/json") == []


def test_x_nullable_and_go_nil(version: str) -> None:
    spec = load_spec(version)
    ctr = copy.deepcopy(CONTAINER)
    ctr["Config"]["MacAddress"] = None  # x-nullable string
    ctr["HostConfig"]["Binds"] = None  # a nil slice: null in dockerd's JSON too
    assert spec.problems(ctr, "/containers/{id}/json") == []
    assert "$.HostConfig.Binds: None is not of type 'array'" in spec.problems(
        ctr, "/containers/{id}/json", go_nil=False
    )


def test_go_pointer_scalars_may_be_null(version: str) -> None:
    spec = load_spec(version)
    ctr = copy.deepcopy(CONTAINER)
    ctr["HostConfig"]["MemorySwappiness"] = None  # *int64 in dockerd, not x-nullable in the spec
    assert spec.problems(ctr, "/containers/{id}/json") == []
    ctr["HostConfig"]["MemorySwappiness"] = -1  # what the CLI sends for "unset"
    assert spec.problems(ctr, "/containers/{id}/json") == [
        "$.HostConfig.MemorySwappiness: -1 is less than the minimum of 0"
    ]
    exec_inspect = {"ID": "e", "Running": True, "ExitCode": None, "Pid": 7}
    assert spec.problems(exec_inspect, "/exec/{id}/json") == []


def test_strict_reports_missing_and_null_fields(version: str) -> None:
    spec = load_spec(version)
    ctr = copy.deepcopy(CONTAINER)
    del ctr["Id"]
    ctr["Config"]["Labels"] = None
    ctr["NetworkSettings"]["Networks"]["bridge"].pop("EndpointID")
    assert spec.problems(ctr, "/containers/{id}/json") == []
    assert spec.problems(ctr, "/containers/{id}/json", strict=True) == [
        "$.Id: missing (Docker always sends it)",
        "$.Config.Labels: null where Docker sends a value",
        "$.NetworkSettings.Networks.bridge.EndpointID: missing (Docker always sends it)",
    ]
    # a required list: RepoTags null passes as a Go nil, but dockerd always sends a list
    img = dict(IMAGE, RepoTags=None)
    assert spec.problems([img], "/images/json") == []
    assert spec.problems([img], "/images/json", strict=True) == [
        "$[0].RepoTags: null where Docker sends a value (required)",
    ]


def test_unknown_fields_follow_the_version() -> None:
    ctr = copy.deepcopy(CONTAINER)
    ctr["NetworkSettings"]["Networks"]["bridge"]["DNSNames"] = ["web"]  # API 1.45+
    ctr["HostConfig"]["Bogus"] = 1  # HostConfig is allOf [Resources, {...}]: both are searched
    ctr["HostConfig"]["Memory"] = 0  # from Resources
    assert load_spec("1.41").problems(ctr, "/containers/{id}/json", strict=True, unknown=True) == [
        "$.HostConfig.Bogus: not in the API 1.41 schema",
        "$.NetworkSettings.Networks.bridge.DNSNames: not in the API 1.41 schema",
    ]
    assert load_spec("1.50").problems(ctr, "/containers/{id}/json", strict=True, unknown=True) == [
        "$.HostConfig.Bogus: not in the API 1.50 schema",
    ]
    event = {"Type": "container", "Action": "start", "Actor": {"ID": "c", "Attributes": {}},
             "time": 1, "timeNano": 1, "status": "start", "id": "c", "from": "busybox"}
    assert load_spec("1.50").problems(event, "/events", strict=True, unknown=True) == []


def test_operation_matches_concrete_paths() -> None:
    spec = load_spec("v1.41")
    assert spec.operation("/v1.41/containers/abc/json?size=1") == "/containers/{id}/json"
    assert spec.operation("/containers/json") == "/containers/json"
    assert spec.operation("/v1.41/images/busybox/json") == "/images/{name}/json"
    assert spec.operation("/images/localhost:5000/a/b:1/json") == "/images/{name}/json"
    assert spec.operation("/volumes/v1") == "/volumes/{name}"
    assert spec.operation("/images/a/b") == "/images/{name}"
    assert spec.operation("/images/a/b/history") == "/images/{name}/history"
    with pytest.raises(KeyError):
        spec.operation("/nope")
    with pytest.raises(KeyError):
        spec.response_schema("/containers/{id}/json", "get", 418)
