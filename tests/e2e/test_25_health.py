"""Healthchecks through the real CLI and docker-py: status, log, events, ps, image HEALTHCHECK,
timeouts, --no-healthcheck, stop and berthd restarts."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testkit.berthd import BerthdProcess, DockerCLI
from testkit.fixtures import busybox_rootfs_tar

_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _name() -> str:
    return f"h{uuid.uuid4().hex[:10]}"


@pytest.fixture
def names(docker: DockerCLI) -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    for n in created:
        docker("rm", "-f", n, check=False)


def _health(docker: DockerCLI, name: str) -> Any:
    return json.loads(docker("inspect", "-f", "{{json .State.Health}}", name).stdout)


def _until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def _status(docker: DockerCLI, name: str) -> str:
    return str((_health(docker, name) or {}).get("Status"))


def test_status_log_events_and_ps(docker: DockerCLI, busybox_image: str, names: list[str]) -> None:
    name = _name()
    names.append(name)
    since = str(int(time.time()) - 1)
    docker("run", "-d", "--name", name, "--health-cmd", "cat /tmp/ok", "--health-interval", "1s",
           "--health-retries", "2", "busybox", "sleep", "1000")
    assert _health(docker, name)["Status"] == "starting"
    assert "(health: starting)" in docker("ps", "--filter", f"name={name}").stdout
    _until(lambda: _status(docker, name) == "unhealthy")
    h = _health(docker, name)
    assert h["FailingStreak"] >= 2
    assert all(e["ExitCode"] == 1 and "No such file" in e["Output"] for e in h["Log"])
    assert set(h["Log"][0]) == {"Start", "End", "ExitCode", "Output"}
    assert docker("ps", "-q", "--filter", "health=unhealthy", "--filter", f"name={name}").stdout.strip()
    docker("exec", name, "sh", "-c", "echo fine > /tmp/ok")
    _until(lambda: _status(docker, name) == "healthy")
    h = _health(docker, name)
    assert h["FailingStreak"] == 0 and h["Log"][-1] == {**h["Log"][-1], "ExitCode": 0, "Output": "fine\n"}
    assert "(healthy)" in docker("ps", "--filter", f"name={name}").stdout
    assert docker("ps", "-q", "--filter", "health=healthy", "--filter", f"name={name}").stdout.strip()
    assert not docker("ps", "-q", "--filter", "health=unhealthy", "--filter", f"name={name}").stdout.strip()
    _until(lambda: len(_health(docker, name)["Log"]) == 5)
    time.sleep(1.5)
    assert len(_health(docker, name)["Log"]) == 5  # the last five runs only
    until = str(int(time.time()) + 1)
    out = docker("events", "--since", since, "--until", until, "--format", "{{.Action}}",
                 "--filter", f"container={name}", "--filter", "event=health_status").stdout
    assert out.splitlines()[:2] == ["health_status: unhealthy", "health_status: healthy"]
    res = docker("ps", "--filter", "health=bogus", check=False)
    assert res.returncode != 0 and "Unrecognised filter value for health: bogus" in res.stderr


def test_timeout_kills_the_probe(docker: DockerCLI, busybox_image: str, names: list[str]) -> None:
    name = _name()
    names.append(name)
    docker("run", "-d", "--name", name, "--health-cmd", "exec sleep 7", "--health-interval", "1s",
           "--health-timeout", "500ms", "--health-retries", "1", "busybox", "sleep", "1000")
    _until(lambda: _status(docker, name) == "unhealthy")
    entry = _health(docker, name)["Log"][0]
    assert entry["ExitCode"] == -1 and entry["Output"] == "Health check exceeded timeout (500ms)"
    time.sleep(0.5)
    assert "sleep 7" not in docker("top", name).stdout  # SIGKILLed, not left running


def test_image_healthcheck_overrides_and_none(
    docker: DockerCLI, busybox_image: str, names: list[str]
) -> None:
    repo = f"hcimg{uuid.uuid4().hex[:8]}"
    docker("import", "--change", f"ENV {_PATH}", "--change",
           "HEALTHCHECK --interval=1s --retries=1 CMD [\"false\"]", str(busybox_rootfs_tar()), repo)
    try:
        a, b, c = _name(), _name(), _name()
        names.extend([a, b, c])
        docker("run", "-d", "--name", a, repo, "sleep", "1000")
        cfg = json.loads(docker("inspect", "-f", "{{json .Config.Healthcheck}}", a).stdout)
        assert cfg["Test"] == ["CMD", "false"] and cfg["Interval"] == 1_000_000_000
        _until(lambda: _status(docker, a) == "unhealthy")
        # the image's interval and retries stay, the command is replaced
        docker("run", "-d", "--name", b, "--health-cmd", "true", repo, "sleep", "1000")
        _until(lambda: _status(docker, b) == "healthy")
        docker("run", "-d", "--name", c, "--no-healthcheck", repo, "sleep", "1000")
        assert docker("inspect", "-f", "{{json .State.Health}}", c).stdout.strip() == "null"
        cfg = json.loads(docker("inspect", "-f", "{{json .Config.Healthcheck}}", c).stdout)
        assert cfg["Test"] == ["NONE"]
        assert "(" not in docker("ps", "--filter", f"name={c}", "--format", "{{.Status}}").stdout
        assert docker("ps", "-q", "--filter", "health=none", "--filter", f"name={c}").stdout.strip()
    finally:
        for n in names:
            docker("rm", "-f", n, check=False)
        docker("rmi", repo, check=False)


def test_defaults_and_bad_values(
    docker: DockerCLI, dockerpy: Any, busybox_image: str, names: list[str]
) -> None:
    name = _name()
    names.append(name)
    docker("run", "-d", "--name", name, "--health-cmd", "true", "busybox", "sleep", "1000")
    time.sleep(1.5)
    assert _health(docker, name) == {"Status": "starting", "FailingStreak": 0, "Log": []}  # 30 s interval
    with pytest.raises(Exception, match="Interval in Healthcheck cannot be less than 1ms"):
        dockerpy.containers.create("busybox", "true", healthcheck={"test": ["CMD", "true"], "interval": 1000})


def test_stops_with_the_container_and_survives_restart(fresh_berthd: BerthdProcess) -> None:
    d = fresh_berthd
    d.docker("import", "--change", f"ENV {_PATH}", str(busybox_rootfs_tar()), "busybox:latest")
    d.docker("run", "-d", "--name", "up", "--health-cmd", "true", "--health-interval", "1s",
             "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "down", "--health-cmd", "true", "--health-interval", "1s",
             "busybox", "sleep", "1000")

    def health(n: str) -> Any:
        return json.loads(d.docker("inspect", "-f", "{{json .State.Health}}", n).stdout)

    _until(lambda: health("up")["Status"] == "healthy" and health("down")["Status"] == "healthy")
    d.docker("stop", "-t", "1", "down")
    stopped = health("down")
    time.sleep(2.5)
    assert health("down") == stopped  # no probes once stopped; the last state stays
    assert stopped["Status"] == "healthy" and stopped["FailingStreak"] == 0
    before = health("up")["Log"]
    d.kill9()
    d.start()
    assert health("down") == stopped
    after = health("up")
    assert after["Log"][: len(before)] == before  # every run so far was saved
    _until(lambda: health("up")["Status"] == "healthy")
    client = d.api_client()
    try:
        found = client.containers.list(filters={"health": "healthy"})
        assert [c.name for c in found] == ["up"]
        assert client.containers.get("up").attrs["State"]["Health"]["Status"] == "healthy"
    finally:
        client.close()
