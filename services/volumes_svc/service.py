"""VolumesService: local volumes, container references, mounts, prune; transport-free."""

from __future__ import annotations

import logging
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

import anyio

import errdefs
from dockerapi import filters as dfilters
from events_svc.bus import EventsAPI
from events_svc.model import Event
from volumes_svc import local
from volumes_svc.local import MountSpec, VolumeDirs
from volumes_svc.model import ANONYMOUS_LABEL, DEFAULT_DRIVER, AcquireResult, PruneReport, Volume
from volumes_svc.store import VolumeStore, in_use_error, no_such_volume

__all__ = ["LIST_FILTERS", "PRUNE_FILTERS", "VolumesService", "match_filters"]

log = logging.getLogger(__name__)

LIST_FILTERS = {"dangling", "driver", "label", "name"}
PRUNE_FILTERS = {"label", "label!", "all"}
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _now() -> str:
    # moby formats CreatedAt with time.RFC3339: whole seconds.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _regex_match(patterns: list[str], value: str) -> bool:
    # moby filters.Match: any pattern found anywhere in the value; a bad pattern matches nothing.
    for p in patterns:
        try:
            if re.search(p, value):
                return True
        except re.error:
            continue
    return False


def match_filters(vol: Volume, filters: dict[str, list[str]], referenced: bool) -> bool:
    """Docker's volume list filters (values of one key ORed, keys ANDed); keys pre-validated."""
    if filters.get("driver") and vol.driver not in filters["driver"]:
        return False
    if "name" in filters and not _regex_match(filters["name"], vol.name):
        return False
    if filters.get("label") and not dfilters.match_labels(filters["label"], vol.labels):
        return False
    if "dangling" in filters:
        dangling = dfilters.get_bool(filters, "dangling", False)
        if dangling == referenced:
            return False
    return True


def _prune_all(filters: dict[str, list[str]]) -> bool:
    """moby withPrune: the ``all`` filter, one Go boolean."""
    values = filters.get("all", [])
    if len(values) > 1:
        raise errdefs.InvalidArgument(
            f"invalid filter 'all=[{' '.join(values)}]': only one value is expected"
        )
    if not values:
        return False
    if values[0] in _GO_TRUE:
        return True
    if values[0] in _GO_FALSE:
        return False
    raise errdefs.InvalidArgument(
        f"invalid filter 'all': strconv.ParseBool: parsing {values[0]!r}: invalid syntax"
    )


