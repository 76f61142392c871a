"""Push through RegistryService to a real docker-registry: chunked uploads, HEAD reuse, cross-repo mount."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from images_svc.api import ImportOptions
from images_svc.service import ImagesService
from images_svc.store import SqlImageStore
from registry_svc.api import PullOptions, PushOptions
from registry_svc.service import RegistryService
from registry_svc.transport import TransportConfig
from statestore import open_store
from testkit.registry import RegistryServer

pytestmark = [
    pytest.mark.anyio, pytest.mark.needs_root,
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry"),
]

NODE = "f" * 32


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "reg") as reg:
        yield reg


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[tuple[RegistryService, ImagesService]]:
    root = tmp_path / "root"
    root.mkdir()
    state = await open_store(f"sqlite+aiosqlite:///{root / 'state.db'}")
    try:
        images = ImagesService(root, SqlImageStore(state, NODE), NODE)
        await images.reconcile()
        yield RegistryService(root, images, TransportConfig(certs_dir=tmp_path / "certs.d")), images
    finally:
        await state.aclose()


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _rootfs() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        payload = os.urandom(300 << 10)
        ti = tarfile.TarInfo("blob.bin")
        ti.size = len(payload)
        tf.addfile(ti, io.BytesIO(payload))
    return buf.getvalue()


async def test_chunked_push_mount_and_pull_back(services: tuple[RegistryService, ImagesService],
                                                registry: RegistryServer) -> None:
    reg, images = services
    reg.pusher.chunk_size = 64 << 10  # the 300 KiB layer goes in five PATCHes
    a = f"{registry.host}/one/img:1"
    [ev async for ev in images.import_image(ImportOptions(repo=a), _one(_rootfs()))]
    lines = [f"{e.id}: {e.status}" async for e in reg.push_image(PushOptions(ref=a))]
    assert sum("Pushing" in ln for ln in lines) >= 5
    assert any(ln.endswith(": Pushed") for ln in lines)
    digest = next(ln for ln in lines if "digest: sha256:" in ln).split("digest: ")[1].split()[0]
    if shutil.which("skopeo"):
        res = await anyio.run_process(["skopeo", "inspect", "--tls-verify=false", f"docker://{a}"])
        assert json.loads(res.stdout)["Digest"] == digest
    again = [e.status async for e in reg.push_image(PushOptions(ref=a))]
    assert "Layer already exists" in again
    # Pull it back: the repo digest of one/img is recorded, so a push to two/img mounts.
    await images.remove_image(a, force=True, noprune=False)
    [e async for e in reg.pull_image(PullOptions(ref=a))]
    rec = await images.get_image(a)
    assert rec.repo_digests == [f"{registry.host}/one/img@{digest}"]
    b = f"{registry.host}/two/img:1"
    await images.tag_image(a, f"{registry.host}/two/img", "1")
    mounted = [e.status async for e in reg.push_image(PushOptions(ref=b))]
    assert "Mounted from one/img" in mounted
