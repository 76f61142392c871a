"""Taking in an image the registry service pulled: blobs are in the content store, make the record."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio

import errdefs
from berthapi.images.v1 import images_pb2 as pb
from berthapi.types.v1 import types_pb2 as tpb
from dockerapi.reference import parse_reference
from dockerapi.timefmt import now_rfc3339
from events_svc.model import Event
from images_svc.api import ProgressEvent
from images_svc.content import validate_digest
from images_svc.layers import chain_ids
from images_svc.model import ImageRecord, LayerRecord

if TYPE_CHECKING:
    from images_svc.service import ImagesService

__all__ = [
    "Blob", "PulledImage", "PulledImagesAPI", "pulled_from_proto", "pulled_to_proto",
    "register_pulled_image",
]

# Largest config blob read into memory (Docker's own limit on configs is 8 MiB).
MAX_CONFIG = 8 << 20
# Space left free on the data root's disk whatever a layer says.
HEADROOM = 64 << 20


@dataclass(frozen=True, slots=True)
class Blob:
    """An OCI descriptor: media type, digest and size of a blob in the content store."""

    media_type: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class PulledImage:
    """What the registry service hands over once every blob of an image is stored."""

    manifest: Blob
    config: Blob
    layers: list[Blob]
    tags: list[str] = field(default_factory=list)  # normalised "domain/path:tag"
    repo_digests: list[str] = field(default_factory=list)  # normalised "domain/path@sha256:.."


class PulledImagesAPI(Protocol):
    """The part of the images service the registry service needs for a pull."""

    def register_pulled_image(self, img: PulledImage) -> AsyncIterator[ProgressEvent]:
        """Unpack the layers not yet unpacked and record the image with its tags and digests.

        Yields "Extracting"/"Pull complete" per unpacked layer (id = short blob digest), then
        one event whose aux_json is ``{"ID": "sha256:.."}``.

        Raises:
            errdefs.NotFound: a blob is not in the content store.
            errdefs.InvalidArgument: bad config, layer count mismatch, a layer that does not
                verify against its diff id; nothing is recorded.
        """
        ...


def _blob_to_proto(b: Blob) -> tpb.Descriptor:
    return tpb.Descriptor(media_type=b.media_type, digest=b.digest, size=b.size)


def _blob_from_proto(m: tpb.Descriptor) -> Blob:
    return Blob(m.media_type, m.digest, m.size)


def pulled_to_proto(img: PulledImage) -> pb.RegisterPulledImageRequest:
    return pb.RegisterPulledImageRequest(
        manifest=_blob_to_proto(img.manifest), config=_blob_to_proto(img.config),
        layers=[_blob_to_proto(b) for b in img.layers], tags=img.tags,
        repo_digests=img.repo_digests,
    )


def pulled_from_proto(m: pb.RegisterPulledImageRequest) -> PulledImage:
    return PulledImage(
        manifest=_blob_from_proto(m.manifest), config=_blob_from_proto(m.config),
        layers=[_blob_from_proto(b) for b in m.layers], tags=list(m.tags),
        repo_digests=list(m.repo_digests),
    )


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _config_diff_ids(raw: bytes, n_layers: int, digest: str) -> tuple[dict[str, Any], list[str]]:
    try:
        config = json.loads(raw)
    except ValueError as e:
        raise errdefs.InvalidArgument(f"invalid image config {digest}: {e}") from None
    if not isinstance(config, dict):
        raise errdefs.InvalidArgument(f"invalid image config {digest}: not an object")
    rootfs = config.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise errdefs.InvalidArgument(f"invalid image config {digest}: no rootfs.diff_ids")
    if len(diff_ids) != n_layers:
        raise errdefs.InvalidArgument(
            f"invalid image {digest}: the manifest has {n_layers} layers, the config {len(diff_ids)}"
        )
    for d in diff_ids:
        validate_digest(d)
    return config, list(diff_ids)


async def register_pulled_image(svc: ImagesService, img: PulledImage) -> AsyncIterator[ProgressEvent]:
    """ImagesService.register_pulled_image; see PulledImagesAPI."""
    content, layers = svc.content, svc.layers
    for b in (img.manifest, img.config, *img.layers):
        validate_digest(b.digest)
        if not await content.has(b.digest):
            raise errdefs.NotFound(f"content digest {b.digest}: not found")
    for ref in (*img.tags, *img.repo_digests):
        parse_reference(ref)
    raw = await content.read_bytes(img.config.digest, limit=MAX_CONFIG)
    config, diff_ids = _config_diff_ids(raw, len(img.layers), img.config.digest)
    chains = chain_ids(diff_ids)
    layer_recs: list[LayerRecord] = []
    parent = ""
    for blob, diff_id, chain in zip(img.layers, diff_ids, chains, strict=True):
        present = await anyio.to_thread.run_sync(layers.has, chain)
        if not present:
            yield ProgressEvent(id=_short(blob.digest), status="Extracting")
            # A layer may not decompress to more than the disk has left (decompression bombs).
            room = await anyio.to_thread.run_sync(_free_bytes, layers.root)
            await layers.unpack(chain, parent, content.blob_path(blob.digest), diff_id,
                                max_size=max(room - HEADROOM, 0))
            yield ProgressEvent(id=_short(blob.digest), status="Pull complete")
        info = await anyio.to_thread.run_sync(layers.read_meta, chain)
        layer_recs.append(LayerRecord(chain, diff_id, parent, info.size, svc.node_id))
        parent = chain
    rec = ImageRecord(
        id=img.config.digest,
        config_json=raw,
        manifest_digest=img.manifest.digest,
        manifest_media_type=img.manifest.media_type,
        manifest_size=img.manifest.size,
        chain_ids=chains,
        parent="",
        created=str(config.get("created", "")),
        size=sum(lr.size for lr in layer_recs),
        node_id=svc.node_id,
        record_created=now_rfc3339(),
        layers=[(b.media_type, b.digest, b.size) for b in img.layers],
    )
    await svc.store_pulled(rec, layer_recs, list(img.tags), list(img.repo_digests))
    if svc.events is not None:
        name = img.tags[0] if img.tags else (img.repo_digests[0] if img.repo_digests else rec.id)
        fam = parse_reference(name).familiar_string() if name != rec.id else name
        await svc.events.publish(Event("image", "pull", fam, {"name": fam}))
    yield ProgressEvent(aux_json=json.dumps({"ID": rec.id}).encode())