class VolumesService:
    """The volumes service's logic over the local driver's dirs and a VolumeStore.

    One lock serialises every change (create, rm, prune, acquire, release), so a volume is
    never deleted between another caller's check and its reference.
    """

    def __init__(
        self, data_root: Path, store: VolumeStore, node_id: str, events: EventsAPI | None = None
    ) -> None:
        self._dirs = VolumeDirs(data_root / "volumes")
        self._store = store
        self._node_id = node_id
        self._events = events
        self._lock = anyio.Lock()
        self._pruning = False

    @property
    def root(self) -> Path:
        return self._dirs.root

    # -- start-up -------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Match records and disk after a crash or reboot; never deletes user data.

        Records without a dir get an empty ``_data``; dirs without a record are logged and
        left alone; interrupted deletions (``.rm-*``) are finished; tmpfs/bind volumes are
        mounted while referenced and unmounted when not.
        """
        async with self._lock:
            vols = await self._store.list_volumes()
            counts = await self._store.ref_counts()
            await anyio.to_thread.run_sync(self._reconcile_disk, vols, counts)

    def _reconcile_disk(self, vols: list[Volume], counts: dict[str, int]) -> None:
        self._dirs.ensure_root()
        self._dirs.clear_trash()
        known = {v.name for v in vols}
        for name in self._dirs.listdir():
            if name not in known:
                log.warning("volume dir %s has no record; leaving it alone",
                            self._dirs.dir(name))
        mounted = set(local.mount_points())
        for v in vols:
            data = self._dirs.data(v.name)
            if not self._dirs.exists(v.name):
                log.warning("volume %s had no data dir; recreating it empty", v.name)
                self._dirs.create(v.name)
            try:
                spec = local.parse_options(v.options)
            except errdefs.EngineError as e:
                log.error("volume %s: stored options are invalid (%s)", v.name, e)
                continue
            if spec is None:
                continue
            is_mounted = str(data) in mounted
            try:
                if counts.get(v.name) and not is_mounted:
                    local.mount(spec, data)
                elif not counts.get(v.name) and is_mounted:
                    local.unmount(data)
            except errdefs.EngineError as e:
                log.error("volume %s: %s", v.name, e)

    # -- helpers --------------------------------------------------------------------------

    async def _emit(self, action: str, name: str, **attrs: str) -> None:
        if self._events is not None:
            await self._events.publish(
                Event("volume", action, name, {"driver": DEFAULT_DRIVER, **attrs}))

    async def _create_locked(
        self, name: str, driver: str, opts: dict[str, str], labels: dict[str, str]
    ) -> tuple[Volume, bool]:
        driver = driver or DEFAULT_DRIVER
        if driver != DEFAULT_DRIVER:
            raise errdefs.NotFound(
                f"error looking up volume plugin {driver}: plugin {driver!r} not found"
            )
        labels = dict(labels)
        anonymous = not name
        if anonymous:
            name = secrets.token_hex(32)
            labels[ANONYMOUS_LABEL] = ""
        local.validate_name(name)
        spec = local.parse_options(opts)
        existing = await self._store.get(name)
        if existing is not None:
            if existing.driver != driver:
                raise errdefs.Conflict(
                    f"create {name}: driver '{existing.driver}' already has volume '{name}': "
                    "volume name must be unique"
                )
            if not await anyio.to_thread.run_sync(self._dirs.exists, name):
                await anyio.to_thread.run_sync(self._dirs.create, name)
            return existing, False
        # Files first, then the record: a crash in between leaves a dir without a record,
        # which is kept (and adopted by a later create of the same name).
        data = await anyio.to_thread.run_sync(self._prepare, name, spec)
        vol = Volume(
            name=name, driver=driver, mountpoint=str(data), created=_now(),
            node_id=self._node_id, options=dict(opts), labels=labels,
            anonymous=anonymous or ANONYMOUS_LABEL in labels,
        )
        stored, created = await self._store.put(vol)
        if created:
            await self._emit("create", name)
        return stored, created

    def _prepare(self, name: str, spec: MountSpec | None) -> Path:
        if spec is not None:
            local.check_device(spec)
        return self._dirs.create(name)

    async def _delete_locked(self, vol: Volume) -> None:
        """Unmount, then drop the record (refused while referenced), then delete the dir."""
        refs = await self._store.refs(vol.name)
        if refs:
            raise in_use_error(vol.name, refs)
        data = self._dirs.data(vol.name)
        await anyio.to_thread.run_sync(local.unmount, data)
        if await self._store.delete(vol.name):
            await anyio.to_thread.run_sync(self._dirs.remove, vol.name)
            await self._emit("destroy", vol.name)

    # -- the API --------------------------------------------------------------------------

    async def create_volume(
        self, name: str, driver: str, driver_opts: dict[str, str], labels: dict[str, str]
    ) -> Volume:
        async with self._lock:
            vol, _ = await self._create_locked(name, driver, driver_opts, labels)
            return vol

    async def get_volume(self, name: str) -> Volume:
        vol = await self._store.get(name)
        if vol is None:
            raise no_such_volume("get", name)
        return vol

    async def list_volumes(
        self, filters: dict[str, list[str]], usage: bool = False
    ) -> list[Volume]:
        dfilters.validate(filters, LIST_FILTERS)
        if "dangling" in filters:
            dfilters.get_bool(filters, "dangling", False)  # reject bad values up front
        vols = await self._store.list_volumes()
        counts = await self._store.ref_counts()
        out = [v for v in vols if match_filters(v, filters, counts.get(v.name, 0) > 0)]
        if not usage:
            return out
        sized: list[Volume] = []
        for v in out:
            size = await anyio.to_thread.run_sync(local.dir_size, self._dirs.data(v.name))
            sized.append(Volume(v.name, v.driver, v.mountpoint, v.created, v.node_id,
                                v.options, v.labels, v.anonymous, size, counts.get(v.name, 0)))
        return sized

    async def remove_volume(self, name: str, force: bool = False) -> None:
        async with self._lock:
            vol = await self._store.get(name)
            if vol is None:
                if force:
                    return
                raise no_such_volume("get", name)
            await self._delete_locked(vol)

    async def prune_volumes(self, filters: dict[str, list[str]]) -> PruneReport:
        dfilters.validate(filters, PRUNE_FILTERS)
        every = _prune_all(filters)
        if self._pruning:
            raise errdefs.Conflict("a prune operation is already running")
        self._pruning = True
        try:
            deleted: list[str] = []
            reclaimed = 0
            async with self._lock:
                counts = await self._store.ref_counts()
                for v in await self._store.list_volumes():
                    # moby prunes only unreferenced local volumes without mount options.
                    if v.driver != DEFAULT_DRIVER or counts.get(v.name) or v.options:
                        continue
                    if not every and not (v.anonymous or ANONYMOUS_LABEL in v.labels):
                        continue
                    if not dfilters.match_labels(filters.get("label", []), v.labels):
                        continue
                    if any(dfilters.match_labels([x], v.labels) for x in filters.get("label!", [])):
                        continue
                    size = await anyio.to_thread.run_sync(local.dir_size, self._dirs.data(v.name))
                    try:
                        await self._delete_locked(v)
                    except errdefs.EngineError as e:
                        log.warning("prune: could not remove volume %s: %s", v.name, e)
                        continue
                    deleted.append(v.name)
                    reclaimed += size
            if self._events is not None:
                await self._events.publish(
                    Event("volume", "prune", "", {"reclaimed": str(reclaimed)}))
            return PruneReport(deleted=deleted, space_reclaimed=reclaimed)
        finally:
            self._pruning = False

    async def acquire_volume(
        self,
        name: str,
        container_id: str,
        *,
        driver: str = "",
        driver_opts: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        copy_up_source: str = "",
        copy_up_path: str = "",
    ) -> AcquireResult:
        if _CONTAINER_ID.fullmatch(container_id) is None:
            raise errdefs.InvalidArgument(
                f"invalid container id {container_id!r}: must be 64 lowercase hexadecimal "
                "characters"
            )
        async with self._lock:
            vol, created = await self._create_locked(
                name, driver, driver_opts or {}, labels or {})
            spec = local.parse_options(vol.options)
            others = [r for r in await self._store.refs(vol.name) if r != container_id]
            new_ref = await self._store.add_ref(vol.name, container_id)
            data = self._dirs.data(vol.name)
            try:
                if spec is not None and str(data) not in await anyio.to_thread.run_sync(
                        local.mount_points):
                    await anyio.to_thread.run_sync(local.mount, spec, data)
                if copy_up_source and not others and (spec is None or spec.fstype == "tmpfs"):
                    await local.copy_up_async(Path(copy_up_source), copy_up_path, data)
            except BaseException:
                if new_ref:
                    with anyio.CancelScope(shield=True):
                        await self._store.remove_ref(vol.name, container_id)
                raise
            if new_ref:
                await self._emit("mount", vol.name, container=container_id)
            return AcquireResult(volume=vol, mountpoint=str(data), created=created)

    async def release_volume(self, name: str, container_id: str, remove: bool = False) -> bool:
        async with self._lock:
            dropped = await self._store.remove_ref(name, container_id)
            vol = await self._store.get(name)
            if vol is None:
                return False
            if dropped:
                await self._emit("unmount", name, container=container_id)
            if await self._store.refs(name):
                return False
            if vol.options:
                await anyio.to_thread.run_sync(local.unmount, self._dirs.data(name))
            if remove and vol.anonymous:
                await self._delete_locked(vol)
                return True
            return False
