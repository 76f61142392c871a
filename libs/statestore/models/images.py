"""Tables owned by the images service (prefix ``img_``); only images_svc writes them.

Keys: several hosts may share one PostgreSQL, and image ids, layer chain ids and references are
content- or user-derived, so the same value legitimately exists on several nodes (two hosts pull
busybox). Every primary key therefore starts with ``node_id`` — ``(node_id, id)``,
``(node_id, ref)``, ``(node_id, chain_id)`` — and foreign keys carry it too, so one node's rows
never collide with or cascade into another's, and each node's queries are primary-key prefix scans.

The image's chain ids live in ``img_image_layers`` (one row per position) rather than in a JSON
column, so "is this layer still used" is an indexed query and a foreign key keeps every chain id
pointing at an existing ``img_layers`` row. ``img_manifest_layers`` keeps the manifest's layer
descriptors (media type, blob digest, size) in order, for the content store's garbage collection.

``img_snapshots`` records each container rootfs snapshot (key = container id). Its foreign key to
``img_images`` has no cascade: an image with snapshots is in use and cannot be deleted.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .common import NODE_ID_LEN, Base

__all__ = [
    "Image", "ImageLayer", "ImageManifestLayer", "ImgDigest", "ImgSnapshot", "ImgTag", "Layer",
]

DIGEST_LEN = 71  # "sha256:" + 64 hex
REF_LEN = 512


class Image(Base):
    """One image record; ``config_json`` keeps the exact bytes whose digest is ``id``."""

    __tablename__ = "img_images"
    __table_args__ = (Index(None, "node_id", "parent"),)

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    id: Mapped[str] = mapped_column(String(DIGEST_LEN), primary_key=True)  # "sha256:<hex>"
    config_json: Mapped[bytes] = mapped_column(LargeBinary)
    manifest_digest: Mapped[str] = mapped_column(String(DIGEST_LEN))  # "" if none kept
    manifest_media_type: Mapped[str] = mapped_column(String(255))
    manifest_size: Mapped[int] = mapped_column(BigInteger)
    parent: Mapped[str] = mapped_column(String(DIGEST_LEN))  # "" if none
    created: Mapped[str] = mapped_column(String(40))  # RFC 3339, from the config
    size: Mapped[int] = mapped_column(BigInteger)
    record_created: Mapped[str] = mapped_column(String(40))


class Layer(Base):
    """One unpacked layer, identified by its chain id; shared by every image reaching it."""

    __tablename__ = "img_layers"

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    chain_id: Mapped[str] = mapped_column(String(DIGEST_LEN), primary_key=True)
    diff_id: Mapped[str] = mapped_column(String(DIGEST_LEN))
    parent: Mapped[str] = mapped_column(String(DIGEST_LEN))  # chain id below, "" for a base
    size: Mapped[int] = mapped_column(BigInteger)


class ImageLayer(Base):
    """Position ``idx`` (0 = bottom) of an image's layer chain."""

    __tablename__ = "img_image_layers"
    __table_args__ = (
        ForeignKeyConstraint(
            ["node_id", "image_id"],
            ["img_images.node_id", "img_images.id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["node_id", "chain_id"], ["img_layers.node_id", "img_layers.chain_id"]
        ),
        Index(None, "node_id", "chain_id"),
    )

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    image_id: Mapped[str] = mapped_column(String(DIGEST_LEN), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    chain_id: Mapped[str] = mapped_column(String(DIGEST_LEN))


class ImageManifestLayer(Base):
    """Position ``idx`` of the manifest's layer descriptors (the compressed blobs)."""

    __tablename__ = "img_manifest_layers"
    __table_args__ = (
        ForeignKeyConstraint(
            ["node_id", "image_id"],
            ["img_images.node_id", "img_images.id"],
            ondelete="CASCADE",
        ),
    )

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    image_id: Mapped[str] = mapped_column(String(DIGEST_LEN), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    media_type: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    size: Mapped[int] = mapped_column(BigInteger)


class ImgTag(Base):
    """A normalised tag reference ("docker.io/library/busybox:latest") naming one image."""

    __tablename__ = "img_tags"
    __table_args__ = (
        ForeignKeyConstraint(
            ["node_id", "image_id"],
            ["img_images.node_id", "img_images.id"],
            ondelete="CASCADE",
        ),
        Index(None, "node_id", "image_id"),
    )

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    ref: Mapped[str] = mapped_column(String(REF_LEN), primary_key=True)
    image_id: Mapped[str] = mapped_column(String(DIGEST_LEN))


class ImgDigest(Base):
    """A normalised digest reference ("docker.io/library/busybox@sha256:..") — RepoDigests."""

    __tablename__ = "img_digests"
    __table_args__ = (
        ForeignKeyConstraint(
            ["node_id", "image_id"],
            ["img_images.node_id", "img_images.id"],
            ondelete="CASCADE",
        ),
        Index(None, "node_id", "image_id"),
    )

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    ref: Mapped[str] = mapped_column(String(REF_LEN), primary_key=True)
    image_id: Mapped[str] = mapped_column(String(DIGEST_LEN))



class ImgSnapshot(Base):
    """A container's rootfs snapshot: overlay of ``image_id``'s layers plus a writable upper dir."""

    __tablename__ = "img_snapshots"
    __table_args__ = (
        # No cascade: deleting an image that snapshots use must fail.
        ForeignKeyConstraint(
            ["node_id", "image_id"], ["img_images.node_id", "img_images.id"]
        ),
        Index(None, "node_id", "image_id"),
    )

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # container id, 64 hex
    image_id: Mapped[str] = mapped_column(String(DIGEST_LEN))
    chain_ids: Mapped[str] = mapped_column(Text)  # JSON list of chain ids, bottom first
    created: Mapped[str] = mapped_column(String(40))  # RFC 3339
    labels: Mapped[str] = mapped_column(Text)  # JSON object of string labels
