"""The images service's record store: ImageStore protocol and its SQL implementation."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Executable, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import errdefs
from images_svc.model import ImageRecord, LayerRecord, SnapshotRecord
from statestore import StateStore
from statestore.models import (
    Image,
    ImageLayer,
    ImageManifestLayer,
    ImgDigest,
    ImgTag,
    Layer,
    ObjectId,
)
from statestore.models.images import ImgSnapshot

__all__ = ["ImageStore", "SqlImageStore"]

_HEX = frozenset("0123456789abcdef")


class ImageStore(Protocol):
    """Image records, tags, digest references and layer records of one node.

    Image ids and chain ids are ``"sha256:<hex>"``; references are normalised
    (``docker.io/library/busybox:latest``, ``docker.io/library/busybox@sha256:…``). Every call is
    one transaction; lookups that find nothing return None/[]/False rather than raising.
    """

    async def put_image(
        self, rec: ImageRecord, layers: list[LayerRecord], tags: list[str], digests: list[str]
    ) -> list[str]:
        """Record an image with its layers and point ``tags``/``digests`` at it, atomically.

        Layer rows and the image row are inserted when missing (an existing image keeps its
        record, but gains manifest fields it lacked). A tag or digest reference held by another
        image moves to this one. Calling it again with the same arguments changes nothing.

        Args:
            rec: the image; ``repo_tags``/``repo_digests`` are ignored (use ``tags``/``digests``).
            layers: layer records for (some of) ``rec.chain_ids``; others must already exist.
            tags: normalised tag references to point at the image.
            digests: normalised digest references (RepoDigests) to add.

        Returns:
            Ids of other images that lost a tag or digest reference, in first-lost order.

        Raises:
            errdefs.InvalidArgument: a record belongs to another node, or a layer record is not
                in ``rec.chain_ids``.
            errdefs.NotFound: a chain id of ``rec`` has neither a layer record nor an entry in
                ``layers``.
            errdefs.Conflict: the id's hex is already used by another kind of object.
        """
        ...

    async def get(self, image_id: str) -> ImageRecord | None:
        """Return the image with tags, digests and layer descriptors filled, or None."""
        ...

    async def find_by_id_prefix(self, prefix: str) -> list[ImageRecord]:
        """Return the images whose id starts with ``prefix`` (hex, "sha256:" optional).

        An empty or non-hex prefix matches nothing.
        """
        ...

    async def resolve_tag(self, ref: str) -> str | None:
        """Return the id of the image ``ref`` (a normalised tag reference) names, or None."""
        ...

    async def resolve_digest(self, ref: str) -> str | None:
        """Return the id of the image the digest reference ``ref`` names, or None."""
        ...

    async def list_images(self) -> list[ImageRecord]:
        """Return every image of this node, ordered by id."""
        ...

    async def count_images(self) -> int:
        """Return how many images this node has."""
        ...

    async def set_tag(self, ref: str, image_id: str) -> str | None:
        """Point the tag ``ref`` at ``image_id``.

        Returns:
            The image that held ``ref`` before, or None if it was free or already this image.

        Raises:
            errdefs.NotFound: no image ``image_id`` ("No such image: <id>").
        """
        ...

    async def remove_tag(self, ref: str) -> bool:
        """Remove the tag ``ref``; return whether it existed."""
        ...

    async def remove_digest(self, ref: str) -> bool:
        """Remove the digest reference ``ref``; return whether it existed."""
        ...

    async def delete_image(self, image_id: str) -> list[str]:
        """Delete the image record with its tags, digests and id reservation.

        Layer records that no remaining image reaches are deleted in the same transaction.

        Returns:
            The chain ids of those layers, top first, so their directories can be removed.

        Raises:
            errdefs.NotFound: no image ``image_id`` ("No such image: <id>").
        """
        ...

    async def children(self, image_id: str) -> list[str]:
        """Return the ids of images whose parent is ``image_id``, ordered by id."""
        ...

    async def get_layer(self, chain_id: str) -> LayerRecord | None:
        """Return the layer record of ``chain_id``, or None."""
        ...

    async def list_layers(self) -> list[LayerRecord]:
        """Return every layer record of this node, ordered by chain id."""
        ...

    async def layer_in_use(self, chain_id: str) -> bool:
        """Return whether any image's chain reaches ``chain_id``."""
        ...

    async def referenced_blobs(self) -> set[str]:
        """Return every blob digest an image still needs in the content store.

        That is each image's config (its id), manifest and manifest layer blobs, plus the
        digests named by digest references (a manifest list pulled by digest may be kept too).
        """
        ...

    async def put_snapshot(self, rec: SnapshotRecord) -> None:
        """Record a snapshot of an existing image.

        Raises:
            errdefs.InvalidArgument: the record belongs to another node.
            errdefs.NotFound: no image ``rec.image_id`` ("No such image: <id>").
            errdefs.AlreadyExists: a snapshot ``rec.key`` exists already.
        """
        ...

    async def get_snapshot(self, key: str) -> SnapshotRecord | None:
        """Return the snapshot ``key``, or None."""
        ...

    async def list_snapshots(self) -> list[SnapshotRecord]:
        """Return every snapshot of this node, ordered by key."""
        ...

    async def delete_snapshot(self, key: str) -> bool:
        """Delete the snapshot record ``key`` (never its image); return whether it existed."""
        ...

    async def snapshots_of(self, image_id: str) -> list[str]:
        """Return the keys of the snapshots of ``image_id``, ordered by key."""
        ...


