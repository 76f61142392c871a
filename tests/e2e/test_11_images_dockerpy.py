"""Images through docker-py 7.1: the same operations a Python user makes."""

from __future__ import annotations

import io
import tarfile
import uuid
from typing import Any

import docker.errors
import pytest

from testkit.berthd import BerthdProcess


def _rootfs(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("data.bin")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _import(client: Any, repo: str, tag: str, payload: bytes) -> str:
    client.api.import_image_from_data(_rootfs(payload), repository=repo, tag=tag)
    image = client.images.get(f"{repo}:{tag}")
    return str(image.id)


def test_version_and_info(dockerpy: Any) -> None:
    assert dockerpy.ping() is True
    assert dockerpy.version()["ApiVersion"] == "1.50"
    assert "Images" in dockerpy.info()


def test_pinned_api_1_41(berthd: BerthdProcess) -> None:
    client = berthd.api_client(version="1.41")
    try:
        assert client.api.api_version == "1.41"
        assert isinstance(client.images.list(), list)
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("no-such-image-here")
    finally:
        client.close()


def test_list_get_tag_remove(dockerpy: Any) -> None:
    repo = f"py{uuid.uuid4().hex[:8]}"
    image_id = _import(dockerpy, repo, "one", b"payload")
    image = dockerpy.images.get(image_id)
    assert f"{repo}:one" in image.tags
    assert image.tag(repo, "two") is True
    image.reload()
    assert sorted(image.tags) == [f"{repo}:one", f"{repo}:two"]
    listed = [i.id for i in dockerpy.images.list(name=repo)]
    assert listed == [image_id]
    assert [i.id for i in dockerpy.images.list(filters={"reference": f"{repo}:two"})] == [image_id]
    dockerpy.images.remove(f"{repo}:one")
    dockerpy.images.remove(image_id, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        dockerpy.images.get(image_id)


def test_save_and_load(dockerpy: Any) -> None:
    repo = f"py{uuid.uuid4().hex[:8]}"
    image_id = _import(dockerpy, repo, "s", b"to be saved")
    data = b"".join(dockerpy.images.get(f"{repo}:s").save(named=True))
    dockerpy.images.remove(f"{repo}:s")
    loaded = dockerpy.images.load(data)
    assert [i.id for i in loaded] == [image_id]


def test_load_bad_tarball_is_in_stream_error(dockerpy: Any) -> None:
    with pytest.raises(docker.errors.ImageLoadError):
        dockerpy.images.load(b"not a tarball at all" * 64)


def test_history_and_prune(dockerpy: Any) -> None:
    repo = f"py{uuid.uuid4().hex[:8]}"
    first = _import(dockerpy, repo, "p", b"first")
    _import(dockerpy, repo, "p", b"second")
    hist = dockerpy.images.get(f"{repo}:p").history()
    assert hist and hist[0]["Id"].startswith("sha256:")
    result = dockerpy.images.prune(filters={"dangling": True})
    deleted = [d.get("Deleted") for d in result["ImagesDeleted"] or []]
    assert first in deleted
    assert isinstance(result["SpaceReclaimed"], int)
    # docker-py suite: dangling=false is accepted as well.
    dockerpy.images.prune(filters={"dangling": False, "label": ["no-such-label"]})
