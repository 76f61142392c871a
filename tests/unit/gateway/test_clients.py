"""Real clients against the transport: docker-py and the docker CLI, with test-local stubs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import docker
import pytest

from gateway_svc.http import HijackedStream, HijackResponse, JSONResponse, Request, Response
from gateway_svc.router import Router

from .conftest import SERVER_VERSION, ServeFn

pytestmark = pytest.mark.anyio

DOCKER_CLI = "/usr/local/bin/docker"


class SeenRouter(Router):
    """Records ``METHOD path`` of every request it routes."""

    def __init__(self) -> None:
        super().__init__(server_version=SERVER_VERSION)
        self.seen: list[str] = []

    async def __call__(self, req: Request) -> Response:
        self.seen.append(f"{req.method} {req.path}")
        return await super().__call__(req)


def stub_app() -> SeenRouter:
    """/_ping (from the Router), a moby-shaped /version stub and a hijack echo."""
    r = SeenRouter()

    async def version(req: Request) -> Response:
        details = {"ApiVersion": "1.50", "MinAPIVersion": "1.24", "GitCommit": "test",
                   "GoVersion": "python", "Os": "linux", "Arch": "amd64",
                   "KernelVersion": "6.1", "BuildTime": "", "Experimental": "false"}
        return JSONResponse({
            "Platform": {"Name": "berth"},
            "Components": [{"Name": "Engine", "Version": SERVER_VERSION, "Details": details}],
            "Version": SERVER_VERSION, "ApiVersion": "1.50", "MinAPIVersion": "1.24",
            "GitCommit": "test", "GoVersion": "python", "Os": "linux", "Arch": "amd64",
            "KernelVersion": "6.1", "BuildTime": "", "SeenVersion": req.api_version,
        })

    async def attach(req: Request) -> Response:
        async def pump(stream: HijackedStream) -> None:
            data = b""
            async for chunk in stream:
                data += chunk
            await stream.send(data.upper())

        return HijackResponse(pump)

    r.add("GET", "/version", version)
    r.add("POST", "/containers/{name}/attach", attach)
    return r


async def test_docker_py_ping_version_and_hijack(serving: ServeFn) -> None:
    app = stub_app()
    async with serving(app) as path:

        def run() -> tuple[Any, ...]:
            with docker.APIClient(base_url=f"unix://{path}", version="1.41") as client:
                ping = client.ping()
                ver = client.version()
                # POST .../attach with Connection: Upgrade / Upgrade: tcp, then the raw socket.
                sock = client.attach_socket("c1", params={"stdin": 1, "stream": 1})
                raw = getattr(sock, "_sock", sock)
                raw.sendall(b"hello from docker-py")
                raw.shutdown(1)  # SHUT_WR
                got = b""
                while chunk := raw.recv(4096):
                    got += chunk
                raw.close()
            with docker.APIClient(base_url=f"unix://{path}", version="auto") as auto:
                negotiated = auto.api_version
            return ping, ver, got, negotiated

        with anyio.fail_after(30):
            ping, ver, got, negotiated = await anyio.to_thread.run_sync(run)
    assert ping is True
    assert ver["ApiVersion"] == "1.50"
    assert ver["SeenVersion"] == "1.41"
    assert got == b"HELLO FROM DOCKER-PY"
    assert negotiated == "1.50"
    assert app.seen == ["GET /v1.41/_ping", "GET /v1.41/version",
                        "POST /v1.41/containers/c1/attach", "GET /version"]


@pytest.mark.skipif(not os.access(DOCKER_CLI, os.X_OK), reason="docker CLI not installed")
async def test_docker_cli_version(serving: ServeFn, tmp_path: Path) -> None:
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "DOCKER_CONFIG": str(config)}
    app = stub_app()
    async with serving(app) as path:
        with anyio.fail_after(30):
            result = await anyio.run_process(
                [DOCKER_CLI, "-H", f"unix://{path}", "version", "--format", "{{json .Server}}"],
                env=env, check=False,
            )
    assert result.returncode == 0, result.stderr.decode()
    server = json.loads(result.stdout)
    assert server["Version"] == SERVER_VERSION
    assert server["ApiVersion"] == "1.50"
    assert server["MinAPIVersion"] == "1.24"
    assert server["Components"][0]["Details"]["ApiVersion"] == "1.50"
    # The CLI negotiated with HEAD /_ping, then talked /v1.50.
    assert app.seen == ["HEAD /_ping", "GET /v1.50/version"]
    shutil.rmtree(config)
