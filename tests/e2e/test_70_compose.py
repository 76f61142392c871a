"""Debian's docker-compose 1.29 (Python, its own docker-py) drives a three-service project on berthd.

The project (tests/e2e/compose/) has a user-defined network, a named volume, published loopback
ports, a built service with a healthcheck and a depends_on ``service_healthy`` condition. Clients
are this test on the host (127.0.0.1) and busybox in the project's containers.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from testkit.berthd import BerthdProcess

pytestmark = pytest.mark.needs_root

PROJECT_DIR = Path(__file__).resolve().parent / "compose"
API_IMAGE = "berth-compose-test-api:latest"


class Compose:
    """``docker-compose -p <project> -f docker-compose.yml`` against one berthd."""

    def __init__(self, berthd: BerthdProcess, project: str) -> None:
        self.berthd = berthd
        self.project = project
        self.env = berthd.docker_env()
        # compose's own docker-py does the build (its default shells out to the docker CLI,
        # whose builds test_60_build_cli covers).
        self.env["COMPOSE_DOCKER_CLI_BUILD"] = "0"
        self.env.pop("COMPOSE_API_VERSION", None)
        self.profiles: list[str] = []

    def argv(self, *args: str) -> list[str]:
        profiles = [a for p in self.profiles for a in ("--profile", p)]
        compose_file = str(PROJECT_DIR / "docker-compose.yml")
        return ["docker-compose", "-p", self.project, "-f", compose_file, *profiles, *args]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 180, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), cwd=PROJECT_DIR, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
        if check and proc.returncode != 0:
            pytest.fail(f"docker-compose {' '.join(args)} exited {proc.returncode}:\n"
                        f"{proc.stdout}\n{proc.stderr}", pytrace=False)  # fmt: skip
        return proc

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"


def _inspect(berthd: BerthdProcess, kind: str, name: str) -> Any:
    return json.loads(berthd.docker(kind, "inspect", name).stdout)[0]


def _exists(berthd: BerthdProcess, kind: str, name: str) -> bool:
    return berthd.docker(kind, "inspect", name, check=False).returncode == 0


def _project_containers(berthd: BerthdProcess, project: str, *labels: str) -> list[str]:
    """Ids of all containers (running or not) with compose's project label and `labels`."""
    filters = []
    for label in (f"com.docker.compose.project={project}", *labels):
        filters += ["--filter", f"label={label}"]
    return list(berthd.docker("ps", "-aq", *filters).stdout.split())


def _until(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} not met in {timeout:g}s"
        time.sleep(0.2)


def _started_at(info: Any) -> datetime:
    # RFC 3339 with nanoseconds; datetime takes microseconds.
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", str(info["State"]["StartedAt"])).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp)


