"""docker-py behaviours its integration suite relies on: links, log drivers, exec, attach/ws, pulls."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import websocket

from testkit.berthd import BerthdProcess
from testkit.registry import RegistryServer, free_port


def _name() -> str:
    return f"c28{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cleanup(dockerpy: Any) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for n in names:
        try:
            dockerpy.api.remove_container(n, force=True)
        except docker.errors.NotFound:
            pass


def test_link_env_and_hosts(dockerpy: Any, busybox_image: str, cleanup: list[str]) -> None:
    api = dockerpy.api
    child, parent = _name(), _name()
    cleanup += [child, parent]
    api.create_container("busybox", "cat", stdin_open=True, name=child, environment={"FOO": "1"},
                         ports=[6379, (53, "udp")])
    api.start(child)
    child_ip = api.inspect_container(child)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    hc = api.create_host_config(links={child: "my-link"}, network_mode="bridge")
    api.create_container("busybox", ["sh", "-c", "env; cat /etc/hosts"], name=parent, host_config=hc)
    api.start(parent)
    assert api.wait(parent)["StatusCode"] == 0
    out = api.logs(parent).decode()
    env = set(out.splitlines())
    assert f"MY_LINK_NAME=/{parent}/my-link" in env
    assert "MY_LINK_ENV_FOO=1" in env
    assert not any(e.startswith(("MY_LINK_ENV_PATH=", "MY_LINK_ENV_HOME=")) for e in env)
    assert f"MY_LINK_PORT=udp://{child_ip}:53" in env  # the lowest port is the default
    assert f"MY_LINK_PORT_6379_TCP=tcp://{child_ip}:6379" in env
    assert f"MY_LINK_PORT_6379_TCP_ADDR={child_ip}" in env
    assert "MY_LINK_PORT_6379_TCP_PORT=6379" in env and "MY_LINK_PORT_53_UDP_PROTO=udp" in env
    assert any(line.startswith(child_ip) and "my-link" in line.split() for line in out.splitlines())


def test_remove_link(dockerpy: Any, busybox_image: str, cleanup: list[str]) -> None:
    api = dockerpy.api
    child, parent = _name(), _name()
    cleanup += [child, parent]
    api.create_container("busybox", "cat", stdin_open=True, name=child)
    api.start(child)
    api.create_container("busybox", "cat", stdin_open=True, name=parent,
                         host_config=api.create_host_config(links={child: "mylink"}))
    api.start(parent)
    exec_id = api.exec_create(parent, "env")["Id"]
    assert f"MYLINK_NAME=/{parent}/mylink" in api.exec_start(exec_id).decode().splitlines()  # as dockerd
    api.remove_container(f"{parent}/mylink", link=True)
    assert not api.inspect_container(parent)["HostConfig"]["Links"]
    assert {c["Id"] for c in api.containers(all=True)} >= {api.inspect_container(n)["Id"]
                                                            for n in (child, parent)}
    with pytest.raises(docker.errors.NotFound):
        api.remove_container(f"{parent}/mylink", link=True)
    with pytest.raises(docker.errors.APIError) as err:
        api.remove_container(child, link=True)
    assert err.value.status_code == 500  # moby's rmLink returns a plain error
    assert err.value.explanation == "Conflict, cannot remove the default link name of the container"


def test_unknown_log_driver_fails_create(dockerpy: Any, busybox_image: str) -> None:
    api = dockerpy.api
    name = _name()
    lc = docker.types.LogConfig(type="asdf", config={})
    with pytest.raises(docker.errors.APIError) as err:
        api.create_container("busybox", ["true"], name=name,
                             host_config=api.create_host_config(log_config=lc))
    assert err.value.status_code == 400
    assert err.value.explanation == "logger: no log driver named 'asdf' is registered"
    assert not api.containers(all=True, filters={"name": name})
    lc = docker.types.LogConfig(type="json-file", config={"mode": "sometimes"})
    with pytest.raises(docker.errors.APIError) as err:
        api.create_container("busybox", ["true"], host_config=api.create_host_config(log_config=lc))
    assert err.value.explanation == "logger: logging mode not supported: sometimes"


def test_exec_of_missing_command_is_126(dockerpy: Any, busybox_image: str, cleanup: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    c = dockerpy.containers.run("busybox", "sleep 60", detach=True, name=name)
    code, out = c.exec_run("docker ps")
    assert code == 126 and b"executable file not found" in out
    code, _ = c.exec_run("sh -c 'exit 127'")
    assert code == 127  # the command's own status passes through


def test_exec_detach_keys_from_config(dockerpy: Any, busybox_image: str, cleanup: list[str]) -> None:
    api = dockerpy.api
    name = _name()
    cleanup.append(name)
    api._general_configs["detachKeys"] = "ctrl-p"  # what ~/.docker/config.json gives docker-py
    try:
        api.create_container("busybox", "cat", stdin_open=True, name=name)
        api.start(name)
        exec_id = api.exec_create(name, "cat", stdin=True, tty=True, stdout=True)["Id"]
        assert api.exec_inspect(exec_id)["DetachKeys"] == "ctrl-p"  # sent as "detachKeys"
        sock = api.exec_start(exec_id, tty=True, socket=True)
        raw = sock._sock
        try:
            raw.sendall(b"abc\n")
            time.sleep(0.5)
            raw.sendall(b"\x10")  # ctrl-p
            raw.settimeout(10)
            seen = b""
            while chunk := raw.recv(4096):  # the server closes the session on the detach
                seen += chunk
            assert b"abc" in seen
        finally:
            sock.close()
        assert api.exec_inspect(exec_id)["Running"]  # detached, not ended
    finally:
        api._general_configs.pop("detachKeys", None)


def test_attach_logs_right_after_the_header(dockerpy: Any, busybox_image: str) -> None:
    """docker-py reads the hijack header buffered and the stream raw: output sent in the same
    read as the header was lost (about one attach in twenty before the header wait)."""
    api = dockerpy.api
    for _ in range(20):
        cid = api.create_container("busybox", "echo hello")["Id"]
        try:
            api.start(cid)
            api.wait(cid, condition="not-running")
            assert api.attach(cid, stream=False, logs=True) == b"hello\n"
        finally:
            api.remove_container(cid, force=True)


def _ws(berthd: BerthdProcess, path: str) -> websocket.WebSocket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(berthd.socket_path))
    conn: websocket.WebSocket = websocket.create_connection(f"ws://localhost{path}", socket=sock, timeout=20)
    return conn


def test_attach_websocket(berthd: BerthdProcess, dockerpy: Any, busybox_image: str,
                          cleanup: list[str]) -> None:
    api = dockerpy.api
    name = _name()
    cleanup.append(name)
    line = "hi there and stuff and things, words!"
    api.create_container("busybox", ["printf", line], name=name)
    ws = _ws(berthd, f"/v1.41/containers/{name}/attach/ws?stdout=1&stream=1&logs=1")
    try:
        api.start(name)
        opcode, data = ws.recv_data()
        assert (opcode, data) == (websocket.ABNF.OPCODE_BINARY, line.encode())
    finally:
        ws.close()
    # stdin goes in as frames and comes back from cat; API < 1.28 sends text frames
    name2 = _name()
    cleanup.append(name2)
    api.create_container("busybox", "cat", stdin_open=True, name=name2)
    api.start(name2)
    ws = _ws(berthd, f"/v1.27/containers/{name2}/attach/ws?stream=1")
    try:
        ws.send_binary(b"echo me\n")
        opcode, data = ws.recv_data()
        assert (opcode, data) == (websocket.ABNF.OPCODE_TEXT, b"echo me\n")
    finally:
        ws.close()
    # not a websocket handshake: 400
    with pytest.raises(docker.errors.APIError) as err:
        api._result(api._get(api._url("/containers/{0}/attach/ws", name2)))
    assert err.value.status_code == 400


def test_dockerpy_attach_socket_ws_over_tcp(berthd: BerthdProcess, busybox_image: str) -> None:
    """docker-py's own ws=True path; it builds ws:// URLs, so it needs a tcp:// host (loopback)."""
    base = Path(tempfile.mkdtemp(prefix="berth-28t-", dir="/tmp"))
    archive = base / "busybox.tar"
    berthd.docker("save", "-o", str(archive), "busybox:latest")
    port = free_port()
    proc = BerthdProcess(base / "d", extra_args=["-H", f"tcp://127.0.0.1:{port}", "--tls=false"])
    try:
        proc.start()
        proc.docker("load", "-i", str(archive))
        api = docker.APIClient(base_url=f"tcp://127.0.0.1:{port}", version="1.41")
        line = "hi there and stuff and things, words!"
        cid = api.create_container("busybox", f"printf '{line}'", detach=True, tty=False)["Id"]
        ws = api.attach_socket(cid, {"stdout": 1, "stream": 1, "logs": 1}, ws=True)
        try:
            api.start(cid)
            assert ws.recv().decode() == line
        finally:
            ws.close()
            api.remove_container(cid, force=True)
            api.close()
    finally:
        proc.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def mirrored(berthd: BerthdProcess, busybox_image: str) -> Iterator[tuple[BerthdProcess, str]]:
    """A daemon whose docker.io is a local mirror holding library/busybox:latest (hub off)."""
    if shutil.which("docker-registry") is None or shutil.which("skopeo") is None:
        pytest.skip("needs docker-registry and skopeo")
    base = Path(tempfile.mkdtemp(prefix="berth-28-", dir="/tmp"))
    try:
        archive = base / "busybox.tar"
        berthd.docker("save", "-o", str(archive), "busybox:latest")
        with RegistryServer(base / "mirror") as mirror:
            ref = f"{mirror.host}/library/busybox:latest"
            subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                            f"docker-archive:{archive}", f"docker://{ref}"],
                           check=True, capture_output=True, timeout=120)
            digest = json.loads(subprocess.run(
                ["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                check=True, capture_output=True, text=True, timeout=60).stdout)["Digest"]
            proc = BerthdProcess(base / "d", extra_args=["--registry-mirror", f"http://{mirror.host}"],
                                 env={"BERTH_REGISTRY_HUB": "0"})
            proc.start()
            try:
                yield proc, str(digest)
            finally:
                proc.cleanup()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_pull_of_missing_repository(mirrored: tuple[BerthdProcess, str]) -> None:
    proc, _ = mirrored
    client = proc.api_client()
    try:
        with pytest.raises(docker.errors.ImageNotFound) as err:
            client.containers.run("dockerpytest_does_not_exist")
        assert err.value.explanation == (
            "pull access denied for dockerpytest_does_not_exist, repository does not exist or may "
            "require 'docker login': denied: requested access to the resource is denied")
        # The repository exists, the tag does not: the registry's manifest unknown.
        with pytest.raises(docker.errors.NotFound) as err2:
            client.images.pull("busybox", tag="nosuchtag")
        assert err2.value.explanation == (
            "manifest for busybox:nosuchtag not found: manifest unknown: manifest unknown")
    finally:
        client.close()


def test_inspect_distribution(mirrored: tuple[BerthdProcess, str]) -> None:
    proc, digest = mirrored
    client = proc.api_client()
    try:
        data = client.api.inspect_distribution("busybox:latest")
        assert data["Descriptor"]["digest"] == digest
        assert data["Descriptor"]["mediaType"].endswith(("manifest.v2+json", "manifest.v1+json"))
        assert data["Descriptor"]["size"] > 0
        assert data["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
        assert not client.images.list()  # nothing was pulled
        with pytest.raises(docker.errors.NotFound):
            client.api.inspect_distribution("dockerpytest_does_not_exist")
    finally:
        client.close()


def test_pull_with_hub_off_and_no_mirror(dockerpy: Any) -> None:
    """testkit daemons run with BERTH_REGISTRY_HUB=0: no traffic leaves, and the error says why."""
    with pytest.raises(docker.errors.APIError) as err:
        dockerpy.images.pull("dockerpytest_does_not_exist", tag="latest")
    assert "docker.io is switched off (BERTH_REGISTRY_HUB=0) and no registry mirror is set" in str(
        err.value.explanation)
