"""The registry service over gRPC against a small scripted registry: resume, bad bytes, errors."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
import zstandard

import errdefs
import grpckit
from berthapi.registry.v1 import registry_pb2
from images_svc.service import ImagesService
from images_svc.store import SqlImageStore
from registry_svc import server as registry_server
from registry_svc import session
from registry_svc.api import AuthConfig, Platform, PullOptions
from registry_svc.clients import RegistryClient
from registry_svc.service import RegistryService
from registry_svc.transport import TransportConfig
from statestore import open_store
from testkit.registry import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

NODE = "e" * 32
REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _layer(payload: bytes) -> tuple[bytes, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("data.bin")
        ti.size = len(payload)
        tf.addfile(ti, io.BytesIO(payload))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), _sha(raw)


@dataclass
class Script:
    """What the fake registry serves and how it misbehaves."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    cut_first: set[str] = field(default_factory=set)  # first GET of these stops half-way
    wrong: set[str] = field(default_factory=set)  # serve other bytes of the same size
    stall_first: set[str] = field(default_factory=set)  # first GET sends half, then hangs
    manifest_status: int = 200
    hits: list[tuple[str, str]] = field(default_factory=list)  # (path, Range header)


def _err(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


def _serve(script: Script) -> tuple[ThreadingHTTPServer, int]:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            script.hits.append((self.path, self.headers.get("Range", "")))
            if self.path == "/v2/":
                return self._send(200, b"{}")
            if "/manifests/" in self.path:
                ref = self.path.rsplit("/", 1)[1]
                if script.manifest_status != 200:
                    return self._send(script.manifest_status, _err("UNKNOWN", "boom"))
                if ref not in script.manifests:
                    return self._send(404, _err("MANIFEST_UNKNOWN", "manifest unknown"))
                mt, body = script.manifests[ref]
                return self._send(200, body, {"Content-Type": mt})
            digest = self.path.rsplit("/", 1)[1]
            data = script.blobs.get(digest)
            if data is None:
                return self._send(404, _err("BLOB_UNKNOWN", "blob unknown"))
            if digest in script.wrong:
                data = bytes(b ^ 0x55 for b in data)
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                part = data[start:]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                self.wfile.write(part)
                return
            if digest in script.stall_first:
                script.stall_first.discard(digest)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                time.sleep(3)
                self.close_connection = True
                return
            if digest in script.cut_first:
                script.cut_first.discard(digest)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self._send(200, data)

    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, port


def _image(script: Script, tag: str, payload: bytes, compression: str = "gzip",
           oci: bool = False) -> tuple[str, str]:
    """Put a one-layer image under ``tag``; returns (layer digest, config digest)."""
    blob, diff_id = _layer(payload)
    layer_type = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    if compression != "gzip" or oci:
        oci = True
        layer_type = "application/vnd.oci.image.layer.v1.tar" + (f"+{compression}" if compression else "")
        raw = gzip.decompress(blob)
        blob = zstandard.ZstdCompressor().compress(raw) if compression == "zstd" else (
            blob if compression == "gzip" else raw)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    script.blobs[_sha(blob)] = blob
    script.blobs[_sha(config)] = config
    mt = ("application/vnd.oci.image.manifest.v1+json" if oci
          else "application/vnd.docker.distribution.manifest.v2+json")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": _sha(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": _sha(blob), "size": len(blob)}],
    }).encode()
    script.manifests[tag] = (mt, manifest)
    return _sha(blob), _sha(config)


@pytest.fixture
def script() -> Iterator[tuple[Script, int]]:
    s = Script()
    httpd, port = _serve(s)
    try:
        yield s, port
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[RegistryClient, ImagesService]]:
    root = tmp_path / "root"
    root.mkdir()
    state = await open_store(f"sqlite+aiosqlite:///{root / 'state.db'}")
    try:
        images = ImagesService(root, SqlImageStore(state, NODE), NODE)
        await images.reconcile()
        svc = RegistryService(root, images, TransportConfig(certs_dir=tmp_path / "certs.d"))
        addr = f"unix://{tmp_path}/registry.sock"
        server = grpckit.build_server(
            [(registry_server.add_to_server, registry_server.RegistryServicer(svc))], addr, [REGISTRY])
        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(grpckit.serve_grpc, server, grace=0.5))
            channel = grpckit.open_channel(addr)
            try:
                yield RegistryClient(channel), images
            finally:
                await channel.close()
                tg.cancel_scope.cancel()
    finally:
        await state.aclose()


async def _pull(client: RegistryClient, ref: str) -> list[str]:
    return [f"{ev.id}: {ev.status}" async for ev in client.pull_image(PullOptions(ref=ref))]


async def test_interrupted_blob_resumes_with_range(stack: Any, script: Any) -> None:
    client, images = stack
    s, port = script
    layer, config = _image(s, "1", os.urandom(300 << 10))
    s.cut_first.add(layer)
    lines = await _pull(client, f"127.0.0.1:{port}/r/img:1")
    assert any("Pull complete" in ln for ln in lines)
    assert any(path.endswith(layer) and rng.startswith("bytes=") and rng != "bytes=0-"
               for path, rng in s.hits)
    rec = await images.get_image(f"127.0.0.1:{port}/r/img:1")
    assert rec.id == config
    assert rec.repo_digests == [f"127.0.0.1:{port}/r/img@{_sha(s.manifests['1'][1])}"]


