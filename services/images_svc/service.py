"""ImagesService: image records, import/load/save, tags, rmi, prune, history and snapshots, transport-free."""

from __future__ import annotations

import fnmatch
import json
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

import errdefs
from containers_svc.api import ContainersAPI
from dockerapi import filters as dfilters
from dockerapi.platforms import host_arch
from dockerapi.reference import Reference, parse_reference
from dockerapi.timefmt import now_rfc3339, rfc3339_seconds
from events_svc.bus import EventsAPI
from events_svc.model import Event
from images_svc.api import (
    BuildEvent,
    BuildOptions,
    CommitOptions,
    ImportOptions,
    ProgressEvent,
    PruneReport,
)
from images_svc.archive import ArchiveImage, SaveImage, read_archive, write_archive
from images_svc.changes import apply_changes
from images_svc.commit import commit_snapshot
from images_svc.content import ContentStore
from images_svc.layers import LayerStore, chain_ids
from images_svc.model import (
    Change,
    DeleteItem,
    HistoryItem,
    ImageRecord,
    LayerRecord,
    Snapshot,
    SnapshotRecord,
)
from images_svc.pulled import PulledImage, register_pulled_image
from images_svc.snapshots import Snapshotter, mount_points, validate_key
from images_svc.store import ImageStore

if TYPE_CHECKING:
    from registry_svc.api import RegistryAPI

__all__ = ["ImagesService"]

log = logging.getLogger(__name__)

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


LIST_FILTERS = {"dangling", "reference", "label", "before", "since", "until"}
PRUNE_FILTERS = {"dangling", "until", "label", "label!"}


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def familiar(ref: str) -> str:
    """Familiar form of a normalised reference ("docker.io/library/busybox:latest" -> "busybox:latest")."""
    return parse_reference(ref).familiar_string()


