"""Plain records the images service keeps; transport-free and shared by store, service and convert."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "Change", "ChangeKind", "DeleteItem", "HistoryItem", "ImageRecord", "LayerRecord", "Snapshot",
    "SnapshotRecord",
]


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


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """What the state store keeps about one snapshot (a container's rootfs)."""

    key: str  # the container id: 64 lowercase hex
    image_id: str  # "sha256:<hex>"
    chain_ids: list[str]  # the lower layers, bottom first
    created: str  # RFC 3339
    node_id: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot as callers see it: the record plus its paths and mount state."""

    key: str
    image_id: str
    chain_ids: list[str]
    upper_dir: str
    work_dir: str
    merged_dir: str
    mounted: bool
    created: str
    node_id: str
    labels: dict[str, str] = field(default_factory=dict)


class ChangeKind(IntEnum):
    """docker diff change types, with Docker's numbers."""

    MODIFIED = 0
    ADDED = 1
    DELETED = 2


@dataclass(frozen=True, slots=True)
class Change:
    """One changed path of a snapshot ("/etc/motd")."""

    path: str
    kind: ChangeKind