async def test_wrong_bytes_store_nothing(stack: Any, script: Any) -> None:
    client, images = stack
    s, port = script
    layer, _ = _image(s, "1", b"y" * 1000)
    s.wrong.add(layer)
    with pytest.raises(errdefs.InvalidArgument, match="verification failed"):
        await _pull(client, f"127.0.0.1:{port}/r/img:1")
    with pytest.raises(errdefs.NotFound):
        await images.get_image(f"127.0.0.1:{port}/r/img:1")
    assert not await images.content.has(layer)
    assert list(images.content.ingest_dir.iterdir()) == []
    staging = images.content.root.parent / "registry" / "staging"
    assert list((staging / "ingest").iterdir()) == []
    assert not (staging / "blobs" / "sha256" / layer.removeprefix("sha256:")).exists()


@pytest.mark.parametrize("status, kind", [(500, errdefs.Unavailable), (401, errdefs.NotFound),
                                          (403, errdefs.NotFound)])
async def test_error_statuses(stack: Any, script: Any, status: int, kind: type[Exception]) -> None:
    client, images = stack
    s, port = script
    _image(s, "1", b"z")
    s.manifest_status = status
    with pytest.raises(kind):
        await _pull(client, f"127.0.0.1:{port}/r/img:1")
    assert await images.list_images({}, all=True) == []


async def test_manifest_unknown(stack: Any, script: Any) -> None:
    client, _ = stack
    _, port = script
    with pytest.raises(errdefs.NotFound, match="manifest unknown"):
        await _pull(client, f"127.0.0.1:{port}/r/img:nope")


async def test_stalled_blob_is_retried_from_where_it_stopped(
    stack: Any, script: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session, "READ_TIMEOUT", 0.5)
    client, images = stack
    s, port = script
    layer, config = _image(s, "1", os.urandom(200 << 10))
    s.stall_first.add(layer)
    await _pull(client, f"127.0.0.1:{port}/r/img:1")
    assert (await images.get_image(f"127.0.0.1:{port}/r/img:1")).id == config
    assert any(path.endswith(layer) and rng.startswith("bytes=") for path, rng in s.hits)


async def test_oversized_manifest(stack: Any, script: Any) -> None:
    client, images = stack
    s, port = script
    s.manifests["big"] = ("application/vnd.oci.image.manifest.v1+json", b" " * ((4 << 20) + 10))
    with pytest.raises(errdefs.InvalidArgument, match="manifest too big"):
        await _pull(client, f"127.0.0.1:{port}/r/img:big")
    assert await images.list_images({}, all=True) == []


async def test_index_and_manifest_at_once(stack: Any, script: Any) -> None:
    client, _ = stack
    s, port = script
    _image(s, "1", b"q")
    mt, body = s.manifests["1"]
    doc = json.loads(body)
    doc["manifests"] = []
    s.manifests["both"] = (mt, json.dumps(doc).encode())
    with pytest.raises(errdefs.InvalidArgument, match="both an index and a manifest"):
        await _pull(client, f"127.0.0.1:{port}/r/img:both")


async def test_traversal_digest_in_manifest(stack: Any, script: Any) -> None:
    client, _ = stack
    s, port = script
    _image(s, "1", b"t")
    mt, body = s.manifests["1"]
    doc = json.loads(body)
    doc["layers"][0]["digest"] = "sha256:../../../etc/passwd"
    s.manifests["evil"] = (mt, json.dumps(doc).encode())
    with pytest.raises(errdefs.InvalidArgument, match="invalid digest"):
        await _pull(client, f"127.0.0.1:{port}/r/img:evil")


@pytest.mark.parametrize("compression", ["gzip", "zstd", ""])
async def test_layer_compressions_with_oci_manifests(stack: Any, script: Any, compression: str) -> None:
    client, images = stack
    s, port = script
    payload = os.urandom(64 << 10)
    _, config = _image(s, "1", payload, compression=compression, oci=True)
    await _pull(client, f"127.0.0.1:{port}/r/img:1")
    rec = await images.get_image(f"127.0.0.1:{port}/r/img:1")
    assert rec.id == config
    diff = images.layers.diff_dir(rec.chain_ids[0])
    assert (diff / "data.bin").read_bytes() == payload


async def test_inspect_distribution_over_grpc(stack: Any, script: Any) -> None:
    """GET /distribution/{name}/json's backend: descriptor and platforms, nothing pulled."""
    client, images = stack
    s, port = script
    _, config = _image(s, "1", b"z" * 100)
    mt, manifest = s.manifests["1"]
    info = await client.inspect_distribution(f"127.0.0.1:{port}/r/img:1", AuthConfig())
    assert (info.media_type, info.digest, info.size) == (mt, _sha(manifest), len(manifest))
    assert info.platforms == (Platform("linux", "amd64", ""),)  # read from the config blob
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [
                            {"mediaType": mt, "digest": _sha(manifest), "size": len(manifest),
                             "platform": {"os": "linux", "architecture": "amd64"}},
                            {"mediaType": mt, "digest": _sha(manifest), "size": len(manifest),
                             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                        ]}).encode()  # fmt: skip
    s.manifests["multi"] = ("application/vnd.oci.image.index.v1+json", index)
    info = await client.inspect_distribution(f"127.0.0.1:{port}/r/img:multi", AuthConfig())
    assert info.digest == _sha(index)
    assert info.platforms == (Platform("linux", "amd64", ""), Platform("linux", "arm64", "v8"))
    with pytest.raises(errdefs.NotFound, match="manifest unknown"):
        await client.inspect_distribution(f"127.0.0.1:{port}/r/img:nope", AuthConfig())
    with pytest.raises(errdefs.NotFound):
        await images.get_image(config)  # inspecting pulls nothing
