"""docker push: blobs (HEAD, cross-repo mount, monolithic or chunked upload), then the manifest."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
from isal import isal_zlib

import errdefs
from dockerapi.reference import Reference, parse_reference
from images_svc.api import ProgressEvent
from images_svc.content import ContentStore
from images_svc.layers import detect_compression
from images_svc.model import ImageRecord
from images_svc.pulled import Blob
from registry_svc.api import PushOptions
from registry_svc.manifests import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
)
from registry_svc.pull import ImagesForRegistry
from registry_svc.session import Session, TokenCache
from registry_svc.transport import TransportConfig

__all__ = ["Pusher"]

# Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size.
CHUNK_SIZE = 32 << 20
READ = 1 << 20


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


class Pusher:
    """Pushes for the registry service.

    Layers that exist here only uncompressed are gzipped on first push (as dockerd does); the
    compressed digest is remembered under ``<state_dir>/gzip/`` so the next push reuses it.
    """

    def __init__(
        self,
        content: ContentStore,
        state_dir: Path,
        images: ImagesForRegistry,
        transport: TransportConfig,
        tokens: TokenCache,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self._content = content
        self._gzip_dir = state_dir / "gzip"
        self._images = images
        self._transport = transport
        self._tokens = tokens
        self.chunk_size = chunk_size

    async def push(self, opts: PushOptions) -> AsyncIterator[ProgressEvent]:
        ref = parse_reference(opts.ref.strip())
        if ref.digest:
            raise errdefs.InvalidArgument("cannot push a digest reference")
        if opts.tag:
            ref = parse_reference(f"{ref.name}:{opts.tag}")
        if ref.tag:
            tags = [ref.tag]
            await self._images.get_image(ref.string())  # NotFound before any output
        else:
            tags = sorted({
                parse_reference(t).tag
                for rec in await self._images.list_images({}, all=True)
                for t in rec.repo_tags if parse_reference(t).name == ref.name
            })
            if not tags:
                raise errdefs.NotFound(f"An image does not exist locally with the tag: {ref.familiar_name()}")
        sources = await self._mount_sources(ref)
        scopes = tuple(f"repository:{p}:pull" for p in sources)
        yield ProgressEvent(status=f"The push refers to repository [{ref.name}]")
        async with Session(self._transport, self._tokens, ref.domain, ref.path, opts.auth,
                           actions="pull,push", extra_scopes=scopes) as sess:
            for tag in tags:
                tagged = Reference(ref.domain, ref.path, tag=tag)
                rec = await self._images.get_image(tagged.string())
                async for ev in self._push_one(sess, tagged, rec, sources):
                    yield ev

    async def _mount_sources(self, ref: Reference) -> list[str]:
        """Other repositories of the same registry that local images came from (for mounts)."""
        out: set[str] = set()
        for rec in await self._images.list_images({}, all=True):
            for d in rec.repo_digests:
                r = parse_reference(d)
                if r.domain == ref.domain and r.path != ref.path:
                    out.add(r.path)
        return sorted(out)[:4]

    async def _push_one(
        self, sess: Session, ref: Reference, rec: ImageRecord, sources: list[str]
    ) -> AsyncIterator[ProgressEvent]:
        config = json.loads(rec.config_json)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(rec.layers):
            raise errdefs.InvalidArgument(f"image {rec.id} has no layer blobs to push")
        for d in diff_ids:
            yield ProgressEvent(id=_short(d), status="Preparing")
        blobs: list[Blob] = []
        reuse = True  # the stored manifest can go as is when every layer is compressed
        for (mt, digest, size), diff_id in zip(rec.layers, diff_ids, strict=True):
            kind = await self._compression(digest)
            if kind:
                media = mt if mt.endswith(("+gzip", "+zstd", ".gzip")) else (
                    DOCKER_LAYER_GZIP if kind == "gzip" else OCI_LAYER + "+zstd")
                blobs.append(Blob(media, digest, size))
            else:
                reuse = False
                blobs.append(await self._gzipped(digest, diff_id))
        for blob, diff_id in zip(blobs, diff_ids, strict=True):
            sid = _short(diff_id)
            async for ev in self._push_blob(sess, blob, sid, sources):
                yield ev
        cfg_blob = Blob(OCI_CONFIG, rec.id, len(rec.config_json))
        async for _ in self._push_blob(sess, cfg_blob, "", []):
            pass
        manifest, mt = await self._manifest(rec, blobs, reuse)
        resp = await sess.request(
            "PUT", sess.url(f"manifests/{ref.tag}"), headers={"Content-Type": mt},
            content=manifest, ok=(200, 201, 202), what=f"pushing manifest for {ref.familiar_string()}",
        )
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        said = resp.headers.get("docker-content-digest", "")
        if said.startswith("sha256:") and said != digest:
            raise errdefs.Unavailable(f"registry stored the manifest as {said}, expected {digest}")
        yield ProgressEvent(status=f"{ref.tag}: digest: {digest} size: {len(manifest)}")
        aux = {"Tag": ref.tag, "Digest": digest, "Size": len(manifest)}
        yield ProgressEvent(aux_json=json.dumps(aux).encode())

    async def _manifest(self, rec: ImageRecord, blobs: list[Blob], reuse: bool) -> tuple[bytes, str]:
        if reuse and rec.manifest_digest and rec.manifest_media_type in MANIFEST_TYPES:
            try:
                raw = await self._content.read_bytes(rec.manifest_digest)
            except errdefs.NotFound:
                raw = b""
            if raw:
                return raw, rec.manifest_media_type
        oci = any(b.media_type.endswith("+zstd") for b in blobs)
        mt = OCI_MANIFEST if oci else DOCKER_MANIFEST
        doc = {
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG, "size": len(rec.config_json),
                       "digest": rec.id},
            "layers": [
                {"mediaType": (b.media_type if oci else DOCKER_LAYER_GZIP), "size": b.size,
                 "digest": b.digest}
                for b in blobs
            ],
        }
        return json.dumps(doc, indent=3).encode(), mt

    async def _compression(self, digest: str) -> str:
        path = self._content.blob_path(digest)

        def head() -> bytes:
            with open(path, "rb") as f:
                return f.read(4)

        try:
            return detect_compression(await anyio.to_thread.run_sync(head))
        except FileNotFoundError:
            raise errdefs.NotFound(f"content digest {digest}: not found") from None

    async def _gzipped(self, digest: str, diff_id: str) -> Blob:
        """The gzip blob of an uncompressed layer: remembered, or made now."""
        record = self._gzip_dir / diff_id.removeprefix("sha256:")

        def lookup() -> Blob | None:
            try:
                d = json.loads(record.read_text())
                b = Blob(DOCKER_LAYER_GZIP, str(d["digest"]), int(d["size"]))
            except (OSError, ValueError, KeyError):
                return None
            return b if self._content.blob_path(b.digest).is_file() else None

        def make() -> Blob:
            comp = isal_zlib.compressobj(2, isal_zlib.DEFLATED, 31)
            with open(self._content.blob_path(digest), "rb") as src, self._content.open_writer() as w:
                while chunk := src.read(4 << 20):
                    w.write(comp.compress(chunk))
                w.write(comp.flush())
                gz, size = w.commit()
            self._gzip_dir.mkdir(parents=True, exist_ok=True)
            tmp = record.with_suffix(".tmp")
            tmp.write_text(json.dumps({"digest": gz, "size": size}))
            os.replace(tmp, record)
            return Blob(DOCKER_LAYER_GZIP, gz, size)

        found = await anyio.to_thread.run_sync(lookup)
        return found if found is not None else await anyio.to_thread.run_sync(make)

    async def _push_blob(
        self, sess: Session, blob: Blob, sid: str, sources: list[str]
    ) -> AsyncIterator[ProgressEvent]:
        head = await sess.request("HEAD", sess.url(f"blobs/{blob.digest}"), ok=())
        if head.status_code == 200:
            if sid:
                yield ProgressEvent(id=sid, status="Layer already exists")
            return
        location = ""
        for src in sources:
            resp = await sess.request("POST", sess.url("blobs/uploads/"), ok=(201, 202),
                                      params={"mount": blob.digest, "from": src},
                                      what=f"mounting blob {blob.digest}")
            if resp.status_code == 201:
                if sid:
                    yield ProgressEvent(id=sid, status=f"Mounted from {src}")
                return
            location = resp.headers.get("location", "")
            break
        if not location:
            resp = await sess.request("POST", sess.url("blobs/uploads/"), ok=(202,),
                                      what=f"starting the upload of {blob.digest}")
            location = resp.headers.get("location", "")
        if not location:
            raise errdefs.Unavailable("registry started an upload without a Location")
        url = sess.absolute(location)
        path = self._content.blob_path(blob.digest)
        if blob.size <= self.chunk_size:
            if sid:
                yield ProgressEvent(id=sid, status="Pushing", current=0, total=blob.size)
            await sess.request(
                "PUT", str(httpx.URL(url).copy_merge_params({"digest": blob.digest})),
                headers={"Content-Type": "application/octet-stream",
                         "Content-Length": str(blob.size)},
                content=_read_file(path, 0, blob.size), ok=(201, 204),
                what=f"uploading blob {blob.digest}",
            )
        else:
            offset = 0
            while offset < blob.size:
                n = min(self.chunk_size, blob.size - offset)
                resp = await sess.request(
                    "PATCH", url,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(n),
                             "Content-Range": f"{offset}-{offset + n - 1}"},
                    content=_read_file(path, offset, n), ok=(202,),
                    what=f"uploading blob {blob.digest}",
                )
                offset += n
                url = sess.absolute(resp.headers.get("location", url))
                if sid:
                    yield ProgressEvent(id=sid, status="Pushing", current=offset, total=blob.size)
            await sess.request(
                "PUT", str(httpx.URL(url).copy_merge_params({"digest": blob.digest})),
                headers={"Content-Length": "0"}, content=b"", ok=(201, 204),
                what=f"finishing the upload of {blob.digest}",
            )
        if sid:
            yield ProgressEvent(id=sid, status="Pushed")


async def _read_file(path: Path, offset: int, length: int) -> AsyncIterator[bytes]:
    f = await anyio.open_file(path, "rb")
    async with f:
        await f.seek(offset)
        left = length
        while left > 0:
            chunk = await f.read(min(READ, left))
            if not chunk:
                raise errdefs.Internal(f"{path} is shorter than expected")
            left -= len(chunk)
            yield chunk
