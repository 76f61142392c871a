"""read_archive/write_archive: three archive formats, hostile archives, round trip, skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import shutil
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import zstandard

import errdefs
from images_svc.archive import (
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    ArchiveImage,
    Descriptor,
    SaveImage,
    read_archive,
    write_archive,
)
from images_svc.content import ContentStore, DigestMismatch
from tests.unit.images.images_tarutil import E, make_tar

pytestmark = pytest.mark.anyio

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


async def _chunks(data: bytes, size: int = 7000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _files_tar(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    entries = [E(n, data=d) for n, d in files.items()]
    entries += [E(n, type=tarfile.SYMTYPE, link=t) for n, t in (links or {}).items()]
    return make_tar(entries)


LAYER1 = make_tar([E("bin/sh", data=b"#!shell", mode=0o755)])
LAYER2 = make_tar([E("etc/motd", data=b"hi\n")])
CONFIG = _j({"architecture": ARCH, "os": "linux", "config": {"Cmd": ["sh"]},
             "rootfs": {"type": "layers", "diff_ids": [_d(LAYER1), _d(LAYER2)]}})


def legacy_archive() -> bytes:
    files = {
        "aaa1/layer.tar": LAYER1, "aaa1/json": b"{}", "aaa1/VERSION": b"1.0",
        "bbb2/layer.tar": LAYER2, "bbb2/json": b"{}", "bbb2/VERSION": b"1.0",
        f"{_d(CONFIG)[7:]}.json": CONFIG,
        "manifest.json": _j([{"Config": f"{_d(CONFIG)[7:]}.json",
                              "RepoTags": ["busybox:latest", "busybox:1"],
                              "Layers": ["aaa1/layer.tar", "bbb2/layer.tar"]}]),
        "repositories": _j({"busybox": {"latest": "bbb2"}}),
    }
    return _files_tar(files)


def _manifest(layers: list[bytes], media: str = "application/vnd.oci.image.layer.v1.tar") -> bytes:
    return _j({"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": _d(CONFIG), "size": len(CONFIG)},
               "layers": [{"mediaType": media, "digest": _d(x), "size": len(x)}
                          for x in layers]})


def docker25_archive() -> bytes:
    manifest = _manifest([LAYER1, LAYER2])
    index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [
        {"mediaType": MEDIA_OCI_MANIFEST, "digest": _d(manifest), "size": len(manifest),
         "annotations": {"io.containerd.image.name": "docker.io/library/busybox:latest",
                         "org.opencontainers.image.ref.name": "latest"}}]}
    files = {f"blobs/sha256/{_d(b)[7:]}": b for b in (LAYER1, LAYER2, CONFIG, manifest)}
    files["index.json"] = _j(index)
    files["oci-layout"] = _j({"imageLayoutVersion": "1.0.0"})
    files["manifest.json"] = _j([{"Config": f"blobs/sha256/{_d(CONFIG)[7:]}",
                                  "RepoTags": ["busybox:latest"],
                                  "Layers": ["aaa1/layer.tar",
                                             f"blobs/sha256/{_d(LAYER2)[7:]}"]}])
    # Older 25.x kept legacy layer dirs as symlinks into blobs/.
    return _files_tar(files, {"aaa1/layer.tar": f"../blobs/sha256/{_d(LAYER1)[7:]}"})


def oci_archive() -> tuple[bytes, bytes]:
    gz1, gz2 = gzip.compress(LAYER1), gzip.compress(LAYER2)
    manifest = _manifest([gz1, gz2], "application/vnd.oci.image.layer.v1.tar+gzip")
    other = b'{"not":"present"}'
    nested = _j({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [
        {"mediaType": MEDIA_OCI_MANIFEST, "digest": _d(other), "size": len(other),
         "platform": {"os": "linux", "architecture": "s390x"}},
        {"mediaType": MEDIA_OCI_MANIFEST, "digest": _d(manifest), "size": len(manifest),
         "platform": {"os": "linux", "architecture": ARCH}}]})
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": MEDIA_OCI_INDEX, "digest": _d(nested), "size": len(nested),
         "annotations": {"org.opencontainers.image.ref.name": "example.com/app:v1"}}]}
    files = {f"blobs/sha256/{_d(b)[7:]}": b for b in (gz1, gz2, CONFIG, manifest, nested)}
    files["index.json"] = _j(index)
    files["oci-layout"] = _j({"imageLayoutVersion": "1.0.0"})
    return _files_tar(files), manifest


async def _check_image(cs: ContentStore, img: ArchiveImage) -> None:
    assert img.config_digest == _d(CONFIG)
    assert img.config == CONFIG
    assert img.diff_ids == [_d(LAYER1), _d(LAYER2)]
    assert len(img.layers) == 2
    for layer in img.layers:
        assert await cs.has(layer.digest)
        assert await cs.size(layer.digest) == layer.size
    raw = await cs.read_bytes(img.manifest_digest)
    assert _d(raw) == img.manifest_digest and len(raw) == img.manifest_size
    m = json.loads(raw)
    assert m["config"]["digest"] == img.config_digest
    assert [x["digest"] for x in m["layers"]] == [x.digest for x in img.layers]


async def test_legacy_docker_archive(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    msgs: list[str] = []

    async def progress(m: str) -> None:
        msgs.append(m)

    [img] = await read_archive(_chunks(legacy_archive()), cs, progress)
    await _check_image(cs, img)
    assert img.repo_tags == ["busybox:latest", "busybox:1"]
    assert img.manifest_media_type == MEDIA_OCI_MANIFEST
    assert [x.media_type for x in img.layers] == ["application/vnd.oci.image.layer.v1.tar"] * 2
    assert msgs == ["Loading layer 11ab9ba1e574", "Loading layer d3eab639bc5b"]
    assert any(m.startswith("Loading layer") for m in msgs)


async def test_docker25_archive_keeps_manifest(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    [img] = await read_archive(_chunks(docker25_archive()), cs)
    await _check_image(cs, img)
    assert img.manifest_digest == _d(_manifest([LAYER1, LAYER2]))
    assert img.repo_tags == ["busybox:latest"]


@pytest.mark.parametrize("compress", ["plain", "gzip", "zstd"])
async def test_oci_layout_nested_index(tmp_path: Path, compress: str) -> None:
    cs = ContentStore(tmp_path)
    data, manifest = oci_archive()
    data = {"plain": data, "gzip": gzip.compress(data),
            "zstd": zstandard.ZstdCompressor().compress(data)}[compress]
    [img] = await read_archive(_chunks(data), cs)
    await _check_image(cs, img)
    assert img.manifest_digest == _d(manifest)
    assert img.repo_tags == ["example.com/app:v1"]
    assert all(x.media_type.endswith("+gzip") for x in img.layers)


async def test_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="invalid tar header"):
        await read_archive(_chunks(b'{"this": "is json, not a tar"}' * 50), ContentStore(tmp_path))


async def test_empty_input(tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        await read_archive(_chunks(b""), ContentStore(tmp_path))


async def test_truncated(tmp_path: Path) -> None:
    data = legacy_archive()
    with pytest.raises(errdefs.InvalidArgument, match="unexpected EOF"):
        await read_archive(_chunks(data[: len(data) // 2 + 100]), ContentStore(tmp_path))


async def test_truncated_gzip(tmp_path: Path) -> None:
    data = gzip.compress(legacy_archive())
    with pytest.raises(errdefs.InvalidArgument):
        await read_archive(_chunks(data[: len(data) - 20]), ContentStore(tmp_path))


async def test_blob_digest_mismatch(tmp_path: Path) -> None:
    bad = legacy_archive()
    files = {f"blobs/sha256/{_d(b'honest')[7:]}": b"tampered", "index.json": b"{}"}
    bad = _files_tar(files)
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        await read_archive(_chunks(bad), ContentStore(tmp_path))


async def test_missing_layer(tmp_path: Path) -> None:
    files = {f"{_d(CONFIG)[7:]}.json": CONFIG, "aaa1/layer.tar": LAYER1,
             "manifest.json": _j([{"Config": f"{_d(CONFIG)[7:]}.json", "RepoTags": [],
                                   "Layers": ["aaa1/layer.tar", "bbb2/layer.tar"]}])}
    with pytest.raises(errdefs.InvalidArgument,
                       match=r"file bbb2/layer\.tar referenced by manifest.json is missing"):
        await read_archive(_chunks(_files_tar(files)), ContentStore(tmp_path))


async def test_missing_config(tmp_path: Path) -> None:
    files = {"manifest.json": _j([{"Config": "nothere.json", "Layers": []}])}
    with pytest.raises(errdefs.InvalidArgument, match=r"nothere\.json referenced by manifest"):
        await read_archive(_chunks(_files_tar(files)), ContentStore(tmp_path))


async def test_no_manifest(tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=r"manifest\.json"):
        await read_archive(_chunks(_files_tar({"x": b"y"})), ContentStore(tmp_path))


async def test_diff_id_count_mismatch(tmp_path: Path) -> None:
    files = {f"{_d(CONFIG)[7:]}.json": CONFIG, "aaa1/layer.tar": LAYER1,
             "manifest.json": _j([{"Config": f"{_d(CONFIG)[7:]}.json",
                                   "Layers": ["aaa1/layer.tar"]}])}
    with pytest.raises(errdefs.InvalidArgument, match="2 diff_ids for 1 layers"):
        await read_archive(_chunks(_files_tar(files)), ContentStore(tmp_path))


async def test_uncompressed_layer_not_matching_diff_id(tmp_path: Path) -> None:
    files = {f"{_d(CONFIG)[7:]}.json": CONFIG, "a/layer.tar": LAYER2, "b/layer.tar": LAYER1,
             "manifest.json": _j([{"Config": f"{_d(CONFIG)[7:]}.json",
                                   "Layers": ["a/layer.tar", "b/layer.tar"]}])}
    with pytest.raises(DigestMismatch):
        await read_archive(_chunks(_files_tar(files)), ContentStore(tmp_path))


@pytest.mark.parametrize("name", ["../evil", "/etc/evil", "a/../../evil"])
async def test_unsafe_member_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="invalid archive entry"):
        await read_archive(_chunks(_files_tar({name: b"x"})), ContentStore(tmp_path / "c"))
    assert not (tmp_path / "evil").exists()


async def _save(tmp_path: Path) -> tuple[ContentStore, SaveImage, bytes]:
    cs = ContentStore(tmp_path / "src")
    [img] = await read_archive(_chunks(legacy_archive()), cs)
    save = SaveImage(img.config_digest, img.manifest_digest, img.manifest_media_type,
                     img.manifest_size, [(x.media_type, x.digest, x.size) for x in img.layers],
                     ["busybox:latest", "example.com/team/app:v2"])
    out = b"".join([c async for c in write_archive([save, save], cs)])
    return cs, save, out


async def test_write_read_roundtrip(tmp_path: Path) -> None:
    _, save, out = await _save(tmp_path)
    with tarfile.open(fileobj=io.BytesIO(out)) as tf:
        names = tf.getnames()
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        for m in tf.getmembers():
            assert (m.uid, m.gid, m.mtime) == (0, 0, 0)
    blobs = [n for n in names if n.startswith("blobs/sha256/") and len(n) > 14]
    assert len(blobs) == len(set(blobs)) == 4  # manifest, config, 2 layers, each once
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(names)
    anns = [d["annotations"] for d in index["manifests"]]
    assert {"io.containerd.image.name": "docker.io/library/busybox:latest",
            "org.opencontainers.image.ref.name": "latest"} in anns
    assert manifest[0]["RepoTags"] == ["busybox:latest", "example.com/team/app:v2"]
    assert manifest[0]["Config"] == f"blobs/sha256/{save.config_digest[7:]}"

    cs2 = ContentStore(tmp_path / "dst")
    [img] = await read_archive(_chunks(out, 4096), cs2)
    assert img.config_digest == save.config_digest
    assert img.manifest_digest == save.manifest_digest
    assert [tuple(x) for x in img.layers] == list(save.layers)
    assert img.repo_tags == ["busybox:latest", "example.com/team/app:v2"]


async def test_write_missing_blob(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    save = SaveImage(_d(b"c"), _d(b"m"), MEDIA_OCI_MANIFEST, 1,
                     [Descriptor("x", _d(b"l"), 1)], [])
    with pytest.raises(errdefs.NotFound):
        async for _ in write_archive([save], cs):
            pass


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
async def test_skopeo_reads_written_archive(tmp_path: Path) -> None:
    _, save, out = await _save(tmp_path)
    path = tmp_path / "saved.tar"
    path.write_bytes(out)
    # Two tags mean two index entries: oci-archive needs the ref name to pick one.
    for target in (f"docker-archive:{path}", f"oci-archive:{path}:v2"):
        res = await anyio.run_process(["skopeo", "inspect", "--config", target], check=False)
        assert res.returncode == 0, (target, res.stderr)
        assert json.loads(res.stdout)["rootfs"]["diff_ids"] == [_d(LAYER1), _d(LAYER2)]
    res = await anyio.run_process(["skopeo", "inspect", f"docker-archive:{path}"], check=False)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["Layers"] == [x[1] for x in save.layers]
