"""top, stats, update and healthchecks over gRPC (the split-mode path): ContainersClient against
ContainersServicer on a unix socket, with real containers (needs root)."""

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
from containers_svc.clients import ContainersClient
from containers_svc.service import ContainersService

from .conftest import req

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

SERVICE = containers_pb2.DESCRIPTOR.services_by_name["Containers"].full_name
MB = 1024 * 1024


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


async def test_top_stats_update_health_over_grpc(client: ContainersClient) -> None:
    hc = {"Test": ["CMD-SHELL", "echo ok"], "Interval": 200_000_000}
    cid = (await client.create_container(req("sleep", "1000", name="rt", Healthcheck=hc,
                                             host_config={"Memory": 64 * MB, "NetworkMode": "none"}))).id
    with pytest.raises(errdefs.Conflict, match=f"Container {cid} is not running"):
        await client.top_container("rt", "")
    [zero] = [d async for d in client.container_stats("rt", False, False)]
    assert zero["read"] == "0001-01-01T00:00:00Z" and zero["id"] == cid
    await client.start_container("rt")
    try:
        top = await client.top_container("rt", "-o pid,args")
        assert top.titles == ["PID", "COMMAND"] and [p[1] for p in top.processes] == ["sleep 1000"]
        [doc] = [d async for d in client.container_stats("rt", False, True)]
        assert doc["memory_stats"]["limit"] == 64 * MB and doc["pids_stats"]["current"] == 1
        warnings = await client.update_container("rt", {"Memory": 96 * MB, "PidsLimit": 10,
                                                        "RestartPolicy": {"Name": "always"}})
        assert warnings == []
        rec = await client.get_container("rt")
        assert (rec.host_config["Memory"], rec.host_config["PidsLimit"]) == (96 * MB, 10)
        assert rec.host_config["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
        with pytest.raises(errdefs.InvalidArgument, match="Minimum memory limit allowed is 6MB"):
            await client.update_container("rt", {"Memory": 1})
        with anyio.fail_after(10):
            while True:
                health = (await client.get_container("rt")).state.health
                if health is not None and health["Status"] == "healthy":
                    break
                await anyio.sleep(0.1)
        assert health["Log"][-1]["Output"] == "ok\n" and health["Log"][-1]["ExitCode"] == 0
        listed = await client.list_containers(False, 0, False, {"health": ["healthy"]})
        assert [r.id for r in listed] == [cid]
    finally:
        await client.remove_container("rt", True, False, False)
