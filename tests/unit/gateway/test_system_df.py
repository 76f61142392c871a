"""GET /system/df over a real socket with fake images, containers and volumes backends."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from containers_svc.api import CreateRequest
from gateway_svc.app import build_app
from gateway_svc.backend import Backends
from gateway_svc.router import Router
from gateway_svc.routes.system_df import SystemDfRoutes, layer_usage
from images_svc.model import ImageRecord
from volumes_svc.model import Volume

from .client import fetch
from .conftest import ServeFn
from .containers_fake import IMAGE_ID, FakeContainers

pytestmark = pytest.mark.anyio

OTHER_ID = "sha256:" + "cd" * 32
CHILD_ID = "sha256:" + "ef" * 32


def _image(id_: str, chains: list[str], size: int, tags: list[str]) -> ImageRecord:
    return ImageRecord(
        id=id_, config_json=b'{"config":{"Labels":{"k":"v"}}}', manifest_digest="",
        manifest_media_type="", manifest_size=0, chain_ids=chains, parent="",
        created="2026-01-02T03:04:05Z", size=size, node_id="n", record_created="",
        repo_tags=tags,
    )


class FakeImages:
    """list_images only: ``hidden`` ids are the intermediates all=False leaves out."""

    def __init__(self, recs: list[ImageRecord], hidden: frozenset[str] = frozenset()) -> None:
        self.recs = recs
        self.hidden = hidden
        self.calls: list[bool] = []

    async def list_images(self, filters: dict[str, list[str]], all: bool) -> list[ImageRecord]:
        self.calls.append(all)
        return [r for r in self.recs if all or r.id not in self.hidden]


class FakeVolumes:
    """list_volumes only; usage data is filled in only when asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, list[str]], bool]] = []

    async def list_volumes(self, filters: dict[str, list[str]], usage: bool = False) -> list[Volume]:
        self.calls.append((filters, usage))
        vol = Volume(name="data", driver="local", mountpoint="/var/lib/berth/volumes/data/_data",
                     created="2026-01-02T03:04:05Z", node_id="n")
        if usage:
            vol = Volume(name=vol.name, driver=vol.driver, mountpoint=vol.mountpoint,
                         created=vol.created, node_id="n", size=1 << 20, ref_count=1)
        return [vol]


@pytest.fixture
def fakes() -> SimpleNamespace:
    images = FakeImages([
        _image(IMAGE_ID, ["sha256:l1"], 1000, ["docker.io/library/busybox:latest"]),
        _image(CHILD_ID, ["sha256:l1", "sha256:l2"], 1500, ["docker.io/library/app:1"]),
        _image(OTHER_ID, ["sha256:x1"], 700, []),
    ], hidden=frozenset({OTHER_ID}))
    return SimpleNamespace(images=images, containers=FakeContainers(), volumes=FakeVolumes(),
                           system=None, events=None)


def _router(fakes: SimpleNamespace) -> Router:
    router = Router(server_version="9.9.9-test")
    SystemDfRoutes(cast(Backends, fakes)).register(router)
    return router


async def _df(serving: ServeFn, router: Router, query: str = "") -> tuple[int, Any]:
    async with serving(router) as path:
        r = await fetch(path, "GET", f"/v1.50/system/df{query}")
    return r.status, json.loads(r.body)


async def test_df_composes_images_containers_and_volumes(
    serving: ServeFn, fakes: SimpleNamespace
) -> None:
    for name in ("a", "b"):
        await fakes.containers.create_container(CreateRequest(name, {"Image": "busybox"}, {}, {}))
    for rec in fakes.containers.recs.values():
        rec.size_rw, rec.size_root_fs = 5, 1005
    status, doc = await _df(serving, _router(fakes))
    assert status == 200
    assert ("list", True, -1, True, {}) in fakes.containers.calls
    assert fakes.volumes.calls == [({}, True)]
    assert set(doc) == {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"}
    assert doc["LayersSize"] == 1000 + 500 + 700  # l1, l2 and x1, each once
    images = {i["Id"]: i for i in doc["Images"]}
    assert set(images) == {IMAGE_ID, CHILD_ID}  # the intermediate is not listed
    assert images[IMAGE_ID]["Containers"] == 2 and images[CHILD_ID]["Containers"] == 0
    assert images[IMAGE_ID]["SharedSize"] == 1000 and images[CHILD_ID]["SharedSize"] == 1000
    assert images[IMAGE_ID]["RepoTags"] == ["busybox:latest"]
    assert images[IMAGE_ID]["Size"] == 1000 and images[IMAGE_ID]["Labels"] == {"k": "v"}
    assert sorted(c["Names"][0] for c in doc["Containers"]) == ["/a", "/b"]
    assert all(c["SizeRw"] == 5 and c["SizeRootFs"] == 1005 for c in doc["Containers"])
    assert doc["Volumes"][0]["Name"] == "data"
    assert doc["Volumes"][0]["UsageData"] == {"Size": 1 << 20, "RefCount": 1}
    assert doc["BuildCache"] == []


async def test_df_type_limits_the_work_and_the_answer(
    serving: ServeFn, fakes: SimpleNamespace
) -> None:
    status, doc = await _df(serving, _router(fakes), "?type=volume")
    assert status == 200
    assert doc["Images"] is None and doc["Containers"] is None and doc["BuildCache"] is None
    assert doc["LayersSize"] == 0 and [v["Name"] for v in doc["Volumes"]] == ["data"]
    assert fakes.images.calls == []
    assert ("list", True, -1, False, {}) in fakes.containers.calls


async def test_df_rejects_unknown_type(serving: ServeFn, fakes: SimpleNamespace) -> None:
    status, doc = await _df(serving, _router(fakes), "?type=image&type=networks")
    assert status == 400
    assert doc["message"] == "unknown object type: networks"


async def test_df_registered_only_with_containers_and_volumes(
    serving: ServeFn, fakes: SimpleNamespace, tmp_path: Path
) -> None:
    status, _ = await _df(serving, build_app(cast(Backends, fakes), tmp_path, "9.9.9-test"))
    assert status == 200
    fakes.volumes = None
    async with serving(build_app(cast(Backends, fakes), tmp_path, "9.9.9-test")) as path:
        r = await fetch(path, "GET", "/v1.50/system/df")
    assert r.status == 404


def test_layer_usage_counts_shared_prefixes_once() -> None:
    same_chain = _image("sha256:" + "11" * 32, ["sha256:l1"], 1000, ["x:1"])
    recs = [
        _image(IMAGE_ID, ["sha256:l1"], 1000, []),
        _image(CHILD_ID, ["sha256:l1", "sha256:l2"], 1500, []),
        _image(OTHER_ID, ["sha256:x1"], 700, []),
    ]
    assert layer_usage(recs) == (2200, {IMAGE_ID: 1000, CHILD_ID: 1000, OTHER_ID: 0})
    size, shared = layer_usage([*recs, same_chain])
    assert size == 2200 and shared[same_chain.id] == 1000 and shared[OTHER_ID] == 0
    assert layer_usage([]) == (0, {})
