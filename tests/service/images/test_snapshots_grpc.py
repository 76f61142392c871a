"""Snapshots through the real ImagesServicer over grpc.aio on a unix socket, via ImagesClient."""

from __future__ import annotations

import functools
import os
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

import errdefs
import grpckit
from berthapi.images.v1 import images_pb2
from images_svc import server as images_server
from images_svc.api import ImportOptions
from images_svc.clients import ImagesClient
from images_svc.model import Change, ChangeKind
from images_svc.service import ImagesService
from images_svc.snapshots import mount_points
from images_svc.store import SqlImageStore
from statestore import open_store
from tests.unit.images.images_tarutil import E, make_tar
from tests.unit.images.mountutil import unmount_all_under

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

NODE = "d" * 32
KEY = "ab" * 32
IMAGES = images_pb2.DESCRIPTOR.services_by_name["Images"].full_name
ROOTFS = make_tar([
    E("etc/", type=tarfile.DIRTYPE, mode=0o755),
    E("etc/motd", data=b"welcome\n"),
    E("etc/hostname", data=b"base\n"),
])


@pytest.fixture
def data_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    root.mkdir()
    try:
        yield root
    finally:
        unmount_all_under(tmp_path)  # even when the test failed half-way


@pytest.fixture
async def client(tmp_path: Path, data_root: Path) -> AsyncIterator[ImagesClient]:
    state = await open_store(f"sqlite+aiosqlite:///{data_root / 'state.db'}")
    try:
        service = ImagesService(data_root, SqlImageStore(state, NODE), NODE)
        await service.reconcile()
        addr = f"unix://{tmp_path}/images.sock"
        server = grpckit.build_server(
            [(images_server.add_to_server, images_server.ImagesServicer(service))], addr, [IMAGES])
        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(grpckit.serve_grpc, server, grace=0.5))
            channel = grpckit.open_channel(addr)
            try:
                yield ImagesClient(channel)
            finally:
                await channel.close()
                tg.cancel_scope.cancel()
    finally:
        await state.aclose()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 4096):
        yield data[i : i + 4096]


async def _import(client: ImagesClient) -> str:
    events = [ev async for ev in client.import_image(ImportOptions(repo="snap/grpc"),
                                                     _chunks(ROOTFS))]
    return events[-1].status


async def test_prepare_mount_changes_remove(client: ImagesClient) -> None:
    image_id = await _import(client)
    snap = await client.prepare_snapshot(KEY, "snap/grpc", {"owner": "test"})
    assert (snap.key, snap.image_id, snap.node_id, snap.mounted) == (KEY, image_id, NODE, False)
    assert snap.labels == {"owner": "test"}
    assert snap.chain_ids == (await client.get_image(image_id)).chain_ids
    assert snap.merged_dir.endswith(f"/snapshots/{KEY}/merged")

    mounted = await client.mount_snapshot(KEY)
    assert mounted.mounted and snap.merged_dir in mount_points()
    assert (await client.mount_snapshot(KEY)).mounted  # idempotent
    merged = Path(snap.merged_dir)
    assert (merged / "etc/motd").read_bytes() == b"welcome\n"
    (merged / "etc/motd").unlink()
    (merged / "etc/hostname").write_bytes(b"mine\n")
    (merged / "added").write_bytes(b"+")
    assert await client.snapshot_changes(KEY) == [
        Change("/added", ChangeKind.ADDED),
        Change("/etc", ChangeKind.MODIFIED),
        Change("/etc/hostname", ChangeKind.MODIFIED),
        Change("/etc/motd", ChangeKind.DELETED),
    ]
    assert [s.key for s in await client.list_snapshots()] == [KEY]
    assert (await client.get_snapshot(KEY)).mounted

    assert not (await client.unmount_snapshot(KEY)).mounted
    assert snap.merged_dir not in mount_points()
    await client.mount_snapshot(KEY)
    await client.remove_snapshot(KEY)
    assert snap.merged_dir not in mount_points()
    assert KEY not in os.listdir(Path(snap.merged_dir).parent.parent)
    assert await client.list_snapshots() == []
    assert (await client.get_image("snap/grpc")).id == image_id  # the image stays


async def test_error_kinds_survive_the_hop(client: ImagesClient) -> None:
    with pytest.raises(errdefs.NotFound, match=f"No such snapshot: {KEY}"):
        await client.get_snapshot(KEY)
    with pytest.raises(errdefs.NotFound, match="No such image: missing"):
        await client.prepare_snapshot(KEY, "missing", {})
    with pytest.raises(errdefs.InvalidArgument, match="invalid snapshot key"):
        await client.prepare_snapshot("../../etc", "snap/grpc", {})
    with pytest.raises(errdefs.InvalidArgument):
        await client.mount_snapshot(KEY.upper())
    image_id = await _import(client)
    await client.prepare_snapshot(KEY, image_id, {})
    with pytest.raises(errdefs.AlreadyExists):
        await client.prepare_snapshot(KEY, image_id, {})
    with pytest.raises(errdefs.Conflict) as info:
        await client.remove_image(image_id, force=False, noprune=False)
    assert info.value.message == (
        f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
        f"image is being used by stopped container {KEY[:12]}"
    )
    items = await client.remove_image(image_id, force=True, noprune=False)
    assert [(i.untagged, i.deleted) for i in items] == [("snap/grpc:latest", "")]
    await client.remove_snapshot(KEY)
    with pytest.raises(errdefs.NotFound):
        await client.remove_snapshot(KEY)
