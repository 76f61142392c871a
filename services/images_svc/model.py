"""Plain records the images service keeps; transport-free and shared by store, service and convert."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DeleteItem", "HistoryItem", "ImageRecord", "LayerRecord"]


@dataclass(frozen=True, slots=True)
class LayerRecord:
    """One unpacked layer, shared by every image whose stack reaches it."""

    chain_id: str  # "sha256:<hex>": identity of the stack ending in this layer
    diff_id: str  # "sha256:<hex>" of the uncompressed layer tar
    parent: str  # chain id of the layer below, "" for a base layer
    size: int  # bytes of file content in this layer
    node_id: str


@dataclass(slots=True)
class ImageRecord:
    """One image: its config (whose digest is the id), manifest and layer chain."""

    id: str  # "sha256:<hex>" of config_json
    config_json: bytes
    manifest_digest: str  # manifest blob in the content store ("" if none kept)
    manifest_media_type: str
    manifest_size: int
    chain_ids: list[str]  # bottom first
    parent: str  # parent image id ("" if none)
    created: str  # RFC 3339, from the config
    size: int  # sum of layer sizes
    node_id: str
    record_created: str  # RFC 3339, when the record was written
    # Normalised references: "docker.io/library/busybox:latest", "docker.io/library/busybox@sha256:..".
    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)
    # The manifest's layer descriptors, bottom first: (media_type, digest, size).
    layers: list[tuple[str, str, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeleteItem:
    """One line of an rmi/prune result: exactly one of the two is set."""

    untagged: str = ""
    deleted: str = ""


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One row of docker history."""

    id: str
    created: int
    created_by: str
    tags: list[str]
    size: int
    comment: str