class ImagesService:
    """The images service's logic over a content store, a layer store and an ImageStore."""

    def __init__(
        self, data_root: Path, store: ImageStore, node_id: str, events: EventsAPI | None = None
    ) -> None:
        self._events = events
        self._data_root = Path(data_root)
        # The containers service runs RUN steps of builds; set once it exists (set_containers).
        self._containers: ContainersAPI | None = None
        # The registry service pulls FROM images a build does not have; set by set_registry.
        self._registry: RegistryAPI | None = None
        self._content = ContentStore(data_root / "content")
        self._layers = LayerStore(data_root / "layers")
        self._snapshots = Snapshotter(data_root, self._layers)
        self._store = store
        self._node_id = node_id
        # One writer at a time for record changes that read-modify-write (tags, rmi, prune,
        # and snapshot records, which pin their image).
        self._lock = anyio.Lock()
        # One snapshot state change (prepare, mount, unmount, remove) at a time.
        self._snap_lock = anyio.Lock()

    @property
    def content(self) -> ContentStore:
        return self._content

    @property
    def layers(self) -> LayerStore:
        return self._layers

    # -- images the registry service pulled (images_svc.pulled) ---------------------------

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def events(self) -> EventsAPI | None:
        return self._events

    def register_pulled_image(self, img: PulledImage) -> AsyncIterator[ProgressEvent]:
        return register_pulled_image(self, img)

    async def store_pulled(
        self, rec: ImageRecord, layers: list[LayerRecord], tags: list[str], digests: list[str]
    ) -> None:
        """Record a pulled image with its tags and repo digests in one transaction."""
        async with self._lock:
            lost = await self._store.put_image(rec, layers, tags, digests)
        for prev in lost:
            await self._emit("untag", prev, prev)

    # -- commit and build (images_svc.commit, images_svc.build) ---------------------------

    def set_containers(self, containers: ContainersAPI) -> None:
        """Connect the containers service, which RUN steps of builds need (late: it needs us)."""
        self._containers = containers

    def set_registry(self, registry: RegistryAPI) -> None:
        """Connect the registry service, which pulls the base images builds do not have."""
        self._registry = registry

    async def commit_image(self, key: str, opts: CommitOptions) -> str:
        return await commit_snapshot(self, key, opts)

    def build(self, opts: BuildOptions, context: AsyncIterator[bytes]) -> AsyncIterator[BuildEvent]:
        from images_svc.build import run_build

        return run_build(self, self._containers, opts, context, self._data_root / "build")

    # -- start-up -------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Remove what a crash left half-made: ingest files, temp layers, orphans of both.

        Snapshot dirs without a record are removed; recorded snapshots missing dirs get them
        back (upper content is never deleted), and mounted ones stay mounted.
        """
        await self._content.reconcile()
        # Build work dirs (unpacked contexts) never outlive the build that made them.
        await anyio.to_thread.run_sync(
            lambda: shutil.rmtree(self._data_root / "build", ignore_errors=True))
        present = set(await self._layers.reconcile())
        known = {lr.chain_id for lr in await self._store.list_layers()}
        for chain in sorted(present - known):
            log.info("removing orphan layer %s", chain)
            await self._layers.remove(chain)
        missing = known - present
        if missing:
            log.warning("layers missing on disk: %s", ", ".join(sorted(missing)))
        keep = await self._store.referenced_blobs()
        for digest in await self._content.list_digests():
            if digest not in keep:
                log.info("removing unreferenced blob %s", digest)
                await self._content.delete(digest)
        snaps = {r.key for r in await self._store.list_snapshots()}
        async with self._snap_lock:
            await anyio.to_thread.run_sync(self._snapshots.reconcile, snaps)

    # -- events ----------------------------------------------------------------------------

    async def _emit(self, action: str, image_id: str, name: str) -> None:
        """Publish an image event (after the change is committed)."""
        if self._events is not None:
            await self._events.publish(Event("image", action, image_id, {"name": name}))

    async def _untag(self, ref: str, image_id: str) -> None:
        await self._store.remove_tag(ref)
        await self._emit("untag", image_id, familiar(ref))

    # -- lookups --------------------------------------------------------------------------

    async def get_image(self, ref: str) -> ImageRecord:
        rec = await self._resolve(ref)
        if rec is None:
            raise errdefs.NotFound(f"No such image: {ref}")
        return rec

    async def _resolve(self, ref: str) -> ImageRecord | None:
        ref = ref.strip()
        if not ref:
            raise errdefs.InvalidArgument("invalid reference format")
        hexpart = ref.removeprefix("sha256:")
        if _is_hex(hexpart) and len(hexpart) == 64:
            return await self._store.get(f"sha256:{hexpart}")
        if ref.startswith("sha256:"):
            return await self._by_prefix(ref, hexpart)
        try:
            parsed = parse_reference(ref)
        except errdefs.InvalidArgument:
            if _is_hex(ref):
                return await self._by_prefix(ref, ref)
            raise
        image_id: str | None
        if parsed.digest:
            image_id = await self._store.resolve_digest(parsed.string())
            if image_id is None and not parsed.tag:
                # A digest may also be the image id (docker pulls by config digest rarely).
                return await self._store.get(parsed.digest)
        else:
            image_id = await self._store.resolve_tag(parsed.with_default_tag().string())
        if image_id is not None:
            return await self._store.get(image_id)
        if _is_hex(ref) and not parsed.tag:
            return await self._by_prefix(ref, ref)
        return None

    async def _by_prefix(self, ref: str, hexpart: str) -> ImageRecord | None:
        if not _is_hex(hexpart) or not hexpart:
            return None
        found = await self._store.find_by_id_prefix(hexpart)
        if len(found) > 1:
            raise errdefs.InvalidArgument(
                f"Error response from daemon: ambiguous image id prefix {ref!r}"
            )
        return found[0] if found else None

    async def list_images(self, filters: dict[str, list[str]], all: bool) -> list[ImageRecord]:
        dfilters.validate(filters, LIST_FILTERS)
        images = await self._store.list_images()
        parents = {r.parent for r in images if r.parent}
        before = await self._time_bound(filters.get("before"))
        since = await self._time_bound(filters.get("since"))
        out: list[ImageRecord] = []
        for rec in images:
            dangling = not rec.repo_tags and not rec.repo_digests
            if not all and dangling and rec.id in parents:
                continue  # intermediate image
            if "dangling" in filters:
                want = bool(dfilters.get_bool(filters, "dangling"))
                if want != (not rec.repo_tags):
                    continue
            if "label" in filters and not dfilters.match_labels(filters["label"], _labels(rec)):
                continue
            created = rfc3339_seconds(rec.created)
            if before is not None and not created < before:
                continue
            if since is not None and not created > since:
                continue
            if "until" in filters:
                limit = dfilters.parse_timestamp(filters["until"][-1])
                if not created < limit:
                    continue
            if "reference" in filters:
                tags = _matching_refs(rec, filters["reference"])
                if not tags:
                    continue
                rec.repo_tags = [t for t in rec.repo_tags if t in tags]
            out.append(rec)
        out.sort(key=lambda r: rfc3339_seconds(r.created), reverse=True)
        return out

    async def _time_bound(self, refs: list[str] | None) -> float | None:
        if not refs:
            return None
        rec = await self.get_image(refs[-1])
        return rfc3339_seconds(rec.created)

    # -- import / load / save -------------------------------------------------------------

    async def import_image(
        self, opts: ImportOptions, data: AsyncIterator[bytes]
    ) -> AsyncIterator[ProgressEvent]:
        if opts.platform_os and opts.platform_os != "linux":
            plat = "/".join(p for p in (opts.platform_os, opts.platform_arch, opts.platform_variant) if p)
            raise errdefs.InvalidArgument(f"unknown operating system or architecture: {plat}")
        target: Reference | None = None
        if opts.repo:
            target = _tag_target(opts.repo, opts.tag)
        with self._content.open_writer() as writer:
            async for chunk in data:
                if chunk:
                    await anyio.to_thread.run_sync(writer.write, chunk)
            blob, blob_size = await anyio.to_thread.run_sync(writer.commit)
        media = await anyio.to_thread.run_sync(_layer_media_type, self._content.blob_path(blob))
        diff_id = await anyio.to_thread.run_sync(
            self._layers.diff_id_of, self._content.blob_path(blob)
        )
        info = await self._layers.unpack(diff_id, "", self._content.blob_path(blob), diff_id)
        created = now_rfc3339()
        config: dict[str, Any] = {
            "architecture": opts.platform_arch or host_arch(),
            "os": opts.platform_os or "linux",
            "created": created,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "", "comment": opts.message or "Imported from -"}],
        }
        if opts.platform_variant:
            config["variant"] = opts.platform_variant
        if opts.message:
            config["comment"] = opts.message
        if opts.changes:
            config["config"] = apply_changes(config["config"], opts.changes)
        layer = (media, blob, blob_size)
        rec = await self._commit_image(config, [layer], [diff_id], [info.size], parent="")
        tags = [target.string()] if target else []
        layer_rec = LayerRecord(info.chain_id, diff_id, "", info.size, self._node_id)
        await self._store_image(rec, [layer_rec], tags)
        # The CLI prints status lines and skips aux ones: dockerd sends just the id.
        await self._emit("import", rec.id, familiar(tags[0]) if tags else rec.id)
        yield ProgressEvent(status=rec.id)

    async def _commit_image(
        self,
        config: dict[str, Any],
        layers: list[tuple[str, str, int]],
        diff_ids: list[str],
        sizes: list[int],
        parent: str,
    ) -> ImageRecord:
        """Write config and manifest blobs; return the record (not yet stored)."""
        config_bytes = json.dumps(config, separators=(",", ":")).encode()
        config_digest = await self._content.put_bytes(config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_digest,
                       "size": len(config_bytes)},
            "layers": [{"mediaType": m, "digest": d, "size": s} for m, d, s in layers],
        }
        manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
        manifest_digest = await self._content.put_bytes(manifest_bytes)
        return ImageRecord(
            id=config_digest,
            config_json=config_bytes,
            manifest_digest=manifest_digest,
            manifest_media_type=MEDIA_OCI_MANIFEST,
            manifest_size=len(manifest_bytes),
            chain_ids=chain_ids(diff_ids),
            parent=parent,
            created=str(config.get("created", "")),
            size=sum(sizes),
            node_id=self._node_id,
            record_created=now_rfc3339(),
            layers=layers,
        )

    async def _store_image(self, rec: ImageRecord, layers: list[LayerRecord], tags: list[str]) -> None:
        async with self._lock:
            await self._store.put_image(rec, layers, tags, [])

    async def load_images(
        self, data: AsyncIterator[bytes], quiet: bool
    ) -> AsyncIterator[ProgressEvent]:
        send, receive = anyio.create_memory_object_stream[str](100)

        async def on_progress(line: str) -> None:
            if not quiet:
                await send.send(line)

        found: list[ArchiveImage] = []
        failed: list[Exception] = []

        async def reader() -> None:
            # Errors are carried out by hand: a task group would wrap them in an ExceptionGroup.
            async with send:
                try:
                    found.extend(await read_archive(data, self._content, on_progress))
                except Exception as e:
                    failed.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            async with receive:
                async for line in receive:
                    yield ProgressEvent(stream=line if line.endswith("\n") else line + "\n")
        if failed:
            raise failed[0]
        if not found:
            raise errdefs.InvalidArgument("no images found in the archive")
        for img in found:
            rec = await self._install(img)
            await self._emit("load", rec.id, img.repo_tags[0] if img.repo_tags else rec.id)
            if img.repo_tags:
                for t in img.repo_tags:
                    yield ProgressEvent(stream=f"Loaded image: {t}\n")
            else:
                yield ProgressEvent(stream=f"Loaded image ID: {rec.id}\n")

    async def _install(self, img: ArchiveImage) -> ImageRecord:
        """Verify and unpack one loaded image, then commit its record in one transaction."""
        try:
            config = json.loads(img.config)
        except ValueError as e:
            raise errdefs.InvalidArgument(f"invalid image config {img.config_digest}: {e}") from None
        if not isinstance(config, dict):
            raise errdefs.InvalidArgument(f"invalid image config {img.config_digest}")
        diff_ids = list(img.diff_ids)
        chains = chain_ids(diff_ids)
        layer_recs: list[LayerRecord] = []
        parent = ""
        for layer, diff_id, chain in zip(img.layers, diff_ids, chains, strict=True):
            if not self._layers.has(chain):
                await self._layers.unpack(chain, parent, self._content.blob_path(layer.digest), diff_id)
            info = self._layers.read_meta(chain)
            layer_recs.append(LayerRecord(chain, diff_id, parent, info.size, self._node_id))
            parent = chain
        tags = [_tag_target(t, "").string() for t in img.repo_tags]
        rec = ImageRecord(
            id=img.config_digest,
            config_json=img.config,
            manifest_digest=img.manifest_digest,
            manifest_media_type=img.manifest_media_type,
            manifest_size=img.manifest_size,
            chain_ids=chains,
            parent="",
            created=str(config.get("created", "")),
            size=sum(lr.size for lr in layer_recs),
            node_id=self._node_id,
            record_created=now_rfc3339(),
            layers=[(d.media_type, d.digest, d.size) for d in img.layers],
        )
        await self._store_image(rec, layer_recs, tags)
        return rec

    async def save_images(self, refs: list[str]) -> AsyncIterator[bytes]:
        if not refs:
            raise errdefs.InvalidArgument("no images given to save")
        saves: dict[str, SaveImage] = {}
        for ref in refs:
            rec = await self.get_image(ref)
            tag = _save_tag(ref, rec)
            prev = saves.get(rec.id)
            if prev is not None:
                if tag and tag not in prev.repo_tags:
                    prev.repo_tags.append(tag)
                continue
            saves[rec.id] = SaveImage(
                config_digest=rec.id,
                manifest_digest=rec.manifest_digest,
                manifest_media_type=rec.manifest_media_type,
                manifest_size=rec.manifest_size,
                layers=list(rec.layers),
                repo_tags=[tag] if tag else [],
            )
        async for chunk in write_archive(list(saves.values()), self._content):
            yield chunk

    # -- tags, rmi, prune, history --------------------------------------------------------

    async def tag_image(self, ref: str, repo: str, tag: str) -> None:
        target = _tag_target(repo, tag)  # a bad name is reported before a missing image
        rec = await self.get_image(ref)
        async with self._lock:
            await self._store.set_tag(target.string(), rec.id)
        await self._emit("tag", rec.id, familiar(target.string()))

    async def remove_image(self, ref: str, force: bool, noprune: bool) -> list[DeleteItem]:
        async with self._lock:
            rec = await self._resolve(ref)
            if rec is None:
                raise errdefs.NotFound(f"No such image: {ref}")
            items: list[DeleteItem] = []
            by_name = _named_ref(ref, rec)
            users = await self._store.snapshots_of(rec.id)
            if by_name is not None:
                if users and not force and _single_repository(rec):
                    # Untagging would leave an image in use dangling: Docker wants -f.
                    raise errdefs.Conflict(
                        f'conflict: unable to remove repository reference "{ref}" (must force)'
                        f" - container {users[0][:12]} is using its referenced image "
                        f"{_short(rec.id)}"
                    )
                if by_name in rec.repo_tags:
                    await self._untag(by_name, rec.id)
                    rec.repo_tags.remove(by_name)
                else:
                    await self._store.remove_digest(by_name)
                    rec.repo_digests.remove(by_name)
                items.append(DeleteItem(untagged=familiar(by_name)))
                if rec.repo_tags:
                    return items
                # Digest references of an untagged image go with it.
                for d in list(rec.repo_digests):
                    await self._store.remove_digest(d)
                    items.append(DeleteItem(untagged=familiar(d)))
                rec.repo_digests = []
            else:
                repos = {parse_reference(t).name for t in rec.repo_tags}
                if len(repos) > 1 and not force:
                    raise errdefs.Conflict(
                        f"conflict: unable to delete {_short(rec.id)} (must be forced) - "
                        "image is referenced in multiple repositories"
                    )
            if await self._store.children(rec.id):
                if by_name is not None:
                    return items
                raise errdefs.Conflict(
                    f"conflict: unable to delete {_short(rec.id)} (cannot be forced) - "
                    "image has dependent child images"
                )
            if users and not force:
                if by_name is not None:
                    return items
                raise errdefs.Conflict(
                    f"conflict: unable to delete {_short(rec.id)} (must be forced) - "
                    f"image is being used by stopped container {users[0][:12]}"
                )
            for t in list(rec.repo_tags):
                await self._untag(t, rec.id)
                items.append(DeleteItem(untagged=familiar(t)))
            for d in list(rec.repo_digests):
                await self._store.remove_digest(d)
                items.append(DeleteItem(untagged=familiar(d)))
            if users:
                # Forced: untagged only; the record (and its layers) stay while snapshots do.
                return items
            items.extend((await self._delete(rec))[0])
            parent = rec.parent
            while parent and not noprune:
                prec = await self._store.get(parent)
                if (prec is None or prec.repo_tags or await self._store.children(prec.id)
                        or await self._store.snapshots_of(prec.id)):
                    break
                items.extend((await self._delete(prec))[0])
                parent = prec.parent
            return items

    async def _delete(self, rec: ImageRecord) -> tuple[list[DeleteItem], int]:
        """Delete the record, then the files no other image needs; returns bytes freed.

        Caller holds the lock.
        """
        sizes = {c: await self._layer_size(c) for c in rec.chain_ids}
        gone_layers = await self._store.delete_image(rec.id)
        items = [DeleteItem(deleted=rec.id)]
        await self._emit("delete", rec.id, rec.id)
        freed = 0
        for chain in gone_layers:
            await self._layers.remove(chain)
            items.append(DeleteItem(deleted=chain))
            freed += sizes.get(chain, 0)
        keep = await self._store.referenced_blobs()
        for digest in {rec.id, rec.manifest_digest, *(d for _, d, _ in rec.layers)}:
            if digest and digest not in keep:
                await self._content.delete(digest)
        return items, freed

    async def image_history(self, ref: str) -> list[HistoryItem]:
        rec = await self.get_image(ref)
        config = json.loads(rec.config_json)
        history = config.get("history") or []
        sizes = [(await self._layer_size(c)) for c in rec.chain_ids]
        rows: list[HistoryItem] = []
        layer_i = 0
        for h in history:
            empty = bool(h.get("empty_layer"))
            size = 0
            if not empty and layer_i < len(sizes):
                size = sizes[layer_i]
                layer_i += 1
            rows.append(HistoryItem(
                id="<missing>",
                created=int(rfc3339_seconds(str(h.get("created", "")))),
                created_by=str(h.get("created_by", "")),
                tags=[],
                size=size,
                comment=str(h.get("comment", "")),
            ))
        if not rows:
            rows = [HistoryItem("<missing>", int(rfc3339_seconds(rec.created)), "", [], rec.size, "")]
        rows.reverse()
        top = rows[0]
        rows[0] = HistoryItem(rec.id, top.created, top.created_by,
                              [familiar(t) for t in rec.repo_tags], top.size, top.comment)
        return rows

    async def _layer_size(self, chain: str) -> int:
        lr = await self._store.get_layer(chain)
        return lr.size if lr else 0

    async def prune_images(self, filters: dict[str, list[str]]) -> PruneReport:
        dfilters.validate(filters, PRUNE_FILTERS)
        dangling_only = bool(dfilters.get_bool(filters, "dangling")) if "dangling" in filters else True
        until = dfilters.parse_timestamp(filters["until"][-1]) if "until" in filters else None
        deleted: list[DeleteItem] = []
        reclaimed = 0
        async with self._lock:
            images = await self._store.list_images()
            for rec in sorted(images, key=lambda r: rfc3339_seconds(r.created), reverse=True):
                if dangling_only and rec.repo_tags:
                    continue
                if until is not None and not rfc3339_seconds(rec.created) < until:
                    continue
                labels = _labels(rec)
                if "label" in filters and not dfilters.match_labels(filters["label"], labels):
                    continue
                if "label!" in filters and dfilters.match_labels(filters["label!"], labels):
                    continue
                if await self._store.get(rec.id) is None or await self._store.children(rec.id):
                    continue
                if await self._store.snapshots_of(rec.id):
                    continue  # in use by a container
                for t in rec.repo_tags:
                    await self._untag(t, rec.id)
                    deleted.append(DeleteItem(untagged=familiar(t)))
                for d in rec.repo_digests:
                    await self._store.remove_digest(d)
                    deleted.append(DeleteItem(untagged=familiar(d)))
                items, freed = await self._delete(rec)
                reclaimed += freed
                deleted.extend(items)
        return PruneReport(deleted=deleted, space_reclaimed=reclaimed)

    # -- snapshots ------------------------------------------------------------------------

    async def prepare_snapshot(self, key: str, image: str, labels: dict[str, str]) -> Snapshot:
        validate_key(key)
        async with self._snap_lock, self._lock:
            rec = await self.get_image(image)
            if await self._store.get_snapshot(key) is not None:
                raise errdefs.AlreadyExists(f"snapshot {key} already exists")
            chains = list(rec.chain_ids)
            missing = await anyio.to_thread.run_sync(
                lambda: [c for c in chains if not self._layers.has(c)]
            )
            if missing:
                raise errdefs.NotFound(f"layer {missing[0]} of image {rec.id} not found")
            # Dirs first, record second: a crash in between leaves an orphan dir for reconcile.
            await anyio.to_thread.run_sync(self._snapshots.create, key)
            snap = SnapshotRecord(key=key, image_id=rec.id, chain_ids=list(rec.chain_ids),
                                  created=now_rfc3339(), node_id=self._node_id,
                                  labels=dict(labels))
            try:
                await self._store.put_snapshot(snap)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._snapshots.remove, key)
                raise
        return self._view(snap, mounted=False)

    async def get_snapshot(self, key: str) -> Snapshot:
        rec = await self._snapshot_record(key)
        mounts = await anyio.to_thread.run_sync(mount_points)
        return self._view(rec, self._snapshots.is_mounted(key, mounts))

    async def list_snapshots(self) -> list[Snapshot]:
        recs = await self._store.list_snapshots()
        mounts = await anyio.to_thread.run_sync(mount_points)
        return [self._view(r, self._snapshots.is_mounted(r.key, mounts)) for r in recs]

    async def remove_snapshot(self, key: str) -> None:
        async with self._snap_lock:
            await self._snapshot_record(key)
            # Unmount before the record goes: a busy mount keeps the snapshot whole.
            await anyio.to_thread.run_sync(self._snapshots.unmount, key)
            async with self._lock:
                await self._store.delete_snapshot(key)
            # A crash from here on leaves an unrecorded dir, which reconcile removes.
            await anyio.to_thread.run_sync(self._snapshots.remove, key)

    async def mount_snapshot(self, key: str) -> Snapshot:
        async with self._snap_lock:
            rec = await self._snapshot_record(key)
            await anyio.to_thread.run_sync(self._snapshots.mount, key, rec.chain_ids)
        return self._view(rec, mounted=True)

    async def unmount_snapshot(self, key: str) -> Snapshot:
        async with self._snap_lock:
            rec = await self._snapshot_record(key)
            await anyio.to_thread.run_sync(self._snapshots.unmount, key)
        return self._view(rec, mounted=False)

    async def snapshot_changes(self, key: str) -> list[Change]:
        rec = await self._snapshot_record(key)
        return await anyio.to_thread.run_sync(self._snapshots.changes, key, rec.chain_ids)

    async def _snapshot_record(self, key: str) -> SnapshotRecord:
        rec = await self._store.get_snapshot(validate_key(key))
        if rec is None:
            raise errdefs.NotFound(f"No such snapshot: {key}")
        return rec

    def _view(self, rec: SnapshotRecord, mounted: bool) -> Snapshot:
        p = self._snapshots.paths(rec.key)
        return Snapshot(
            key=rec.key, image_id=rec.image_id, chain_ids=list(rec.chain_ids),
            upper_dir=str(p.upper), work_dir=str(p.work), merged_dir=str(p.merged),
            mounted=mounted, created=rec.created, node_id=rec.node_id, labels=dict(rec.labels),
        )


def _single_repository(rec: ImageRecord) -> bool:
    """Docker's isSingleReference: every tag and digest reference is in one repository."""
    return len({parse_reference(r).name for r in [*rec.repo_tags, *rec.repo_digests]}) <= 1


