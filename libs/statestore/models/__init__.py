"""berth's one schema: every table, grouped by the service that owns (and alone writes) it.

Every primary key starts with ``node_id`` so several hosts can share one PostgreSQL; rows of one
node never collide with another's. Keys are marked ``PK``, foreign keys ``->``::

    common (statestore)
    ├── nodes                 PK node_id; hostname, created
    └── object_ids            PK (node_id, id: 64 hex, no "sha256:"); kind
    images (img_)
    ├── img_images            PK (node_id, id: "sha256:<hex>"); config_json (exact bytes),
    │   │                     manifest_digest, manifest_media_type, manifest_size, parent,
    │   │                     created, size, record_created
    │   ├── img_image_layers  PK (node_id, image_id, idx); chain_id -> img_layers
    │   ├── img_manifest_layers PK (node_id, image_id, idx); media_type, digest, size (layer blobs)
    │   ├── img_tags          PK (node_id, ref: "docker.io/library/busybox:latest"); image_id
    │   └── img_digests       PK (node_id, ref: "docker.io/library/busybox@sha256:.."); image_id
    │                         (children cascade when their img_images row is deleted)
    ├── img_layers            PK (node_id, chain_id); diff_id, parent (chain id), size
    └── img_snapshots         PK (node_id, key); image_id -> img_images (no cascade: it pins
                              the image), chain_ids, labels
    containers (ctr_)
    └── ctr_containers        PK (node_id, id); UNIQUE (node_id, name); image_id, config_json,
                              created, state, pid, exit_code, started_at, finished_at
    networks (net_)
    ├── net_networks          PK (node_id, id); UNIQUE (node_id, name); driver, config_json, created
    ├── net_endpoints         PK (node_id, network_id, container_id); container_name, endpoint_id,
    │                         config_json, state_json (no foreign key: rm drops unattached rows)
    └── net_sandboxes         PK (node_id, container_id); request_json, state_json
    volumes (vol_)
    ├── vol_volumes           PK (node_id, name); driver, mountpoint, options_json, labels_json,
    │                         created, anonymous
    └── vol_refs              PK (node_id, volume_name -> vol_volumes (no cascade: a
                              reference pins its volume), container_id)
    alembic_version           the schema revision (libs/statestore/migrations/versions)

Timestamps are RFC 3339 text, as Docker reports them.
"""

from __future__ import annotations

from .common import Base, Node, ObjectId
from .containers import Container
from .images import Image, ImageLayer, ImageManifestLayer, ImgDigest, ImgSnapshot, ImgTag, Layer
from .networks import Endpoint, Network, Sandbox
from .volumes import Volume, VolumeRef

__all__ = [
    "Base",
    "Container",
    "Endpoint",
    "Image",
    "ImageLayer",
    "ImageManifestLayer",
    "ImgDigest",
    "ImgSnapshot",
    "ImgTag",
    "Layer",
    "Network",
    "Node",
    "ObjectId",
    "Sandbox",
    "Volume",
    "VolumeRef",
]
