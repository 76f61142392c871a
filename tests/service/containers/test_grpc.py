"""ContainersServicer over grpc.aio on a unix socket, driven through ContainersClient (needs root)."""

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
from containers_svc.api import AttachOptions, LogsOptions
from containers_svc.clients import ContainersClient
from containers_svc.service import ContainersService

from .conftest import req

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

SERVICE = containers_pb2.DESCRIPTOR.services_by_name["Containers"].full_name


@pytest.fixture
async def client(svc: ContainersService, tmp_path: Path) -> AsyncIterator[ContainersClient]:
    addr = f"unix://{tmp_path}/containers.sock"
    srv = grpckit.build_server(
        [(containers_server.add_to_server, containers_server.ContainersServicer(svc))], addr, [SERVICE]
    )
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(grpckit.serve_grpc, srv, grace=0.5))
        channel = grpckit.open_channel(addr)
        try:
            yield ContainersClient(channel)
        finally:
            await channel.close()
            tg.cancel_scope.cancel()


async def test_lifecycle_over_grpc(client: ContainersClient) -> None:
    cid = (await client.create_container(req("sh", "-c", "echo out; echo err >&2; exit 4", name="g1"))).id
    with pytest.raises(errdefs.Conflict, match='The container name "/g1" is already in use'):
        await client.create_container(req("true", name="g1"))
    with pytest.raises(errdefs.NotFound, match="No such image: nosuchimage"):
        await client.create_container(req("true", Image="nosuchimage"))
    rec = await client.get_container("g1")
    assert rec.id == cid and rec.config["Cmd"] == ["sh", "-c", "echo out; echo err >&2; exit 4"]
    assert rec.network_settings["Networks"].keys() == {"none"}
    it = client.wait_container(cid, "next-exit")
    assert (await anext(it)).registered
    await client.start_container(cid)
    with anyio.fail_after(30):
        assert (await anext(it)).status_code == 4
    entries = [e async for e in client.container_logs(cid, LogsOptions(timestamps=True))]
    got = {(e.stream, e.data.split(b" ", 1)[1]) for e in entries}
    assert got == {("stdout", b"out\n"), ("stderr", b"err\n")}
    frames = [f async for f in client.attach_container(cid, AttachOptions(logs=True, stream=False), None)]
    assert frames[0].ready
    assert sorted((f.stream, f.data) for f in frames[1:]) == [(1, b"out\n"), (2, b"err\n")]
    with pytest.raises(errdefs.NotModified):
        await client.stop_container(cid, None, "")
    assert [r.id for r in await client.list_containers(True, 0, False, {"name": ["g1"]})] == [cid]
    assert await client.list_containers(False, 0, False, {}) == []
    await client.rename_container(cid, "g2")
    assert (await client.get_container("g2")).name == "/g2"
    await client.remove_container(cid, False, False, False)
    with pytest.raises(errdefs.NotFound, match="No such container: g2"):
        await client.get_container("g2")
