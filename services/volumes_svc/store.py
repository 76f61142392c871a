"""The volumes service's record store: VolumeStore protocol and its SQL implementation."""

from __future__ import annotations

import json
from typing import Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

import errdefs
from statestore import StateStore
from statestore.models.volumes import Volume as VolumeRow
from statestore.models.volumes import VolumeRef
from volumes_svc.model import Volume

__all__ = ["SqlVolumeStore", "VolumeStore", "in_use_error", "no_such_volume"]


def no_such_volume(op: str, name: str) -> errdefs.NotFound:
    """moby's OpErr text: "get <name>: no such volume"."""
    return errdefs.NotFound(f"{op} {name}: no such volume")


def in_use_error(name: str, refs: list[str]) -> errdefs.Conflict:
    """moby's OpErr text: "remove <name>: volume is in use - [<id>, <id>]"."""
    return errdefs.Conflict(f"remove {name}: volume is in use - [{', '.join(refs)}]")


class VolumeStore(Protocol):
    """Volume records and container references of one node; every call is one transaction."""

    async def put(self, vol: Volume) -> tuple[Volume, bool]:
        """Record ``vol`` unless a volume of that name exists.

        Returns:
            The stored volume (the existing one, if any) and whether this call created it.

        Raises:
            errdefs.InvalidArgument: the record belongs to another node.
        """
        ...

    async def get(self, name: str) -> Volume | None:
        """Return volume ``name`` or None."""
        ...

    async def list_volumes(self) -> list[Volume]:
        """Every volume of this node, ordered by name."""
        ...

    async def delete(self, name: str) -> bool:
        """Delete volume ``name`` if no container references it; return whether it existed.

        The reference check and the delete are one transaction (the row is locked first).

        Raises:
            errdefs.Conflict: "remove <name>: volume is in use - [<container ids>]".
        """
        ...

    async def add_ref(self, name: str, container_id: str) -> bool:
        """Record that ``container_id`` uses ``name``; return whether the reference is new.

        Raises:
            errdefs.NotFound: "get <name>: no such volume".
        """
        ...

    async def remove_ref(self, name: str, container_id: str) -> bool:
        """Drop the reference; return whether it existed."""
        ...

    async def refs(self, name: str) -> list[str]:
        """Container ids referencing ``name``, sorted."""
        ...

    async def ref_counts(self) -> dict[str, int]:
        """Number of references per referenced volume name."""
        ...


class SqlVolumeStore:
    """VolumeStore over ``vol_volumes`` and ``vol_refs``, scoped to one node."""

    def __init__(self, state: StateStore, node_id: str) -> None:
        self._state = state
        self._node = node_id

    def _to_volume(self, row: VolumeRow) -> Volume:
        return Volume(
            name=row.name, driver=row.driver, mountpoint=row.mountpoint, created=row.created,
            node_id=row.node_id, options=json.loads(row.options_json),
            labels=json.loads(row.labels_json), anonymous=bool(row.anonymous),
        )

    async def _lock_row(self, s: AsyncSession, name: str) -> VolumeRow | None:
        row = await s.scalar(
            select(VolumeRow)
            .where(VolumeRow.node_id == self._node, VolumeRow.name == name)
            .with_for_update()
        )
        return row

    async def put(self, vol: Volume) -> tuple[Volume, bool]:
        if vol.node_id != self._node:
            raise errdefs.InvalidArgument(f"volume {vol.name} belongs to node {vol.node_id}")
        values = {
            "node_id": vol.node_id, "name": vol.name, "driver": vol.driver,
            "mountpoint": vol.mountpoint, "options_json": json.dumps(vol.options, sort_keys=True),
            "labels_json": json.dumps(vol.labels, sort_keys=True), "created": vol.created,
            "anonymous": vol.anonymous,
        }
        async with self._state.session() as s:
            if self._state.dialect == "postgresql":
                pg = postgresql.insert(VolumeRow).values(values).on_conflict_do_nothing()
                res = await s.execute(pg)
            else:
                lite = sqlite.insert(VolumeRow).values(values).on_conflict_do_nothing()
                res = await s.execute(lite)
            created = getattr(res, "rowcount", 0) == 1
            row = await s.scalar(
                select(VolumeRow).where(VolumeRow.node_id == self._node, VolumeRow.name == vol.name)
            )
            assert row is not None
            return self._to_volume(row), created

    async def get(self, name: str) -> Volume | None:
        async with self._state.session(readonly=True) as s:
            row = await s.scalar(
                select(VolumeRow).where(VolumeRow.node_id == self._node, VolumeRow.name == name)
            )
            return None if row is None else self._to_volume(row)

    async def list_volumes(self) -> list[Volume]:
        async with self._state.session(readonly=True) as s:
            rows = await s.scalars(
                select(VolumeRow).where(VolumeRow.node_id == self._node).order_by(VolumeRow.name)
            )
            return [self._to_volume(r) for r in rows]

    async def _refs(self, s: AsyncSession, name: str) -> list[str]:
        return list(await s.scalars(
            select(VolumeRef.container_id)
            .where(VolumeRef.node_id == self._node, VolumeRef.volume_name == name)
            .order_by(VolumeRef.container_id)
        ))

    async def delete(self, name: str) -> bool:
        async with self._state.session() as s:
            if await self._lock_row(s, name) is None:
                return False
            refs = await self._refs(s, name)
            if refs:
                raise in_use_error(name, refs)
            await s.execute(
                delete(VolumeRow).where(VolumeRow.node_id == self._node, VolumeRow.name == name)
            )
            return True

    async def add_ref(self, name: str, container_id: str) -> bool:
        async with self._state.session() as s:
            if await self._lock_row(s, name) is None:
                raise no_such_volume("get", name)
            have = await s.scalar(
                select(VolumeRef.container_id).where(
                    VolumeRef.node_id == self._node, VolumeRef.volume_name == name,
                    VolumeRef.container_id == container_id,
                )
            )
            if have is not None:
                return False
            s.add(VolumeRef(node_id=self._node, volume_name=name, container_id=container_id))
            return True

    async def remove_ref(self, name: str, container_id: str) -> bool:
        async with self._state.session() as s:
            res = await s.execute(
                delete(VolumeRef).where(
                    VolumeRef.node_id == self._node, VolumeRef.volume_name == name,
                    VolumeRef.container_id == container_id,
                )
            )
            return getattr(res, "rowcount", 0) == 1

    async def refs(self, name: str) -> list[str]:
        async with self._state.session(readonly=True) as s:
            return await self._refs(s, name)

    async def ref_counts(self) -> dict[str, int]:
        async with self._state.session(readonly=True) as s:
            rows = await s.execute(
                select(VolumeRef.volume_name, func.count())
                .where(VolumeRef.node_id == self._node)
                .group_by(VolumeRef.volume_name)
            )
            return {name: int(n) for name, n in rows.all()}
