"""Bad input to create/kill/attach/exec: 400 with dockerd's message, and nothing left behind."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from testkit.berthd import BerthdProcess, DockerCLI


def _leftovers(berthd: BerthdProcess, docker: DockerCLI) -> tuple[list[str], list[str]]:
    ids = sorted(docker("ps", "-aq", "--no-trunc").stdout.split())
    root = berthd.data_root / "containers"
    dirs = sorted(os.listdir(root)) if root.exists() else []
    return ids, dirs


@pytest.fixture
def unchanged(berthd: BerthdProcess, docker: DockerCLI, busybox_image: str) -> Iterator[None]:
    """The test must leave no container record and no container directory."""
    before = _leftovers(berthd, docker)
    yield
    assert _leftovers(berthd, docker) == before


def _create_raw(dockerpy: Any, body: bytes, name: str = "") -> Any:
    api = dockerpy.api
    params = {"name": name} if name else None
    return api._post(api._url("/containers/create"), data=body, params=params,
                     headers={"Content-Type": "application/json"})  # fmt: skip


@pytest.mark.parametrize("name", ["bad name", "-lead", "a", "x/y", "é"])
def test_invalid_name(docker: DockerCLI, unchanged: None, name: str) -> None:
    res = docker("create", "--name", name, "busybox", "true", check=False)
    assert res.returncode != 0
    assert (f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            in res.stderr), res.stderr  # fmt: skip


@pytest.mark.parametrize(("args", "message"), [
    (["-m", "1k"], "Minimum memory limit allowed is 6MB"),
    (["-m", "64m", "--memory-swap", "32m"],
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    (["--memory-reservation", "1k"], "Minimum memory reservation allowed is 6MB"),
    (["--cpus", "100000"], "Range of CPUs is from 0.01 to"),
    (["--cpu-period", "500"], "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s"),
    (["--cpu-quota", "500"], "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    (["--cpuset-cpus", "9999"], "Requested CPUs are not available"),
    (["--cpuset-cpus", "a-b"], "Invalid value a-b for cpuset cpus: invalid format: a-b"),
    (["--cpuset-mems", "7"], "Requested memory nodes are not available - requested 7"),
])  # fmt: skip
def test_bad_resources(docker: DockerCLI, unchanged: None, args: list[str], message: str) -> None:
    res = docker("create", *args, "busybox", "true", check=False)
    assert res.returncode != 0 and message in res.stderr, res.stderr


def test_bad_cpu_values_over_the_api(dockerpy: Any, unchanged: None) -> None:
    for hc, message in (({"NanoCpus": -1}, "Range of CPUs is from 0.01 to"),
                        ({"NanoCpus": 1_000_000_000, "CpuQuota": 50_000},
                         "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
                        ({"NanoCpus": 1_000_000_000, "CpuPeriod": 50_000},
                         "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
                        ({"CpuShares": "many"}, "json: cannot unmarshal string into Go struct field"),
                        ({"CapAdd": "NET_ADMIN"}, "json: cannot unmarshal string into Go struct field")):
        resp = _create_raw(dockerpy, json.dumps({"Image": "busybox", "HostConfig": hc}).encode())
        assert resp.status_code == 400, (hc, resp.text)
        assert message in resp.json()["message"], resp.text


@pytest.mark.parametrize(("args", "message"), [
    (["--cap-add", "FOO"], 'invalid CapAdd: unknown capability: "CAP_FOO"'),
    (["--cap-drop", "CAP_NOPE"], 'invalid CapDrop: unknown capability: "CAP_NOPE"'),
])  # fmt: skip
def test_unknown_capability(docker: DockerCLI, unchanged: None, args: list[str], message: str) -> None:
    res = docker("create", *args, "busybox", "true", check=False)
    assert res.returncode != 0 and message in res.stderr, res.stderr


def test_bad_signal(docker: DockerCLI, busybox_image: str) -> None:
    cid = docker("run", "-d", "busybox", "sleep", "1000").stdout.strip()
    try:
        for sig, message in (("FOO", "Invalid signal: FOO"), ("99999", "Invalid signal: 99999")):
            res = docker("kill", "-s", sig, cid, check=False)
            assert res.returncode != 0 and message in res.stderr, res.stderr
        res = docker("create", "--stop-signal", "NOPE", "busybox", "true", check=False)
        assert res.returncode != 0 and "Invalid signal: NOPE" in res.stderr, res.stderr
        assert docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == "true"
    finally:
        docker("rm", "-f", cid, check=False)


def test_bad_detach_keys(docker: DockerCLI, dockerpy: Any, busybox_image: str) -> None:
    cid = docker("run", "-d", "-it", "busybox", "sh").stdout.strip()
    try:
        api = dockerpy.api
        resp = api._post(api._url("/containers/{0}/attach", cid),
                         params={"stream": 1, "stdout": 1, "detachKeys": "ctrl-"})  # fmt: skip
        assert resp.status_code == 400 and "Invalid detach keys (ctrl-) provided" in resp.text, resp.text
        res = docker("exec", "--detach-keys", "notakey", cid, "true", check=False)
        assert res.returncode != 0 and "Invalid detach keys (notakey) provided" in res.stderr, res.stderr
        execs = json.loads(docker("inspect", "-f", "{{json .ExecIDs}}", cid).stdout)
        assert not execs
        assert docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == "true"
    finally:
        docker("rm", "-f", cid, check=False)


@pytest.mark.parametrize("body", [
    b'{"Image": "busybox", "HostConfig": ',
    b'{"Image": "busybox", "HostConfig": "notanobject"}',
    b'{"Image": "busybox", "HostConfig": {"Memory": "lots"}}',
    b'{"Image": "busybox", "HostConfig": {"Binds": "x:/y"}}',
    b'{"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}',
    b'[1, 2]',
])  # fmt: skip
def test_malformed_host_config(dockerpy: Any, unchanged: None, body: bytes) -> None:
    resp = _create_raw(dockerpy, body, name="malformed-hc")
    assert resp.status_code == 400, resp.text
    assert resp.json()["message"], resp.text
