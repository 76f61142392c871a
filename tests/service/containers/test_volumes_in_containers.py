"""Volumes in containers: named, anonymous, image VOLUMEs, copy-up, --volumes-from, tmpfs (needs root)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import errdefs
from containers_svc.api import CreateRequest, LogsOptions, WaitEvent
from containers_svc.service import ContainersService
from containers_svc.store import SqlContainerStore
from images_svc.api import ImportOptions
from testkit.fixtures import busybox_rootfs_tar
from volumes_svc.service import VolumesService
from volumes_svc.store import SqlVolumeStore

from .conftest import NODE, Env

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def vols(env: Env) -> VolumesService:
    v = VolumesService(env.data_root, SqlVolumeStore(env.state, NODE), NODE, env.events)
    await v.reconcile()
    return v


@pytest.fixture
async def vsvc(env: Env, vols: VolumesService) -> AsyncIterator[ContainersService]:
    service = ContainersService(env.data_root, env.exec_root, SqlContainerStore(env.state, NODE),
                                env.images, env.events, env.runtime, NODE, volumes=vols)  # fmt: skip
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        try:
            yield service
        finally:
            tg.cancel_scope.cancel()


def _image_tar() -> bytes:
    """busybox plus /data/file (0640, 1234:5678) and /empty, with VOLUME /data."""
    buf = io.BytesIO()
    with tarfile.open(busybox_rootfs_tar()) as src, tarfile.open(fileobj=buf, mode="w") as out:
        for m in src.getmembers():
            out.addfile(m, src.extractfile(m) if m.isfile() else None)
        d = tarfile.TarInfo("data")
        d.type, d.mode, d.uid, d.gid = tarfile.DIRTYPE, 0o750, 1234, 5678
        out.addfile(d)
        f = tarfile.TarInfo("data/file")
        f.mode, f.uid, f.gid, f.size = 0o640, 1234, 5678, 5
        out.addfile(f, io.BytesIO(b"image"))
    return buf.getvalue()


@pytest.fixture
async def data_image(env: Env) -> str:
    data = await anyio.to_thread.run_sync(_image_tar)
    opts = ImportOptions(repo="withdata", tag="latest", changes=["VOLUME /data"])
    async for _ in env.images.import_image(opts, _once(data)):
        pass
    return "withdata:latest"


def req(*cmd: str, image: str = "busybox", **hc: object) -> CreateRequest:
    return CreateRequest(name="", config={"Image": image, "Cmd": list(cmd)}, host_config=dict(hc),
                         networking_config={})  # fmt: skip


async def run(svc: ContainersService, r: CreateRequest) -> tuple[str, int, str]:
    cid = (await svc.create_container(r)).id
    events: list[WaitEvent] = []
    await svc.start_container(cid)
    with anyio.fail_after(30):
        async for ev in svc.wait_container(cid, "not-running"):
            events.append(ev)
    out = b"".join([e.data async for e in svc.container_logs(cid, LogsOptions())]).decode()
    return cid, events[-1].status_code, out


async def test_named_volume_survives_rm_and_is_shared(vsvc: ContainersService, vols: VolumesService) -> None:
    cid, code, _ = await run(vsvc, req("sh", "-c", "echo hello > /data/f", Binds=["v1:/data"]))
    assert code == 0
    mounts = (await vsvc.get_container(cid)).mounts
    vol = await vols.get_volume("v1")
    assert mounts == [{"Type": "volume", "Name": "v1", "Source": vol.mountpoint, "Destination": "/data",
                       "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""}]  # fmt: skip
    with pytest.raises(errdefs.Conflict, match="volume is in use"):
        await vols.remove_volume("v1")
    await vsvc.remove_container(cid, False, True, False)
    assert (await vols.get_volume("v1")).name == "v1"  # named: never removed by rm -v
    cid2, code, out = await run(vsvc, req("cat", "/data/f", Binds=["v1:/data:ro"]))
    assert (code, out) == (0, "hello\n")
    _, code, _ = await run(vsvc, req("sh", "-c", "echo x > /data/g", Binds=["v1:/data:ro"]))
    assert code != 0
    await vsvc.remove_container(cid2, False, False, False)


async def test_anonymous_volume_rm_v_and_plain_rm(vsvc: ContainersService, vols: VolumesService) -> None:
    cid, code, _ = await run(vsvc, CreateRequest(
        name="", config={"Image": "busybox", "Cmd": ["true"], "Volumes": {"/anon": {}}},
        host_config={}, networking_config={}))  # fmt: skip
    assert code == 0
    (mp,) = (await vsvc.get_container(cid)).mounts
    assert mp["Type"] == "volume" and len(mp["Name"]) == 64 and mp["Mode"] == "" and mp["RW"]
    await vsvc.remove_container(cid, False, False, False)
    assert (await vols.get_volume(mp["Name"])).anonymous  # plain rm keeps it
    cid, _, _ = await run(vsvc, req("true", Binds=["/anon2"]))
    name = (await vsvc.get_container(cid)).mounts[0]["Name"]
    await vsvc.remove_container(cid, False, True, False)
    with pytest.raises(errdefs.NotFound):
        await vols.get_volume(name)


async def test_auto_remove_drops_anonymous_volume(vsvc: ContainersService, vols: VolumesService) -> None:
    cid = (await vsvc.create_container(req("true", Binds=["/anon"], AutoRemove=True))).id
    name = (await vsvc.get_container(cid)).mounts[0]["Name"]
    it = vsvc.wait_container(cid, "removed")
    assert (await anext(it)).registered
    await vsvc.start_container(cid)
    with anyio.fail_after(30):
        await anext(it)
    with pytest.raises(errdefs.NotFound):
        await vols.get_volume(name)


async def test_image_volume_copy_up_keeps_mode_and_owner(
    vsvc: ContainersService, vols: VolumesService, data_image: str
) -> None:
    stat = "stat -c '%a %u:%g' /data /data/file && cat /data/file"
    cid, code, out = await run(vsvc, req("sh", "-c", stat, image=data_image))
    assert (code, out) == (0, "750 1234:5678\n640 1234:5678\nimage")
    (mp,) = (await vsvc.get_container(cid)).mounts
    assert mp["Type"] == "volume" and mp["Destination"] == "/data" and "CopyData" not in mp
    host = Path(mp["Source"]) / "file"
    assert host.read_text() == "image" and host.stat().st_uid == 1234
    _, code, out = await run(vsvc, req("sh", "-c", stat, image=data_image, Binds=["fresh:/data"]))
    assert out == "750 1234:5678\n640 1234:5678\nimage"
    _, code, out = await run(vsvc, req("ls", "-A", "/data", image=data_image, Mounts=[
        {"Type": "volume", "Source": "nc", "Target": "/data", "VolumeOptions": {"NoCopy": True}}]))
    assert (code, out) == (0, "")
    _, code, out = await run(vsvc, req("ls", "-A", "/data", image=data_image, Binds=["nc2:/data:nocopy"]))
    assert (code, out) == (0, "")


async def test_volumes_from_and_tmpfs(vsvc: ContainersService, tmp_path: Path) -> None:
    src, _, _ = await run(vsvc, req("sh", "-c", "echo shared > /v/f", Binds=["vf:/v"]))
    _, code, out = await run(vsvc, req("cat", "/v/f", VolumesFrom=[src]))
    assert (code, out) == (0, "shared\n")
    ro, code, _ = await run(vsvc, req("touch", "/v/g", VolumesFrom=[src + ":ro"]))
    assert code != 0 and (await vsvc.get_container(ro)).mounts[0]["RW"] is False
    with pytest.raises(errdefs.InvalidArgument, match="invalid mode for volumes-from: xx"):
        await vsvc.create_container(req("true", VolumesFrom=[src + ":xx"]))
    with pytest.raises(errdefs.NotFound):
        await vsvc.create_container(req("true", VolumesFrom=["nosuchctr"]))
    _, code, out = await run(vsvc, req("sh", "-c", "grep ' /t ' /proc/mounts", Mounts=[
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1777}}]))
    assert code == 0 and "tmpfs /t tmpfs" in out and "size=1024k" in out, out
    with pytest.raises(errdefs.InvalidArgument, match="bind source path does not exist: /nonexist"):
        await vsvc.create_container(req("true", Mounts=[{"Type": "bind", "Source": "/nonexist",
                                                          "Target": "/x"}]))  # fmt: skip
    with pytest.raises(errdefs.InvalidArgument, match="field VolumeOptions must not be specified"):
        bad = {"Type": "bind", "Source": str(tmp_path), "Target": "/x", "VolumeOptions": {"NoCopy": True}}
        await vsvc.create_container(req("true", Mounts=[bad]))