def _get(url: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _published(compose: Compose, service: str, port: int) -> str:
    host_port = compose("port", service, str(port)).stdout.strip()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", host_port), host_port
    return host_port


def _health(berthd: BerthdProcess, name: str) -> str:
    return str(_inspect(berthd, "container", name)["State"].get("Health", {}).get("Status"))


def _read_line(proc: subprocess.Popen[bytes], want: bytes, timeout: float) -> bytes:
    """The first line of `proc`'s stdout containing `want`, within `timeout` seconds."""
    assert proc.stdout is not None
    fd, buf, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            for line in buf.splitlines():
                if want in line:
                    return line
    raise AssertionError(f"no line with {want!r} in {timeout:g}s; got {buf!r}")


@pytest.fixture
def compose(berthd: BerthdProcess, busybox_image: str) -> Iterator[Compose]:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed (make apt installs Debian's)", pytrace=False)
    c = Compose(berthd, f"bc{uuid.uuid4().hex[:8]}")
    try:
        yield c
    finally:
        c("down", "-v", "-t", "1", "--remove-orphans", check=False)
        berthd.docker("rmi", "-f", API_IMAGE, check=False)


def test_compose_project_lifecycle(compose: Compose, berthd: BerthdProcess) -> None:
    up = compose("up", "-d")
    assert "Successfully tagged " + API_IMAGE in up.stdout + up.stderr
    web, api, client = (compose.container(s) for s in ("web", "api", "client"))
    network, volume = f"{compose.project}_backend", f"{compose.project}_site"
    assert _exists(berthd, "network", network) and _exists(berthd, "volume", volume)

    # depends_on service_healthy: client started only once api was healthy, which takes api two
    # seconds (without the condition compose starts client a fraction of a second after api).
    assert _health(berthd, api) == "healthy"
    api_info, client_info = _inspect(berthd, "container", api), _inspect(berthd, "container", client)
    assert (_started_at(client_info) - _started_at(api_info)).total_seconds() >= 1.5
    assert _inspect(berthd, "image", API_IMAGE)["Id"] == api_info["Image"]

    ps = compose("ps").stdout
    for name in (web, api, client):
        assert re.search(rf"^{name}\s.*\bUp\b", ps, re.M), ps
    assert re.search(rf"^{api}\s.*Up \(healthy\)", ps, re.M), ps
    assert len(compose("ps", "-q").stdout.split()) == 3

    # Published ports answer on the host's loopback.
    web_port, api_port = _published(compose, "web", 80), _published(compose, "api", 8080)
    assert _get(f"http://{web_port}/").strip() == "web-says-hi"
    assert _get(f"http://{api_port}/").strip() == "api-says-hi"

    # Service names resolve on the project network to the containers' addresses there.
    for service, name in (("web", web), ("api", api)):
        ip = _inspect(berthd, "container", name)["NetworkSettings"]["Networks"][network]["IPAddress"]
        out = compose("exec", "-T", "client", "nslookup", service).stdout
        assert re.search(rf"^Address:\s*{re.escape(ip)}$", out, re.M), out
    got = compose("exec", "-T", "client", "sh", "-c", "wget -qO- http://web/; wget -qO- http://api:8080/")
    assert got.stdout.split() == ["web-says-hi", "api-says-hi"]

    # exec -T writes into the named volume; web serves it, client sees it read-only.
    compose("exec", "-T", "web", "sh", "-c", "echo from-exec > /www/extra.html")
    assert _get(f"http://{web_port}/extra.html").strip() == "from-exec"
    assert compose("exec", "-T", "client", "cat", "/site/extra.html").stdout.strip() == "from-exec"
    denied = compose("exec", "-T", "client", "sh", "-c", "echo x > /site/x", check=False)
    assert denied.returncode != 0
    assert compose("exec", "-T", "client", "sh", "-c", "exit 7", check=False).returncode == 7
    # compose's own exec (docker-py + dockerpty over the hijacked stream) instead of `docker exec`.
    own = compose("exec", "-T", "client", "sh", "-c", "echo out; echo err >&2; exit 5", check=False,
                  env={"COMPOSE_INTERACTIVE_NO_CLI": "1"})  # fmt: skip
    # dockerpty demultiplexes both streams onto compose's stdout.
    assert own.returncode == 5 and sorted(own.stdout.split()) == ["err", "out"], own

    logs = compose("logs", "--no-color").stdout
    assert re.search(r"^api_1\s+\| api starting$", logs, re.M), logs
    assert re.search(r"^client_1\s+\| client-tick$", logs, re.M), logs
    # -t: one RFC 3339 timestamp with nine fraction digits, as dockerd sends it.
    stamped = compose("logs", "--no-color", "-t", "--tail", "1", "client").stdout
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"
    assert re.search(rf"^client_1\s+\| {stamp} client-tick$", stamped, re.M), stamped

    # restart: every container starts anew, keeps the volume's content, api turns healthy again.
    before = {n: _started_at(_inspect(berthd, "container", n)) for n in (web, api, client)}
    compose("restart", "-t", "1")
    for name in (web, api, client):
        info = _inspect(berthd, "container", name)
        assert info["State"]["Running"] and _started_at(info) > before[name], name
    _until(lambda: _health(berthd, api) == "healthy", what="api healthy after restart")
    web_port = _published(compose, "web", 80)
    assert _get(f"http://{web_port}/extra.html").strip() == "from-exec"
    assert "web-says-hi" in compose("exec", "-T", "client", "wget", "-qO-", "http://web/").stdout

    # logs -f follows new output; it ends by itself once the followed container stops.
    follow = subprocess.Popen(compose.argv("logs", "-f", "--no-color", "--tail", "0", "client"),
                              cwd=PROJECT_DIR, env=compose.env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert _read_line(follow, b"client-tick", timeout=20).startswith(b"client_1")
        compose("stop", "-t", "5", "client")
        assert follow.wait(timeout=30) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    compose("start", "client")

    # down -v: containers, the network and the named volume are gone; the images stay.
    compose("down", "-v", "-t", "1")
    assert _project_containers(berthd, compose.project) == []
    assert not _exists(berthd, "network", network)
    assert not _exists(berthd, "volume", volume)
    assert _exists(berthd, "image", API_IMAGE) and _exists(berthd, "image", "busybox:latest")


def test_compose_recreate_scale_run_on_api_141(compose: Compose, berthd: BerthdProcess) -> None:
    # Pinned to API 1.41, what Debian 12's own docker.io speaks. compose 1.29 reads the image's
    # ContainerConfig when it recreates a container; dockerd stopped sending it with API 1.45
    # (compose then fails with KeyError 'ContainerConfig', docker/compose#11693), and so does berth.
    compose.env["COMPOSE_API_VERSION"] = "1.41"
    compose.profiles = ["probe"]
    compose("up", "-d")
    web = compose.container("web")
    ids = set(compose("ps", "-q").stdout.split())
    assert len(ids) == 4

    # network_mode/pid service:web: probe joins web's namespaces, reaches it on loopback, sees httpd.
    probe = _inspect(berthd, "container", compose.container("probe"))
    web_id = _inspect(berthd, "container", web)["Id"]
    assert probe["HostConfig"]["NetworkMode"] == probe["HostConfig"]["PidMode"] == "container:" + web_id
    assert compose("exec", "-T", "probe", "wget", "-qO-", "http://127.0.0.1/").stdout.strip() == "web-says-hi"
    assert "httpd -f -v -p 80" in compose("exec", "-T", "probe", "ps", "-o", "args").stdout

    # Unchanged config: nothing is recreated (compose compares its config-hash label).
    again = compose("up", "-d")
    assert again.stderr.count("is up-to-date") == 4, again.stderr
    assert set(compose("ps", "-q").stdout.split()) == ids
    # probe goes before web is recreated: it lives in web's PID namespace, which dies with web.
    compose("rm", "--stop", "--force", "probe")
    compose.profiles = []

    # Recreate web: a new container on the same named volume; the renamed old one is removed.
    compose("exec", "-T", "web", "sh", "-c", "echo kept > /www/kept.html")
    old_web = _inspect(berthd, "container", web)["Id"]
    compose("up", "-d", "--force-recreate", "-t", "1", "web")
    new_web = _inspect(berthd, "container", web)
    assert new_web["Id"] != old_web and new_web["State"]["Running"]
    assert _get(f"http://{_published(compose, 'web', 80)}/kept.html").strip() == "kept"
    assert not _exists(berthd, "container", old_web)

    # Scale client to two: the service name resolves to both replicas.
    compose("up", "-d", "--no-recreate", "--scale", "client=2")
    ips = sorted(
        _inspect(berthd, "container", f"{compose.project}_client_{i}")["NetworkSettings"]["Networks"][
            f"{compose.project}_backend"]["IPAddress"]
        for i in (1, 2)
    )  # fmt: skip
    out = compose("exec", "-T", "web", "nslookup", "client").stdout
    assert sorted(re.findall(r"^Address:\s*(\d+\.\d+\.\d+\.\d+)$", out, re.M)) == ips, out

    # run --rm: a one-off container on the project network, gone afterwards.
    run = compose("run", "--rm", "-T", "client", "wget", "-qO-", "http://api:8080/")
    assert run.stdout.strip() == "api-says-hi"
    one_off = "com.docker.compose.oneoff=True"
    assert _project_containers(berthd, compose.project, one_off) == []

    assert "httpd" in compose("top", "web").stdout
    compose("pause", "web")
    assert _inspect(berthd, "container", web)["State"]["Status"] == "paused"
    compose("unpause", "web")
    assert _inspect(berthd, "container", web)["State"]["Status"] == "running"

    compose("down", "-v", "-t", "1")
    assert _project_containers(berthd, compose.project) == []
    assert not _exists(berthd, "volume", f"{compose.project}_site")
