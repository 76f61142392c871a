"""Manifest and index documents: media types, strict parsing, platform selection."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import errdefs
from images_svc.content import validate_digest
from images_svc.pulled import Blob
from registry_svc.api import Platform

__all__ = [
    "ACCEPT", "INDEX_TYPES", "LAYER_TYPES", "MANIFEST_TYPES", "MAX_MANIFEST", "Index", "Manifest",
    "parse_document", "pick_platform",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"

MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
CONFIG_TYPES = (DOCKER_CONFIG, OCI_CONFIG)
LAYER_TYPES = (
    DOCKER_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    OCI_LAYER, OCI_LAYER + "+gzip", OCI_LAYER + "+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
# Docker's limit on manifests and indexes it reads.
MAX_MANIFEST = 4 << 20


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest: config and layers."""

    media_type: str
    config: Blob
    layers: list[Blob]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One manifest of an index, with its platform."""

    blob: Blob
    platform: Platform


@dataclass(frozen=True, slots=True)
class Index:
    """A manifest list / OCI index."""

    media_type: str
    manifests: list[IndexEntry]


def _blob(d: Any, what: str) -> Blob:
    if not isinstance(d, dict):
        raise errdefs.InvalidArgument(f"invalid manifest: {what} is not a descriptor")
    digest, size, mt = d.get("digest"), d.get("size"), d.get("mediaType", "")
    if not isinstance(digest, str):
        raise errdefs.InvalidArgument(f"invalid manifest: {what} has no digest")
    validate_digest(digest)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise errdefs.InvalidArgument(f"invalid manifest: {what} has a bad size {size!r}")
    if not isinstance(mt, str):
        raise errdefs.InvalidArgument(f"invalid manifest: {what} has a bad media type")
    return Blob(mt, digest, size)


def parse_document(raw: bytes, content_type: str) -> Manifest | Index:
    """Parse a manifest or index, trusting neither the header nor the body alone.

    Raises:
        errdefs.InvalidArgument: bad JSON, unknown media type, a document that is both index
            and manifest, bad descriptors or digests.
    """
    if len(raw) > MAX_MANIFEST:
        raise errdefs.InvalidArgument(f"manifest too big: {len(raw)} bytes (limit {MAX_MANIFEST})")
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise errdefs.InvalidArgument(f"invalid manifest: {e}") from None
    if not isinstance(doc, dict):
        raise errdefs.InvalidArgument("invalid manifest: not a JSON object")
    has_layers, has_manifests = "layers" in doc or "config" in doc, "manifests" in doc
    if has_layers and has_manifests:
        raise errdefs.InvalidArgument("invalid manifest: the document is both an index and a manifest")
    mt = str(doc.get("mediaType") or content_type.split(";")[0].strip())
    if doc.get("schemaVersion") == 1 or mt.startswith("application/vnd.docker.distribution.manifest.v1"):
        raise errdefs.InvalidArgument(
            "unsupported manifest format: Docker Image manifest version 2, schema 1 is not supported"
        )
    if mt not in (*MANIFEST_TYPES, *INDEX_TYPES):
        if not mt and has_layers:
            mt = OCI_MANIFEST
        elif not mt and has_manifests:
            mt = OCI_INDEX
        else:
            raise errdefs.InvalidArgument(f"unsupported manifest media type: {mt!r}")
    if mt in INDEX_TYPES:
        if has_layers or not isinstance(doc.get("manifests"), list):
            raise errdefs.InvalidArgument("invalid index: no manifests list")
        entries = []
        for i, m in enumerate(doc["manifests"]):
            b = _blob(m, f"manifests[{i}]")
            p = m.get("platform") or {}
            if not isinstance(p, dict):
                p = {}
            entries.append(IndexEntry(b, Platform(str(p.get("os", "")), str(p.get("architecture", "")),
                                                  str(p.get("variant", "")))))
        return Index(mt, entries)
    if has_manifests:
        raise errdefs.InvalidArgument("invalid manifest: the document is both an index and a manifest")
    config = _blob(doc.get("config"), "config")
    layers_raw = doc.get("layers")
    if not isinstance(layers_raw, list):
        raise errdefs.InvalidArgument("invalid manifest: no layers list")
    layers = [_blob(d, f"layers[{i}]") for i, d in enumerate(layers_raw)]
    for b in layers:
        if b.media_type not in LAYER_TYPES:
            raise errdefs.InvalidArgument(f"unsupported layer media type: {b.media_type!r}")
    return Manifest(mt, config, layers)


def pick_platform(index: Index, want: Platform) -> Blob:
    """The first manifest of ``index`` for ``want`` (variant checked only when given).

    Raises:
        errdefs.NotFound: Docker's "no matching manifest for linux/amd64 in the manifest list entries".
    """
    for e in index.manifests:
        if e.blob.media_type and e.blob.media_type not in MANIFEST_TYPES:
            continue  # nested indexes and attestations are skipped, as Docker does
        p = e.platform
        if p.os == want.os and p.architecture == want.architecture and (
            not want.variant or p.variant == want.variant
        ):
            return e.blob
    plat = "/".join(x for x in (want.os, want.architecture, want.variant) if x)
    raise errdefs.NotFound(f"no matching manifest for {plat} in the manifest list entries")
