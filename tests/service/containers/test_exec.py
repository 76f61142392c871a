"""Exec sessions in real busybox containers under conmon + crun (needs root)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import errdefs
import grpckit
from berthapi.containers.v1 import containers_pb2
from containers_svc import server as containers_server
from containers_svc.api import ExecConfig, OutputFrame
from containers_svc.clients import ContainersClient
from containers_svc.service import ContainersService
from events_svc.model import Event

from .conftest import Env, req

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


async def running(svc: ContainersService, env: list[str] | None = None) -> str:
    cid = (await svc.create_container(req("sleep", "300", Env=env or []))).id
    await svc.start_container(cid)
    return cid


async def run_exec(
    svc: ContainersService, cid: str, *cmd: str, stdin: AsyncIterator[bytes] | None = None, **kw: object
) -> tuple[list[OutputFrame], int | None]:
    eid = await svc.create_exec(cid, ExecConfig(cmd=list(cmd), attach_stdin=stdin is not None,
                                                **kw))  # type: ignore[arg-type]
    frames: list[OutputFrame] = []
    with anyio.fail_after(30):
        async for f in svc.start_exec(eid, False, False, stdin):
            frames.append(f)
    assert frames[0].ready
    return frames[1:], (await svc.get_exec(eid)).exit_code


def out(frames: list[OutputFrame], stream: int = 1) -> bytes:
    return b"".join(f.data for f in frames if f.stream == stream)


async def test_echo_exit_codes_and_streams(svc: ContainersService, env: Env) -> None:
    seen: list[Event] = []

    async def collect() -> None:
        async for ev in env.events.subscribe(0, 0, {"type": ["container"]}):
            seen.append(ev)

    cid = await running(svc)
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        await anyio.sleep(0.01)
        frames, code = await run_exec(svc, cid, "echo", "hi")
        await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    assert out(frames) == b"hi\n" and code == 0
    actions = [e.action for e in seen if "execID" in e.attributes]
    assert actions == ["exec_create: echo hi", "exec_start: echo hi", "exec_die"]
    die = next(e for e in seen if e.action == "exec_die")
    assert die.attributes["exitCode"] == "0" and len(die.attributes["execID"]) == 64
    frames, code = await run_exec(svc, cid, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert out(frames, 1) == b"out\n" and out(frames, 2) == b"err\n" and code == 7
    await svc.remove_container(cid, True, False, False)


async def test_user_env_workdir_and_stdin(svc: ContainersService) -> None:
    cid = await running(svc, ["A=container", "B=kept"])
    frames, _ = await run_exec(svc, cid, "id", "-u", user="nobody")
    assert out(frames) == b"65534\n"
    frames, _ = await run_exec(svc, cid, "sh", "-c", 'echo "$A $B $HOME"; pwd', env=["A=exec"],
                               working_dir="/tmp")
    assert out(frames) == b"exec kept /root\n/tmp\n"

    async def data() -> AsyncIterator[bytes]:
        yield b"some "
        yield b"data\n"

    frames, code = await run_exec(svc, cid, "cat", stdin=data())
    assert out(frames) == b"some data\n" and code == 0
    await svc.remove_container(cid, True, False, False)


async def test_missing_command_and_inspect(svc: ContainersService) -> None:
    cid = await running(svc)
    frames, code = await run_exec(svc, cid, "nosuchcmd")
    assert code == 126 and b'exec: "nosuchcmd": executable file not found in $PATH' in out(frames)
    eid = await svc.create_exec(cid, ExecConfig(cmd=["sleep", "30"]))
    assert (await svc.get_container(cid)).exec_ids == [eid]
    rec = await svc.get_exec(eid)
    assert not rec.running and rec.exit_code is None and rec.container_id == cid
    frames_it = svc.start_exec(eid, True, False, None)
    assert [f.ready async for f in frames_it] == [True]
    rec = await svc.get_exec(eid)
    assert rec.running and rec.pid > 0
    with pytest.raises(errdefs.Conflict, match="already running"):
        async for _ in svc.start_exec(eid, False, False, None):
            pass
    with pytest.raises(errdefs.InvalidArgument, match="No exec command"):
        await svc.create_exec(cid, ExecConfig(cmd=[]))
    with pytest.raises(errdefs.NotFound, match="No such exec instance: nope"):
        await svc.get_exec("nope")
    await svc.kill_container(cid, "SIGKILL")
    for _ in range(200):  # the session's conmon reports the exit shortly after the container's
        if (await svc.get_exec(eid)).exit_code is not None:
            break
        await anyio.sleep(0.05)
    assert (await svc.get_exec(eid)).exit_code == 137
    assert (await svc.get_container(cid)).exec_ids == []
    with pytest.raises(errdefs.Conflict, match=f"container {cid} is not running"):
        await svc.create_exec(cid, ExecConfig(cmd=["true"]))
    await svc.remove_container(cid, True, False, False)
    with pytest.raises(errdefs.NotFound):
        await svc.get_exec(eid)


async def test_paused_container_refuses_exec(svc: ContainersService) -> None:
    cid = await running(svc)
    await svc.pause_container(cid)
    with pytest.raises(errdefs.Conflict, match="is paused, unpause the container before exec"):
        await svc.create_exec(cid, ExecConfig(cmd=["true"]))
    await svc.unpause_container(cid)
    await svc.remove_container(cid, True, False, False)


async def test_tty_exec_is_one_stream(svc: ContainersService) -> None:
    cid = await running(svc)
    frames, code = await run_exec(svc, cid, "sh", "-c", "echo out; echo err >&2; tty", tty=True)
    text = out(frames)
    assert code == 0 and b"out\r\n" in text and b"err\r\n" in text and b"/dev/pts/" in text
    assert not out(frames, 2)
    await svc.remove_container(cid, True, False, False)


@pytest.fixture
async def client(svc: ContainersService, tmp_path: Path) -> AsyncIterator[ContainersClient]:
    addr = f"unix://{tmp_path}/containers.sock"
    name = containers_pb2.DESCRIPTOR.services_by_name["Containers"].full_name
    srv = grpckit.build_server(
        [(containers_server.add_to_server, containers_server.ContainersServicer(svc))], addr, [name]
    )
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(grpckit.serve_grpc, srv, grace=0.5))
        channel = grpckit.open_channel(addr)
        try:
            yield ContainersClient(channel)
        finally:
            await channel.close()
            tg.cancel_scope.cancel()


async def test_exec_over_grpc(svc: ContainersService, client: ContainersClient) -> None:
    cid = await running(svc)
    cfg = ExecConfig(cmd=["sh", "-c", "cat; echo err >&2; exit 5"], attach_stdin=True, env=["X=1"],
                     console_size=(20, 70), user="nobody", working_dir="/tmp")
    eid = await client.create_exec(cid, cfg)
    assert (await client.get_exec(eid)).config == cfg

    async def data() -> AsyncIterator[bytes]:
        yield b"piped\n"

    with anyio.fail_after(30):
        frames = [f async for f in client.start_exec(eid, False, False, data())]
    assert frames[0].ready
    assert out(frames[1:], 1) == b"piped\n" and out(frames[1:], 2) == b"err\n"
    rec = await client.get_exec(eid)
    assert rec.exit_code == 5 and not rec.running and rec.open_stdin
    await client.resize_exec(eid, 10, 10)  # exited: a no-op
    with pytest.raises(errdefs.NotFound, match="No such exec instance: x"):
        await client.get_exec("x")
    await svc.remove_container(cid, True, False, False)
