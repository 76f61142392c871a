"""Exec routes over real sockets with a fake backend: create, hijacked/detached start, resize, inspect."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import anyio
import anyio.abc
import pytest

import errdefs
from containers_svc.api import ExecConfig, ExecRecord, OutputFrame
from gateway_svc.backend import Backends
from gateway_svc.router import Router
from gateway_svc.routes.exec import ExecRoutes, exec_config_from_json
from gateway_svc.streams import FrameDecoder

from .client import fetch, read_until_eof
from .conftest import ServeFn

pytestmark = pytest.mark.anyio

CID = "c" * 64


class FakeExecs:
    """Exec half of ContainersAPI: ``echo`` prints its args, ``cat`` echoes stdin, ``fail`` is 127."""

    def __init__(self) -> None:
        self.execs: dict[str, ExecRecord] = {}
        self.resized: list[tuple[str, int, int]] = []
        self.stdin_ended = False

    async def create_exec(self, ref: str, config: ExecConfig) -> str:
        if ref == "stopped":
            raise errdefs.Conflict("container " + CID + " is not running")
        if ref != "c":
            raise errdefs.NotFound(f"No such container: {ref}")
        eid = f"{len(self.execs) + 1:02x}" * 32
        self.execs[eid] = ExecRecord(id=eid, container_id=CID, config=config)
        return eid

    async def get_exec(self, exec_id: str) -> ExecRecord:
        if exec_id not in self.execs:
            raise errdefs.NotFound(f"No such exec instance: {exec_id}")
        return self.execs[exec_id]

    async def resize_exec(self, exec_id: str, height: int, width: int) -> None:
        await self.get_exec(exec_id)
        self.resized.append((exec_id, height, width))

    async def start_exec(
        self, exec_id: str, detach: bool, tty: bool, stdin: AsyncIterator[bytes] | None
    ) -> AsyncIterator[OutputFrame]:
        rec = await self.get_exec(exec_id)
        if rec.running or rec.exit_code is not None:
            raise errdefs.Conflict(f"Error: Exec command {exec_id} is already running")
        rec.running = True
        yield OutputFrame(ready=True)
        cmd = rec.config.cmd
        if detach:
            return
        if cmd[0] == "echo":
            yield OutputFrame(1, " ".join(cmd[1:]).encode() + b"\n")
            yield OutputFrame(2, b"warn\n")
        elif cmd[0] == "cat" and stdin is not None:
            async for chunk in stdin:
                yield OutputFrame(1, chunk)
            self.stdin_ended = True
        rec.running, rec.exit_code = False, 0


@pytest.fixture
def fake() -> FakeExecs:
    return FakeExecs()


@pytest.fixture
async def api(serving: ServeFn, fake: FakeExecs) -> AsyncIterator[Path]:
    router = Router(server_version="9.9.9-test")
    ExecRoutes(cast(Backends, SimpleNamespace(containers=fake))).register(router)
    async with serving(router) as path:
        yield path


async def create(api: Path, ref: str, **body: object) -> str:
    r = await fetch(api, "POST", f"/v1.50/containers/{ref}/exec", [("Content-Type", "application/json")],
                    json.dumps(body).encode())
    assert r.status == 201, r.body
    eid = json.loads(r.body)["Id"]
    assert isinstance(eid, str)
    return eid


def start_request(eid: str, body: dict[str, object], version: str = "1.50", upgrade: bool = True) -> bytes:
    data = json.dumps(body).encode()
    up = b"Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else b""
    return (f"POST /v{version}/exec/{eid}/start HTTP/1.1\r\nHost: d\r\n".encode() + up
            + b"Content-Type: application/json\r\nContent-Length: " + str(len(data)).encode()
            + b"\r\n\r\n" + data)


async def read_head(stream: anyio.abc.ByteStream) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += await stream.receive()
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def test_exec_config_from_json() -> None:
    cfg = exec_config_from_json({"Cmd": ["sh", "-c", "x"], "AttachStdin": True, "Tty": True,
                                 "ConsoleSize": [40, 120], "Env": ["A=1"], "User": "nobody",
                                 "WorkingDir": "/tmp", "Privileged": True, "DetachKeys": "ctrl-x"})
    assert cfg == ExecConfig(cmd=["sh", "-c", "x"], attach_stdin=True, attach_stdout=False,
                             attach_stderr=False, tty=True, console_size=(40, 120), detach_keys="ctrl-x",
                             env=["A=1"], privileged=True, user="nobody", working_dir="/tmp")
    assert exec_config_from_json({"Cmd": "ls"}).cmd == ["ls"]
    bad: object
    for bad in ([], {"Cmd": [1]}, {"Cmd": ["x"], "DetachKeys": "ctrl-"}, {"ConsoleSize": "big"}):
        with pytest.raises(errdefs.InvalidArgument):
            exec_config_from_json(bad)


async def test_create_inspect_and_errors(api: Path, fake: FakeExecs) -> None:
    eid = await create(api, "c", Cmd=["echo", "hi"], AttachStdout=True, User="nobody")
    r = await fetch(api, "GET", f"/v1.50/exec/{eid}/json")
    assert r.status == 200
    assert json.loads(r.body) == {
        "CanRemove": False, "ContainerID": CID, "DetachKeys": "", "ExitCode": None, "ID": eid,
        "OpenStderr": False, "OpenStdin": False, "OpenStdout": False, "Running": False, "Pid": 0,
        "ProcessConfig": {"arguments": ["hi"], "entrypoint": "echo", "privileged": False, "tty": False,
                          "user": "nobody"},
    }
    r = await fetch(api, "POST", "/v1.50/containers/stopped/exec", [], b'{"Cmd":["true"]}')
    assert r.status == 409 and json.loads(r.body) == {"message": f"container {CID} is not running"}
    r = await fetch(api, "GET", "/v1.50/exec/nope/json")
    assert r.status == 404 and json.loads(r.body) == {"message": "No such exec instance: nope"}
    r = await fetch(api, "POST", f"/v1.50/exec/{eid}/resize?h=30&w=100")
    assert r.status == 200 and fake.resized == [(eid, 30, 100)]
    r = await fetch(api, "POST", f"/v1.50/exec/{eid}/resize?h=x&w=100")
    assert r.status == 400


async def test_start_hijacks_with_frames_then_inspect_has_exit_code(api: Path, fake: FakeExecs) -> None:
    eid = await create(api, "c", Cmd=["echo", "hi"], AttachStdout=True, AttachStderr=True)
    stream = await anyio.connect_unix(api)
    async with stream:
        await stream.send(start_request(eid, {"Detach": False, "Tty": False}))
        head, rest = await read_head(stream)
        assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
        assert b"Content-Type: application/vnd.docker.multiplexed-stream" in head
        body = rest + await read_until_eof(stream)
    assert list(FrameDecoder().feed(body)) == [(1, b"hi\n"), (2, b"warn\n")]
    r = await fetch(api, "GET", f"/v1.50/exec/{eid}/json")
    assert json.loads(r.body)["ExitCode"] == 0
    # a second start is refused before any hijack
    r = await fetch(api, "POST", f"/v1.50/exec/{eid}/start", [], b'{"Detach":false}')
    assert r.status == 409


async def test_start_tty_raw_200_without_upgrade_and_stdin(api: Path, fake: FakeExecs) -> None:
    eid = await create(api, "c", Cmd=["cat"], AttachStdin=True, AttachStdout=True, Tty=True)
    stream = await anyio.connect_unix(api)
    async with stream:
        await stream.send(start_request(eid, {"Detach": False, "Tty": True}, "1.41", upgrade=False))
        head, rest = await read_head(stream)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Type: application/vnd.docker.raw-stream" in head
        await stream.send(b"typed\n")
        await stream.send_eof()
        body = rest + await read_until_eof(stream)
    assert body == b"typed\n" and fake.stdin_ended


async def test_detached_start_is_empty_200(api: Path, fake: FakeExecs) -> None:
    eid = await create(api, "c", Cmd=["sleep", "10"])
    r = await fetch(api, "POST", f"/v1.50/exec/{eid}/start", [("Content-Type", "application/json")],
                    b'{"Detach":true,"Tty":false}')
    assert r.status == 200 and r.body == b""
    assert fake.execs[eid].running
    r = await fetch(api, "POST", "/v1.50/exec/nope/start", [], b'{"Detach":true}')
    assert r.status == 404
