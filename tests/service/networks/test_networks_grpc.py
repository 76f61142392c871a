"""The real NetworksServicer over grpc.aio on a unix socket, via NetworksClient, with real netlink/nft.

The service runs with its own default bridge, nft table and netns directory; the fixture removes
the interfaces (by the service's ifalias) and the table afterwards, even when a test failed.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import errdefs
import grpckit
from berthapi.networks.v1 import networks_pb2
from networks_svc import netlink, nft
from networks_svc import server as networks_server
from networks_svc.clients import NetworksClient
from networks_svc.model import AttachRequest, EndpointConfig, IPAMConfig, IPAMPool, NetworkCreate, PortBinding
from networks_svc.service import NetworkConfig, NetworksService, pools_from_config
from networks_svc.store import SqlNetworkStore
from statestore import open_store
from testkit.netpeer import free_prefix

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

NODE = "e" * 32
C1, C2 = "a" * 64, "b" * 64
NETWORKS = networks_pb2.DESCRIPTOR.services_by_name["Networks"].full_name


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[NetworksService]:
    state = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
    slot = secrets.randbelow(200)
    cfg = NetworkConfig(
        exec_root=tmp_path / "exec",
        default_bridge=f"bts{secrets.token_hex(3)}",
        bip=f"10.197.{slot}.1/24",
        address_pools=pools_from_config([{"base": f"10.196.{slot}.0/24", "size": 26}]),
    )
    svc = NetworksService(cfg, SqlNetworkStore(state, NODE), NODE)
    try:
        await svc.reconcile()
        yield svc
    finally:
        with anyio.CancelScope(shield=True):
            for cid in (C1, C2):
                await svc.detach_endpoints(cid, remove=True)
            await anyio.to_thread.run_sync(netlink.delete_links_with_alias, cfg.alias)
            await nft.delete(cfg.table)
            await state.aclose()


@pytest.fixture
async def client(tmp_path: Path, service: NetworksService) -> AsyncIterator[NetworksClient]:
    addr = f"unix://{tmp_path}/networks.sock"
    server = grpckit.build_server(
        [(networks_server.add_to_server, networks_server.NetworksServicer(service))], addr, [NETWORKS]
    )
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(grpckit.serve_grpc, server, grace=0.5))
        channel = grpckit.open_channel(addr)
        try:
            yield NetworksClient(channel)
        finally:
            await channel.close()
            tg.cancel_scope.cancel()


async def test_crud_and_errors_over_grpc(client: NetworksClient, service: NetworksService) -> None:
    names = {n.name for n in await client.list_networks({})}
    assert names == {"bridge", "host", "none"}
    nid, warning = await client.create_network(NetworkCreate(name="g1", labels={"k": "v"}))
    assert warning == ""
    net = await client.get_network(nid[:8])
    assert net.name == "g1" and net.labels == {"k": "v"} and net.ipam.config[0].subnet.endswith("/26")
    assert [n.name for n in await client.list_networks({"label": ["k=v"]})] == ["g1"]
    with pytest.raises(errdefs.AlreadyExists, match="network with name g1 already exists"):
        await client.create_network(NetworkCreate(name="g1"))
    with pytest.raises(errdefs.NotFound, match="network nope not found"):
        await client.get_network("nope")
    with pytest.raises(errdefs.PermissionDenied, match="pre-defined network"):
        await client.remove_network("bridge")
    with pytest.raises(errdefs.InvalidArgument, match="invalid filter"):
        await client.list_networks({"colour": ["red"]})
    await client.remove_network("g1")
    assert await client.prune_networks({}) == []
    # An IPAM config without a subnet may not carry a range or gateway; an empty one asks the pools.
    with pytest.raises(errdefs.InvalidArgument, match="a subnet is required with an ip-range"):
        ranged = IPAMConfig(config=[IPAMPool("", "10.9.0.0/24")])
        await client.create_network(NetworkCreate(name="g3", ipam=ranged))
    nid, _ = await client.create_network(NetworkCreate(name="g3", ipam=IPAMConfig(config=[IPAMPool("")])))
    assert (await client.get_network(nid)).ipam.config[0].subnet
    await client.remove_network(nid)


async def test_reserve_attach_connect_detach_over_grpc(client: NetworksClient) -> None:
    p = await anyio.to_thread.run_sync(free_prefix, 195)
    await client.create_network(NetworkCreate(name="g2", ipam=IPAMConfig(config=[IPAMPool(f"{p}.0/24")])))
    with pytest.raises(errdefs.NotFound):
        await client.reserve_endpoints(AttachRequest(C1, "one", "missing"))
    req = AttachRequest(C1, "one", "g2", port_bindings={"80/tcp": [PortBinding("127.0.0.1", "")]})
    await client.reserve_endpoints(req)
    res = await client.attach_endpoints(req)
    ep = res.endpoints["g2"]
    assert ep.ip_address.startswith(f"{p}.") and ep.gateway == f"{p}.1" and ep.ip_prefix_len == 24
    assert res.ports[0].host_ip == "127.0.0.1" and res.ports[0].public_port > 0
    assert res.netns_path and await anyio.Path(res.netns_path).exists()
    assert await client.attach_endpoints(req) == res  # idempotent
    links = await anyio.run_process(["nsenter", f"--net={res.netns_path}", "ip", "-o", "-4", "addr"])
    assert f"{ep.ip_address}/24" in links.stdout.decode()
    await client.connect_network("bridge", C1, "one", EndpointConfig())
    assert set((await client.sandbox(C1) or res).endpoints) == {"g2", "bridge"}
    with pytest.raises(errdefs.PermissionDenied, match="already exists in network"):
        await client.connect_network("bridge", C1, "one", EndpointConfig())
    with pytest.raises(errdefs.PermissionDenied, match="active endpoints"):
        await client.remove_network("g2")
    await client.disconnect_network("bridge", C1)
    await client.detach_endpoints(C1)
    assert await client.sandbox(C1) is None
    assert not await anyio.Path(res.netns_path).exists()
    await client.detach_endpoints(C1, remove=True)
    await client.remove_network("g2")