class SqlImageStore:
    """ImageStore over the ``img_*`` tables of the state store, scoped to one node."""

    def __init__(self, state: StateStore, node_id: str) -> None:
        self._state = state
        self._node = node_id

    # -- writes ---------------------------------------------------------------------------

    async def put_image(
        self, rec: ImageRecord, layers: list[LayerRecord], tags: list[str], digests: list[str]
    ) -> list[str]:
        if rec.node_id != self._node:
            raise errdefs.InvalidArgument(f"image {rec.id} belongs to node {rec.node_id}")
        chain = set(rec.chain_ids)
        for lr in layers:
            if lr.node_id != self._node:
                raise errdefs.InvalidArgument(f"layer {lr.chain_id} belongs to node {lr.node_id}")
            if lr.chain_id not in chain:
                raise errdefs.InvalidArgument(f"layer {lr.chain_id} is not in image {rec.id}")
        n = self._node
        async with self._state.session() as s:
            if layers:
                await s.execute(
                    self._insert_ignore(
                        Layer,
                        [
                            {"node_id": n, "chain_id": lr.chain_id, "diff_id": lr.diff_id,
                             "parent": lr.parent, "size": lr.size}
                            for lr in layers
                        ],
                    )
                )
            if chain:
                have = set(
                    await s.scalars(
                        select(Layer.chain_id).where(Layer.node_id == n, Layer.chain_id.in_(chain))
                    )
                )
                for c in rec.chain_ids:
                    if c not in have:
                        raise errdefs.NotFound(f"No such layer: {c}")
            await self._insert_image(s, rec)
            lost: list[str] = []
            for ref in dict.fromkeys(tags):
                prev = await self._point(s, ImgTag, ref, rec.id)
                if prev is not None and prev not in lost:
                    lost.append(prev)
            for ref in dict.fromkeys(digests):
                prev = await self._point(s, ImgDigest, ref, rec.id)
                if prev is not None and prev not in lost:
                    lost.append(prev)
            return lost

    async def _insert_image(self, s: AsyncSession, rec: ImageRecord) -> None:
        n, hexid = self._node, rec.id.removeprefix("sha256:")
        kind = await s.scalar(
            select(ObjectId.kind).where(ObjectId.node_id == n, ObjectId.id == hexid)
        )
        if kind is not None and kind != "image":
            raise errdefs.Conflict(f"id {hexid} is already used by a {kind}")
        # ON CONFLICT DO NOTHING: a concurrent put of the same image is not an error.
        res = await s.execute(
            self._insert_ignore(
                Image,
                [{
                    "node_id": n, "id": rec.id, "config_json": rec.config_json,
                    "manifest_digest": rec.manifest_digest,
                    "manifest_media_type": rec.manifest_media_type,
                    "manifest_size": rec.manifest_size, "parent": rec.parent,
                    "created": rec.created, "size": rec.size,
                    "record_created": rec.record_created,
                }],
            )
        )
        if _rowcount(res) == 1:
            await s.execute(
                self._insert_ignore(ObjectId, [{"node_id": n, "id": hexid, "kind": "image"}])
            )
            if rec.chain_ids:
                await s.execute(
                    self._insert_ignore(
                        ImageLayer,
                        [
                            {"node_id": n, "image_id": rec.id, "idx": i, "chain_id": c}
                            for i, c in enumerate(rec.chain_ids)
                        ],
                    )
                )
            await self._insert_manifest_layers(s, rec)
            return
        # Already recorded: keep it, but learn a manifest it was stored without (load, then pull).
        if rec.manifest_digest:
            upd = await s.execute(
                update(Image)
                .where(Image.node_id == n, Image.id == rec.id, Image.manifest_digest == "")
                .values(
                    manifest_digest=rec.manifest_digest,
                    manifest_media_type=rec.manifest_media_type,
                    manifest_size=rec.manifest_size,
                )
            )
            if _rowcount(upd) == 1:
                await s.execute(
                    delete(ImageManifestLayer).where(
                        ImageManifestLayer.node_id == n, ImageManifestLayer.image_id == rec.id
                    )
                )
                await self._insert_manifest_layers(s, rec)

    async def _insert_manifest_layers(self, s: AsyncSession, rec: ImageRecord) -> None:
        if rec.layers:
            await s.execute(
                self._insert_ignore(
                    ImageManifestLayer,
                    [
                        {"node_id": self._node, "image_id": rec.id, "idx": i,
                         "media_type": mt, "digest": d, "size": sz}
                        for i, (mt, d, sz) in enumerate(rec.layers)
                    ],
                )
            )

    async def _point(
        self, s: AsyncSession, table: type[ImgTag] | type[ImgDigest], ref: str, image_id: str
    ) -> str | None:
        """Point ``ref`` at ``image_id``; return the previous, different holder."""
        prev = await s.scalar(
            select(table.image_id)
            .where(table.node_id == self._node, table.ref == ref)
            .with_for_update()
        )
        if prev == image_id:
            return None
        row = {"node_id": self._node, "ref": ref, "image_id": image_id}
        if self._state.dialect == "postgresql":
            pg = postgresql.insert(table).values(row)
            stmt: Executable = pg.on_conflict_do_update(
                index_elements=["node_id", "ref"], set_={"image_id": pg.excluded.image_id}
            )
        else:
            lite = sqlite.insert(table).values(row)
            stmt = lite.on_conflict_do_update(
                index_elements=["node_id", "ref"], set_={"image_id": lite.excluded.image_id}
            )
        await s.execute(stmt)
        return prev

    async def set_tag(self, ref: str, image_id: str) -> str | None:
        async with self._state.session() as s:
            if not await self._exists(s, image_id):
                raise errdefs.NotFound(f"No such image: {image_id}")
            return await self._point(s, ImgTag, ref, image_id)

    async def remove_tag(self, ref: str) -> bool:
        return await self._remove_ref(ImgTag, ref)

    async def remove_digest(self, ref: str) -> bool:
        return await self._remove_ref(ImgDigest, ref)

    async def _remove_ref(self, table: type[ImgTag] | type[ImgDigest], ref: str) -> bool:
        async with self._state.session() as s:
            res = await s.execute(
                delete(table).where(table.node_id == self._node, table.ref == ref)
            )
            return _rowcount(res) > 0

    async def delete_image(self, image_id: str) -> list[str]:
        n = self._node
        async with self._state.session() as s:
            chain = list(
                await s.scalars(
                    select(ImageLayer.chain_id)
                    .where(ImageLayer.node_id == n, ImageLayer.image_id == image_id)
                    .order_by(ImageLayer.idx)
                )
            )
            # Children (layers, manifest layers, tags, digests) go by ON DELETE CASCADE.
            res = await s.execute(delete(Image).where(Image.node_id == n, Image.id == image_id))
            if _rowcount(res) == 0:
                raise errdefs.NotFound(f"No such image: {image_id}")
            await s.execute(
                delete(ObjectId).where(
                    ObjectId.node_id == n,
                    ObjectId.id == image_id.removeprefix("sha256:"),
                    ObjectId.kind == "image",
                )
            )
            if not chain:
                return []
            still = set(
                await s.scalars(
                    select(ImageLayer.chain_id)
                    .where(ImageLayer.node_id == n, ImageLayer.chain_id.in_(chain))
                    .distinct()
                )
            )
            gone = [c for c in dict.fromkeys(reversed(chain)) if c not in still]
            if gone:
                await s.execute(
                    delete(Layer).where(Layer.node_id == n, Layer.chain_id.in_(gone))
                )
            return gone

    # -- reads ----------------------------------------------------------------------------

    async def get(self, image_id: str) -> ImageRecord | None:
        recs = await self._records(Image.id == image_id)
        return recs[0] if recs else None

    async def find_by_id_prefix(self, prefix: str) -> list[ImageRecord]:
        hexpart = prefix.removeprefix("sha256:")
        if not hexpart or not set(hexpart) <= _HEX:
            return []
        # Hex only, so no LIKE wildcards can slip in.
        return await self._records(Image.id.startswith(f"sha256:{hexpart}"))

    async def resolve_tag(self, ref: str) -> str | None:
        return await self._resolve(ImgTag, ref)

    async def resolve_digest(self, ref: str) -> str | None:
        return await self._resolve(ImgDigest, ref)

    async def _resolve(self, table: type[ImgTag] | type[ImgDigest], ref: str) -> str | None:
        async with self._state.session(readonly=True) as s:
            found: str | None = await s.scalar(
                select(table.image_id).where(table.node_id == self._node, table.ref == ref)
            )
            return found

    async def list_images(self) -> list[ImageRecord]:
        return await self._records(None)

    async def count_images(self) -> int:
        async with self._state.session(readonly=True) as s:
            count = await s.scalar(
                select(func.count()).select_from(Image).where(Image.node_id == self._node)
            )
            return int(count or 0)

    async def children(self, image_id: str) -> list[str]:
        async with self._state.session(readonly=True) as s:
            return list(
                await s.scalars(
                    select(Image.id)
                    .where(Image.node_id == self._node, Image.parent == image_id)
                    .order_by(Image.id)
                )
            )

    async def get_layer(self, chain_id: str) -> LayerRecord | None:
        layers = await self._layers(Layer.chain_id == chain_id)
        return layers[0] if layers else None

    async def list_layers(self) -> list[LayerRecord]:
        return await self._layers(None)

    async def layer_in_use(self, chain_id: str) -> bool:
        async with self._state.session(readonly=True) as s:
            hit = await s.scalar(
                select(ImageLayer.image_id)
                .where(ImageLayer.node_id == self._node, ImageLayer.chain_id == chain_id)
                .limit(1)
            )
            return hit is not None

    async def referenced_blobs(self) -> set[str]:
        n = self._node
        async with self._state.session(readonly=True) as s:
            rows = await s.execute(
                select(Image.id, Image.manifest_digest).where(Image.node_id == n)
            )
            blobs: set[str] = set()
            for image_id, manifest in rows:
                blobs.add(image_id)
                if manifest:
                    blobs.add(manifest)
            blobs.update(
                await s.scalars(
                    select(ImageManifestLayer.digest).where(ImageManifestLayer.node_id == n)
                )
            )
            for ref in await s.scalars(select(ImgDigest.ref).where(ImgDigest.node_id == n)):
                _, _, digest = ref.rpartition("@")
                if digest:
                    blobs.add(digest)
            return blobs

    # -- snapshots ------------------------------------------------------------------------

    async def put_snapshot(self, rec: SnapshotRecord) -> None:
        if rec.node_id != self._node:
            raise errdefs.InvalidArgument(f"snapshot {rec.key} belongs to node {rec.node_id}")
        row = {
            "node_id": self._node, "key": rec.key, "image_id": rec.image_id,
            "chain_ids": json.dumps(rec.chain_ids), "created": rec.created,
            "labels": json.dumps(rec.labels, sort_keys=True),
        }
        try:
            async with self._state.session() as s:
                # Lock the image row so a concurrent delete_image cannot slip in between.
                hit = await s.scalar(
                    select(Image.id)
                    .where(Image.node_id == self._node, Image.id == rec.image_id)
                    .with_for_update()
                )
                if hit is None:
                    raise errdefs.NotFound(f"No such image: {rec.image_id}")
                res = await s.execute(self._insert_ignore(ImgSnapshot, [row]))
                if _rowcount(res) == 0:
                    raise errdefs.AlreadyExists(f"snapshot {rec.key} already exists")
        except IntegrityError:
            # The image went away between the check and the insert (foreign key).
            raise errdefs.NotFound(f"No such image: {rec.image_id}") from None

    async def get_snapshot(self, key: str) -> SnapshotRecord | None:
        found = await self._snapshots(ImgSnapshot.key == key)
        return found[0] if found else None

    async def list_snapshots(self) -> list[SnapshotRecord]:
        return await self._snapshots(None)

    async def delete_snapshot(self, key: str) -> bool:
        async with self._state.session() as s:
            res = await s.execute(
                delete(ImgSnapshot).where(ImgSnapshot.node_id == self._node, ImgSnapshot.key == key)
            )
            return _rowcount(res) > 0

    async def snapshots_of(self, image_id: str) -> list[str]:
        async with self._state.session(readonly=True) as s:
            return list(
                await s.scalars(
                    select(ImgSnapshot.key)
                    .where(ImgSnapshot.node_id == self._node, ImgSnapshot.image_id == image_id)
                    .order_by(ImgSnapshot.key)
                )
            )

    async def _snapshots(self, where: ColumnElement[bool] | None) -> list[SnapshotRecord]:
        q = select(ImgSnapshot).where(ImgSnapshot.node_id == self._node).order_by(ImgSnapshot.key)
        if where is not None:
            q = q.where(where)
        async with self._state.session(readonly=True) as s:
            return [
                SnapshotRecord(
                    key=r.key, image_id=r.image_id, chain_ids=list(json.loads(r.chain_ids)),
                    created=r.created, node_id=r.node_id,
                    labels={str(k): str(v) for k, v in json.loads(r.labels).items()},
                )
                for r in await s.scalars(q)
            ]

    # -- helpers --------------------------------------------------------------------------

    def _insert_ignore(self, table: type[Any], rows: Sequence[dict[str, Any]]) -> Executable:
        if self._state.dialect == "postgresql":
            return postgresql.insert(table).values(list(rows)).on_conflict_do_nothing()
        return sqlite.insert(table).values(list(rows)).on_conflict_do_nothing()

    async def _exists(self, s: AsyncSession, image_id: str) -> bool:
        hit = await s.scalar(
            select(Image.id).where(Image.node_id == self._node, Image.id == image_id)
        )
        return hit is not None

    async def _layers(self, where: ColumnElement[bool] | None) -> list[LayerRecord]:
        q = select(Layer).where(Layer.node_id == self._node).order_by(Layer.chain_id)
        if where is not None:
            q = q.where(where)
        async with self._state.session(readonly=True) as s:
            return [
                LayerRecord(
                    chain_id=r.chain_id, diff_id=r.diff_id, parent=r.parent, size=r.size,
                    node_id=r.node_id,
                )
                for r in await s.scalars(q)
            ]

    async def _records(self, where: ColumnElement[bool] | None) -> list[ImageRecord]:
        """Load images (all of the node's, or those matching ``where``) with their children."""
        n = self._node
        q = select(Image).where(Image.node_id == n).order_by(Image.id)
        if where is not None:
            q = q.where(where)
        async with self._state.session(readonly=True) as s:
            images = list(await s.scalars(q))
            if not images:
                return []
            ids = [i.id for i in images]
            # One query per child table; with a filter, restrict to the images found.
            only = where is not None

            def scope(col: Any) -> ColumnElement[bool]:
                cond: ColumnElement[bool] = col.in_(ids)
                return cond

            tags = await _group(
                s, select(ImgTag.image_id, ImgTag.ref).where(ImgTag.node_id == n)
                .where(*([scope(ImgTag.image_id)] if only else [])).order_by(ImgTag.ref)
            )
            digests = await _group(
                s, select(ImgDigest.image_id, ImgDigest.ref).where(ImgDigest.node_id == n)
                .where(*([scope(ImgDigest.image_id)] if only else [])).order_by(ImgDigest.ref)
            )
            chains = await _group(
                s, select(ImageLayer.image_id, ImageLayer.chain_id)
                .where(ImageLayer.node_id == n)
                .where(*([scope(ImageLayer.image_id)] if only else []))
                .order_by(ImageLayer.image_id, ImageLayer.idx)
            )
            descs: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
            rows = await s.execute(
                select(
                    ImageManifestLayer.image_id, ImageManifestLayer.media_type,
                    ImageManifestLayer.digest, ImageManifestLayer.size,
                )
                .where(ImageManifestLayer.node_id == n)
                .where(*([scope(ImageManifestLayer.image_id)] if only else []))
                .order_by(ImageManifestLayer.image_id, ImageManifestLayer.idx)
            )
            for image_id, mt, d, sz in rows:
                descs[image_id].append((mt, d, sz))
        return [
            ImageRecord(
                id=i.id, config_json=i.config_json, manifest_digest=i.manifest_digest,
                manifest_media_type=i.manifest_media_type, manifest_size=i.manifest_size,
                chain_ids=chains.get(i.id, []), parent=i.parent, created=i.created, size=i.size,
                node_id=i.node_id, record_created=i.record_created,
                repo_tags=tags.get(i.id, []), repo_digests=digests.get(i.id, []),
                layers=descs.get(i.id, []),
            )
            for i in images
        ]


async def _group(s: AsyncSession, q: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for key, value in await s.execute(q):
        out[key].append(value)
    return out


def _rowcount(result: Any) -> int:
    count: int = result.rowcount
    return count


