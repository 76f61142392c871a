"""testcontainers-python (PyPI) on berthd: a generic busybox container (log wait, mapped port, stop),
a network with an alias reached from an exec, and an image it builds itself, waited on over HTTP."""

from __future__ import annotations

import re
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.image import DockerImage
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import HttpWaitStrategy, LogMessageWaitStrategy
from testcontainers.core.waiting_utils import wait_for_logs

from testkit.berthd import BerthdProcess

pytestmark = pytest.mark.needs_root

SERVER = (
    "mkdir -p /www && echo tc-says-$HOSTNAME > /www/index.html;"
    " (sleep 1; echo server-ready) & exec httpd -f -v -p 8000 -h /www"
)


@pytest.fixture
def tc_env(berthd: BerthdProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """testcontainers reads the daemon from DOCKER_HOST (and writes it back into os.environ)."""
    monkeypatch.setenv("DOCKER_HOST", berthd.host)
    # Ryuk, testcontainers' reaper, is an image from the Hub that no test daemon has; the
    # containers here are stopped by the test itself.
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    yield


def test_generic_container_log_wait_port_stop(
    tc_env: None, berthd: BerthdProcess, busybox_image: str
) -> None:
    name = f"tc{uuid.uuid4().hex[:10]}"
    container = (
        DockerContainer("busybox:latest")
        .with_name(name)
        .with_command(["sh", "-c", SERVER])
        .with_exposed_ports(8000)
    )
    try:
        with container:
            # The structured form of wait_for_logs (the string form is deprecated in 4.x).
            waited = wait_for_logs(container, LogMessageWaitStrategy(re.compile(r"^server-ready$", re.M)),
                                   timeout=30)  # fmt: skip
            assert 0 <= waited < 30
            stdout, _ = container.get_logs()
            assert b"server-ready" in stdout

            host, port = container.get_container_host_ip(), container.get_exposed_port(8000)
            client = berthd.api_client()
            try:
                published = client.api.port(name, 8000)
            finally:
                client.close()
            assert published and int(published[0]["HostPort"]) == port
            with urllib.request.urlopen(f"http://{host}:{port}/", timeout=10) as resp:
                assert resp.read().decode().strip().startswith("tc-says-")
            # The request shows up in the container's log (httpd -v).
            wait_for_logs(container, LogMessageWaitStrategy("response:200"), timeout=10)
            assert berthd.docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
        # Leaving the block stops and removes the container (with its anonymous volumes).
        assert berthd.docker("inspect", name, check=False).returncode != 0
    finally:
        berthd.docker("rm", "-f", name, check=False)


def test_network_alias_exec_and_built_image(tc_env: None, berthd: BerthdProcess, busybox_image: str) -> None:
    server_cmd = "mkdir /w && echo net-hi > /w/index.html && echo up && exec httpd -f -p 80 -h /w"
    with Network() as net:
        server = (
            DockerContainer("busybox:latest")
            .with_network(net)
            .with_network_aliases("srv")
            .with_command(["sh", "-c", server_cmd])
            .waiting_for(LogMessageWaitStrategy("up"))
        )
        with (
            server,
            DockerContainer("busybox:latest").with_network(net).with_command(["sleep", "300"]) as client,
        ):
            result = client.exec(["wget", "-qO-", "http://srv/"])
            assert (result.exit_code, result.output) == (0, b"net-hi\n")
            assert list(server.get_wrapped_container().attrs["NetworkSettings"]["Networks"]) == [net.name]
        network_name = net.name
    assert berthd.docker("network", "inspect", network_name, check=False).returncode != 0

    # The compose test's api image, built by testcontainers (docker-py's build) and removed after.
    context = Path(__file__).resolve().parent / "compose" / "api"
    tag = f"berth-tc-{uuid.uuid4().hex[:8]}:1"
    with DockerImage(path=str(context), tag=tag) as image:
        web = DockerContainer(str(image)).with_exposed_ports(8080)
        with web.waiting_for(HttpWaitStrategy(8080).for_status_code(200)):
            url = f"http://{web.get_container_host_ip()}:{web.get_exposed_port(8080)}/"
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.read() == b"api-says-hi\n"
    assert berthd.docker("image", "inspect", tag, check=False).returncode != 0