def _is_hex(s: str) -> bool:
    return bool(s) and all(c in "0123456789abcdef" for c in s)


def _labels(rec: ImageRecord) -> dict[str, str]:
    try:
        cfg = json.loads(rec.config_json).get("config") or {}
    except (ValueError, AttributeError):
        return {}
    labels = cfg.get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _matching_refs(rec: ImageRecord, patterns: list[str]) -> set[str]:
    """Tags of rec that match one of Docker's reference filter patterns."""
    out: set[str] = set()
    for t in rec.repo_tags:
        ref = parse_reference(t)
        fam_name = ref.familiar_name()
        for pat in patterns:
            if ":" in pat.rsplit("/", 1)[-1]:
                cand = [f"{fam_name}:{ref.tag}", f"{ref.name}:{ref.tag}"]
            else:
                cand = [fam_name, ref.name]
            if any(fnmatch.fnmatchcase(c, pat) for c in cand):
                out.add(t)
    return out


def _tag_target(repo: str, tag: str) -> Reference:
    """Parse repo (which may carry :tag) plus tag into a tagged reference, with Docker's errors."""
    ref = parse_reference(repo)
    if ref.digest:
        raise errdefs.InvalidArgument("refusing to create a tag with a digest reference")
    if tag:
        if ref.tag:
            raise errdefs.InvalidArgument("invalid reference format")
        ref = parse_reference(f"{repo}:{tag}")
    return ref.with_default_tag()


def _named_ref(ref: str, rec: ImageRecord) -> str | None:
    """The normalised reference ref names if it is a tag/digest reference of rec, else None."""
    hexpart = ref.removeprefix("sha256:")
    if ref.startswith("sha256:") or (_is_hex(hexpart) and rec.id.removeprefix("sha256:").startswith(hexpart)):
        return None
    try:
        parsed = parse_reference(ref)
    except errdefs.InvalidArgument:
        return None
    full = parsed.string() if parsed.digest else parsed.with_default_tag().string()
    if full in rec.repo_tags or full in rec.repo_digests:
        return full
    return None


def _save_tag(ref: str, rec: ImageRecord) -> str:
    named = _named_ref(ref, rec)
    if named is None or "@" in named:
        return ""
    return familiar(named)


def _layer_media_type(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        return MEDIA_OCI_LAYER + "+gzip"
    if head == b"\x28\xb5\x2f\xfd":
        return MEDIA_OCI_LAYER + "+zstd"
    return MEDIA_OCI_LAYER

