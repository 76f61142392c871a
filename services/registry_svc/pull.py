"""docker pull: resolve, download every blob verified into the content store, then register."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
import anyio.to_thread
import httpx

import errdefs
from dockerapi.platforms import host_arch
from dockerapi.reference import Reference, parse_reference
from images_svc.api import ProgressEvent
from images_svc.content import BlobWriter, ContentStore, DigestMismatch
from images_svc.layers import LayerStore, chain_ids
from images_svc.model import ImageRecord
from images_svc.pulled import Blob, PulledImage
from registry_svc.api import AuthConfig, DistributionInfo, Platform, PullOptions
from registry_svc.manifests import ACCEPT, MAX_MANIFEST, Index, Manifest, parse_document, pick_platform
from registry_svc.session import Session, TokenCache, error_codes, raise_for_status
from registry_svc.transport import TransportConfig

__all__ = ["ImagesForRegistry", "Puller"]

log = logging.getLogger(__name__)

MAX_CONFIG = 8 << 20
MAX_RETRIES = 5
CHUNK = 1 << 20
# Progress lines per layer are sent at most every this many bytes.
PROGRESS_STEP = 512 << 10


class ImagesForRegistry(Protocol):
    """What the registry service asks of the images service."""

    async def get_image(self, ref: str) -> ImageRecord: ...

    async def list_images(self, filters: dict[str, list[str]], all: bool) -> list[ImageRecord]: ...

    def register_pulled_image(self, img: PulledImage) -> AsyncIterator[ProgressEvent]: ...


def _access_denied(ref: Reference) -> str:
    return (f"pull access denied for {ref.familiar_name()}, repository does not exist or may "
            "require 'docker login': denied: requested access to the resource is denied")


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


@dataclass(slots=True)
class _Resolved:
    """A reference resolved on the registry."""

    top_digest: str  # what the tag names (index or manifest): the repo digest
    manifest: Manifest
    manifest_blob: Blob
    raw_docs: list[tuple[str, bytes]]  # (digest, bytes) of index and manifest, to store


Emit = Callable[[ProgressEvent], Awaitable[None]]


class Puller:
    """Pulls for the registry service; one per service, shared by concurrent pulls."""

    def __init__(
        self,
        content: ContentStore,
        layers: LayerStore,
        images: ImagesForRegistry,
        transport: TransportConfig,
        tokens: TokenCache,
        max_downloads: int = 3,
        staging: ContentStore | None = None,
    ) -> None:
        self._content = content
        # Verified blobs wait here until the image is registered: the images service's start-up
        # GC leaves them alone, so a pull cut short (even by kill -9) resumes without them.
        self._staging = staging if staging is not None else content
        self._layers = layers
        self._images = images
        self._transport = transport
        self._tokens = tokens
        self._max = max(1, max_downloads)

    async def pull(self, opts: PullOptions) -> AsyncIterator[ProgressEvent]:
        ref = parse_reference(opts.ref.strip())
        if opts.tag:
            if opts.tag.startswith("sha256:") or ":" in opts.tag:
                ref = parse_reference(f"{ref.name}@{opts.tag}")
            else:
                ref = parse_reference(f"{ref.name}:{opts.tag}")
        want = opts.platform
        want = Platform(want.os or "linux", want.architecture or host_arch(), want.variant)
        async with Session(self._transport, self._tokens, ref.domain, ref.path, opts.auth) as sess:
            if opts.all_tags:
                tags = await self._list_tags(sess, ref)
                refs = [Reference(ref.domain, ref.path, tag=t) for t in tags]
            else:
                refs = [ref.with_default_tag()]
            newer = False
            for r in refs:
                async for ev in self._pull_one(sess, r, want):
                    if ev.aux_json:
                        newer = newer or bool(json.loads(ev.aux_json).get("newer"))
                        continue
                    yield ev
            shown = ref.familiar_name() if opts.all_tags else refs[0].familiar_string()
            if newer:
                yield ProgressEvent(status=f"Status: Downloaded newer image for {shown}")
            else:
                yield ProgressEvent(status=f"Status: Image is up to date for {shown}")

    async def distribution(self, ref_text: str, auth: AuthConfig) -> DistributionInfo:
        """GET /distribution/{name}/json: resolve the reference, read platforms, pull nothing."""
        ref = parse_reference(ref_text.strip()).with_default_tag()
        async with Session(self._transport, self._tokens, ref.domain, ref.path, auth) as sess:
            raw, ctype, digest = await self._get_doc(sess, ref, ref.digest or ref.tag)
            doc = parse_document(raw, ctype)
            if isinstance(doc, Index):
                plats = tuple(e.platform for e in doc.manifests)
            else:
                # A single manifest: the platform is in its config, as dockerd reads it.
                await self._fetch_small(sess, doc.config, MAX_CONFIG)
                store = self._store_of(doc.config.digest)
                raw_cfg = await store.read_bytes(doc.config.digest, limit=MAX_CONFIG)
                try:
                    cfg = json.loads(raw_cfg)
                    plats = (Platform(str(cfg.get("os") or ""), str(cfg.get("architecture") or ""),
                                      str(cfg.get("variant") or "")),)  # fmt: skip
                except (ValueError, AttributeError) as e:
                    raise errdefs.InvalidArgument(f"invalid image config {doc.config.digest}: {e}") from None
        return DistributionInfo(doc.media_type or ctype, digest, len(raw), plats)

    async def _list_tags(self, sess: Session, ref: Reference) -> list[str]:
        resp = await sess.request("GET", sess.url("tags/list"), ok=(),
                                  what=f"listing tags of {ref.familiar_name()}")
        if resp.status_code != 200:
            self._denied(resp, ref)
        try:
            tags = resp.json().get("tags") or []
        except (ValueError, AttributeError):
            raise errdefs.Unavailable(f"registry {ref.domain} answered garbage to tags/list") from None
        return sorted(str(t) for t in tags)

    def _denied(self, resp: httpx.Response, ref: Reference) -> None:
        codes = error_codes(resp)
        if resp.status_code == 404 and "MANIFEST_UNKNOWN" in codes:
            shown = ref.familiar_name() + (f":{ref.tag}" if ref.tag else f"@{ref.digest}")
            raise errdefs.NotFound(f"manifest for {shown} not found: manifest unknown: manifest unknown")
        if resp.status_code in (401, 403) or (resp.status_code == 404 and "NAME_UNKNOWN" in codes):
            raise errdefs.NotFound(_access_denied(ref))
        raise_for_status(resp, f"fetching {ref.familiar_string()}")

    async def _mirror_lacks_repo(self, sess: Session, ref: Reference) -> bool:
        """On a docker.io mirror: is the whole repository unknown there (not just the tag)?"""
        if sess.endpoint is None or not sess.endpoint.mirror:
            return False
        try:
            resp = await sess.request("GET", sess.url("tags/list"), ok=(),
                                      what=f"listing tags of {ref.familiar_name()}")
        except errdefs.EngineError:
            return False
        return resp.status_code == 404

    async def _get_doc(self, sess: Session, ref: Reference, name: str) -> tuple[bytes, str, str]:
        """GET a manifest or index; returns (bytes, content type, digest), bounded and verified."""
        url = sess.url(f"manifests/{name}")
        try:
            async with sess.stream(url, {"Accept": ACCEPT}) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    if resp.status_code == 404 and await self._mirror_lacks_repo(sess, ref):
                        # dockerd falls back from a mirror to the hub, which says this for a
                        # repository it does not have (or may not show).
                        raise errdefs.NotFound(_access_denied(ref))
                    self._denied(resp, ref)
                declared = resp.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > MAX_MANIFEST:
                    raise errdefs.InvalidArgument(
                        f"manifest too big: {declared} bytes (limit {MAX_MANIFEST})")
                buf = bytearray()
                async for chunk in resp.aiter_bytes():
                    buf += chunk
                    if len(buf) > MAX_MANIFEST:
                        raise errdefs.InvalidArgument(f"manifest too big: over {MAX_MANIFEST} bytes")
                ctype = resp.headers.get("content-type", "")
                header_digest = resp.headers.get("docker-content-digest", "")
        except httpx.HTTPError as e:
            raise errdefs.Unavailable(f'Get "{url}": {e}') from None
        raw = bytes(buf)
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if name.startswith("sha256:") and digest != name:
            raise errdefs.InvalidArgument(f"manifest verification failed for digest {name}")
        if header_digest.startswith("sha256:") and header_digest != digest:
            raise errdefs.InvalidArgument(
                f"manifest digest mismatch: registry says {header_digest}, content is {digest}")
        return raw, ctype, digest

    async def resolve(self, sess: Session, ref: Reference, want: Platform) -> _Resolved:
        name = ref.digest or ref.tag
        raw, ctype, digest = await self._get_doc(sess, ref, name)
        doc = parse_document(raw, ctype)
        docs = [(digest, raw)]
        if isinstance(doc, Index):
            blob = pick_platform(doc, want)
            mraw, mctype, mdigest = await self._get_doc(sess, ref, blob.digest)
            child = parse_document(mraw, mctype or blob.media_type)
            if not isinstance(child, Manifest):
                raise errdefs.InvalidArgument(f"manifest {blob.digest} of the index is not an image manifest")
            docs.append((mdigest, mraw))
            return _Resolved(digest, child, Blob(child.media_type, mdigest, len(mraw)), docs)
        return _Resolved(digest, doc, Blob(doc.media_type, digest, len(raw)), docs)

    async def _pull_one(self, sess: Session, ref: Reference, want: Platform) -> AsyncIterator[ProgressEvent]:
        res = await self.resolve(sess, ref, want)
        m = res.manifest
        yield ProgressEvent(id=ref.tag or ref.digest, status=f"Pulling from {ref.path}")
        await self._fetch_small(sess, m.config, MAX_CONFIG)
        raw_config = await self._store_of(m.config.digest).read_bytes(m.config.digest, limit=MAX_CONFIG)
        try:
            diff_ids = json.loads(raw_config)["rootfs"]["diff_ids"]
            chains = chain_ids(list(diff_ids))
        except (ValueError, KeyError, TypeError) as e:
            raise errdefs.InvalidArgument(f"invalid image config {m.config.digest}: {e}") from None
        if len(chains) != len(m.layers):
            raise errdefs.InvalidArgument(
                f"invalid image {m.config.digest}: the manifest has {len(m.layers)} layers, "
                f"the config {len(chains)}")
        todo: dict[str, Blob] = {}
        for blob, chain in zip(m.layers, chains, strict=True):
            have_layer = await anyio.to_thread.run_sync(self._layers.has, chain)
            if have_layer and await self._has(blob.digest):
                yield ProgressEvent(id=_short(blob.digest), status="Already exists")
            elif blob.digest not in todo:
                if await self._has(blob.digest):
                    yield ProgressEvent(id=_short(blob.digest), status="Download complete")
                    continue
                todo[blob.digest] = blob
                yield ProgressEvent(id=_short(blob.digest), status="Pulling fs layer")
        for i, blob in enumerate(todo.values()):
            if i >= self._max:
                yield ProgressEvent(id=_short(blob.digest), status="Waiting")
        async for ev in self._download_all(sess, list(todo.values())):
            yield ev
        for b in (m.config, *m.layers):
            await self._promote(b.digest)
        for d, raw in res.raw_docs:
            await self._content.put_bytes(raw, d)
        try:
            old: str | None = (await self._images.get_image(ref.string())).id
        except errdefs.NotFound:
            old = None
        img = PulledImage(
            manifest=res.manifest_blob, config=m.config, layers=list(m.layers),
            tags=[ref.string()] if ref.tag else [],
            repo_digests=[f"{ref.name}@{res.top_digest}"],
        )
        image_id = ""
        done: set[str] = set()
        async for ev in self._images.register_pulled_image(img):
            if ev.aux_json:
                image_id = str(json.loads(ev.aux_json).get("ID", ""))
                continue
            if ev.status == "Pull complete":
                done.add(ev.id)
            yield ev
        for d in todo:
            if _short(d) not in done:  # downloaded, but its layer was already unpacked
                yield ProgressEvent(id=_short(d), status="Pull complete")
        yield ProgressEvent(status=f"Digest: {res.top_digest}")
        yield ProgressEvent(aux_json=json.dumps({"newer": old != image_id, "ID": image_id}).encode())

    async def _has(self, digest: str) -> bool:
        return await self._content.has(digest) or await self._staging.has(digest)

    def _store_of(self, digest: str) -> ContentStore:
        return self._content if self._content.blob_path(digest).is_file() else self._staging

    async def _promote(self, digest: str) -> None:
        """Move a staged blob into the content store (same filesystem: one rename)."""
        if self._staging is self._content:
            return
        src, dst = self._staging.blob_path(digest), self._content.blob_path(digest)

        def move() -> None:
            if not src.is_file():
                return
            if dst.is_file():
                src.unlink(missing_ok=True)
                return
            os.rename(src, dst)
            fd = os.open(dst.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        await anyio.to_thread.run_sync(move)

    async def _fetch_small(self, sess: Session, blob: Blob, limit: int) -> None:
        if await self._has(blob.digest):
            return
        if blob.size > limit:
            raise errdefs.InvalidArgument(f"blob {blob.digest} is too big: {blob.size} bytes")

        async def ignore(_: int) -> None:
            return None

        await self.fetch_blob(sess, blob, ignore)

    async def _download_all(self, sess: Session, blobs: list[Blob]) -> AsyncIterator[ProgressEvent]:
        if not blobs:
            return
        send, recv = anyio.create_memory_object_stream[ProgressEvent](256)
        failed: list[BaseException] = []
        limiter = anyio.CapacityLimiter(self._max)

        async def one(blob: Blob, tg: anyio.abc.TaskGroup) -> None:
            sid = _short(blob.digest)
            last = [0]

            async def progress(done: int) -> None:
                if done - last[0] >= PROGRESS_STEP or done == blob.size:
                    last[0] = done
                    await send.send(ProgressEvent(id=sid, status="Downloading", current=done,
                                                  total=blob.size))

            try:
                async with limiter:
                    await self.fetch_blob(sess, blob, progress)
                await send.send(ProgressEvent(id=sid, status="Verifying Checksum"))
                await send.send(ProgressEvent(id=sid, status="Download complete"))
            except Exception as e:
                # The first failure stops the others; it is re-raised once the stream is drained.
                failed.append(e)
                tg.cancel_scope.cancel()

        async def run_all() -> None:
            async with send:
                async with anyio.create_task_group() as tg:
                    for b in blobs:
                        tg.start_soon(one, b, tg)

        async with anyio.create_task_group() as outer:
            outer.start_soon(run_all)
            async with recv:
                async for ev in recv:
                    yield ev
        if failed:
            raise failed[0]

    async def fetch_blob(self, sess: Session, blob: Blob, progress: Callable[[int], Awaitable[None]]) -> None:
        """Download one blob into the content store, verified while streaming.

        Interrupted transfers resume with a Range request (with backoff), up to MAX_RETRIES.

        Raises:
            errdefs.InvalidArgument: the bytes do not match the digest (nothing is stored).
            errdefs.Unavailable: the registry kept failing.
        """
        url = sess.url(f"blobs/{blob.digest}")
        writer: BlobWriter = await anyio.to_thread.run_sync(self._staging.open_writer, blob.digest)
        try:
            attempt = 0
            while True:
                offset = writer.size
                headers = {"Range": f"bytes={offset}-"} if offset else {}
                try:
                    async with sess.stream(url, headers) as resp:
                        if resp.status_code == 200 and offset:
                            # The server ignored Range: start the blob over.
                            writer.abort()
                            writer = await anyio.to_thread.run_sync(self._staging.open_writer, blob.digest)
                        elif resp.status_code not in (200, 206):
                            await resp.aread()
                            raise_for_status(resp, f"fetching blob {blob.digest}")
                        # Buffered to ~1 MiB per thread hop; what arrived before a failure is
                        # kept, so the retry resumes exactly there.
                        buf = bytearray()
                        try:
                            async for chunk in resp.aiter_bytes():
                                buf += chunk
                                if writer.size + len(buf) > blob.size:
                                    raise errdefs.InvalidArgument(
                                        f"filesystem layer verification failed for digest "
                                        f"{blob.digest}: more than the {blob.size} bytes announced")
                                if len(buf) >= CHUNK:
                                    await anyio.to_thread.run_sync(writer.write, bytes(buf))
                                    buf.clear()
                                    await progress(writer.size)
                        finally:
                            if buf and writer.size + len(buf) <= blob.size:
                                with anyio.CancelScope(shield=True):
                                    await anyio.to_thread.run_sync(writer.write, bytes(buf))
                        await progress(writer.size)
                    if writer.size >= blob.size:
                        break
                    raise httpx.RemoteProtocolError("short read")
                except (httpx.TransportError, httpx.RemoteProtocolError) as e:
                    attempt += 1
                    if attempt > MAX_RETRIES:
                        raise errdefs.Unavailable(
                            f"fetching blob {blob.digest}: giving up after {MAX_RETRIES} retries: {e}"
                        ) from None
                    log.info("blob %s: %s at %d bytes; retry %d", blob.digest, e, writer.size, attempt)
                    await anyio.sleep(min(0.25 * 2 ** attempt, 5.0))
            try:
                await anyio.to_thread.run_sync(writer.commit)
            except DigestMismatch:
                raise errdefs.InvalidArgument(
                    f"filesystem layer verification failed for digest {blob.digest}") from None
        finally:
            writer.abort()
