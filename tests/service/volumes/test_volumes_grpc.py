"""The real VolumesServicer over grpc.aio on a unix socket, via VolumesClient, with real mounts."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

import errdefs
import grpckit
from berthapi.volumes.v1 import volumes_pb2
from statestore import open_store
from volumes_svc import server as volumes_server
from volumes_svc.clients import VolumesClient
from volumes_svc.local import mount_points, unmount
from volumes_svc.service import VolumesService
from volumes_svc.store import SqlVolumeStore

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


NODE = "f" * 32
C1, C2 = "a" * 64, "b" * 64
VOLUMES = volumes_pb2.DESCRIPTOR.services_by_name["Volumes"].full_name


def _read(*parts: str | Path) -> str:
    return Path(*parts).read_text()


def _write(text: str, *parts: str | Path) -> None:
    Path(*parts).write_text(text)


def _exists(*parts: str | Path) -> bool:
    return Path(*parts).exists()


def _isdir(*parts: str | Path) -> bool:
    return Path(*parts).is_dir()


def _unmount_all_under(root: Path) -> None:
    prefix = str(root) + "/"
    for m in sorted((m for m in mount_points() if m.startswith(prefix)), key=len, reverse=True):
        unmount(Path(m))


@pytest.fixture
def data_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    root.mkdir()
    try:
        yield root
    finally:
        _unmount_all_under(tmp_path)  # even when the test failed half-way


@pytest.fixture
async def service(data_root: Path) -> AsyncIterator[VolumesService]:
    state = await open_store(f"sqlite+aiosqlite:///{data_root / 'state.db'}")
    try:
        svc = VolumesService(data_root, SqlVolumeStore(state, NODE), NODE)
        await svc.reconcile()
        yield svc
    finally:
        await state.aclose()


@pytest.fixture
async def client(tmp_path: Path, service: VolumesService) -> AsyncIterator[VolumesClient]:
    addr = f"unix://{tmp_path}/volumes.sock"
    server = grpckit.build_server(
        [(volumes_server.add_to_server, volumes_server.VolumesServicer(service))], addr, [VOLUMES])
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(grpckit.serve_grpc, server, grace=0.5))
        channel = grpckit.open_channel(addr)
        try:
            yield VolumesClient(channel)
        finally:
            await channel.close()
            tg.cancel_scope.cancel()


async def test_crud_and_errors_over_grpc(client: VolumesClient) -> None:
    v = await client.create_volume("grpc-vol", "", {}, {"a": "1"})
    assert (v.name, v.labels, v.options, v.node_id, v.size) == ("grpc-vol", {"a": "1"}, {}, NODE, -1)
    assert await client.get_volume("grpc-vol") == v
    listed = await client.list_volumes({"label": ["a=1"]}, usage=True)
    assert [(x.name, x.size, x.ref_count) for x in listed] == [("grpc-vol", 0, 0)]
    with pytest.raises(errdefs.NotFound, match="get nope: no such volume"):
        await client.get_volume("nope")
    with pytest.raises(errdefs.InvalidArgument, match="invalid characters"):
        await client.create_volume("../x", "", {}, {})
    res = await client.acquire_volume("grpc-vol", C1)
    assert not res.created and res.mountpoint == v.mountpoint
    with pytest.raises(errdefs.Conflict, match=rf"volume is in use - \[{C1}\]"):
        await client.remove_volume("grpc-vol")
    assert await client.release_volume("grpc-vol", C1) is False
    await client.remove_volume("grpc-vol")
    rep = await client.prune_volumes({"all": ["true"]})
    assert rep.deleted == []


async def test_tmpfs_mounted_while_referenced(client: VolumesClient) -> None:
    opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=0700"}
    v = await client.create_volume("tmp-vol", "local", opts, {})
    assert v.mountpoint not in mount_points()  # mounted on first use, not at create
    await client.acquire_volume("tmp-vol", C1)
    await client.acquire_volume("tmp-vol", C2)
    assert mount_points().count(v.mountpoint) == 1
    assert os.statvfs(v.mountpoint).f_blocks * os.statvfs(v.mountpoint).f_frsize == 1 << 20
    _write("in tmpfs", v.mountpoint, "f")
    await client.release_volume("tmp-vol", C1)
    assert v.mountpoint in mount_points()  # still referenced by C2
    await client.release_volume("tmp-vol", C2)
    assert v.mountpoint not in mount_points()
    assert not _exists(v.mountpoint, "f")  # the tmpfs content went with it
    await client.remove_volume("tmp-vol")


async def test_bind_volume_never_deletes_host_data(client: VolumesClient, tmp_path: Path) -> None:
    host = tmp_path / "host-dir"
    host.mkdir()
    _write("host data", host, "precious")
    opts = {"type": "none", "o": "bind,ro", "device": str(host)}
    v = await client.create_volume("bind-vol", "", opts, {})
    res = await client.acquire_volume("bind-vol", C1)
    assert _read(res.mountpoint, "precious") == "host data"
    with pytest.raises(OSError):
        _write("x", res.mountpoint, "new")  # ro bind
    with pytest.raises(errdefs.Conflict):
        await client.remove_volume("bind-vol", force=True)
    await client.release_volume("bind-vol", C1)
    assert v.mountpoint not in mount_points()
    await client.remove_volume("bind-vol")
    assert _read(host, "precious") == "host data"
    assert not _exists(v.mountpoint)


async def test_remove_refuses_while_something_is_mounted(
    client: VolumesClient, tmp_path: Path
) -> None:
    host = tmp_path / "host2"
    host.mkdir()
    _write("keep", host, "precious")
    v = await client.create_volume("plain", "", {}, {})
    sub = Path(v.mountpoint, "sub")
    os.mkdir(sub)
    # Someone else bind-mounted a host dir inside the volume: rm must not delete through it.
    from volumes_svc.local import MountSpec, mount

    mount(MountSpec("bind", str(host), 0, ""), sub)
    try:
        with pytest.raises(errdefs.Internal, match="still mounted"):
            await client.remove_volume("plain")
        assert _read(host, "precious") == "keep"
    finally:
        unmount(sub)


async def test_reconcile_remounts_referenced_and_unmounts_unreferenced(
    service: VolumesService, data_root: Path
) -> None:
    opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    used = (await service.acquire_volume("used", C1, driver_opts=opts)).volume
    idle = (await service.acquire_volume("idle", C1, driver_opts=opts)).volume
    await service.release_volume("idle", C1)
    # A crash: the referenced mount vanished (reboot) and the idle one was left mounted.
    unmount(Path(used.mountpoint))
    from volumes_svc.local import mount, parse_options

    spec = parse_options(opts)
    assert spec is not None
    mount(spec, Path(idle.mountpoint))
    await service.reconcile()
    assert used.mountpoint in mount_points()
    assert idle.mountpoint not in mount_points()


async def test_copy_up_into_new_volume(service: VolumesService, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "srv" / "www").mkdir(parents=True)
    (rootfs / "srv" / "www" / "index.html").write_text("hi")
    (rootfs / "link").symlink_to("/srv")
    res = await service.acquire_volume("", C1, copy_up_source=str(rootfs), copy_up_path="/link")
    assert _read(res.mountpoint, "www", "index.html") == "hi"
    # A second container on a volume that is no longer empty copies nothing.
    _write("x", rootfs, "srv", "other")
    await service.acquire_volume(res.volume.name, C2, copy_up_source=str(rootfs),
                                 copy_up_path="/srv")
    assert not _exists(res.mountpoint, "other")
