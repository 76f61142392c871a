"""The containers service's record store: ContainerStore protocol and its SQL implementation."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

import errdefs
from containers_svc.api import ContainerRecord, ContainerState
from statestore import StateStore
from statestore.models import Container, ObjectId

__all__ = ["ContainerStore", "SqlContainerStore", "StoredContainer", "name_conflict"]


@dataclass(slots=True)
class StoredContainer:
    """A record plus the service's private run flags (not shown by inspect)."""

    record: ContainerRecord
    manual_stop: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def name_conflict(name: str, holder: str) -> errdefs.Conflict:
    """Docker's name-in-use error; ``name`` without "/"."""
    return errdefs.Conflict(
        f'Conflict. The container name "/{name}" is already in use by container "{holder}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    )


class ContainerStore(Protocol):
    """Container records of one node; each call is one transaction.

    Names are stored without the leading "/" and are unique per node.
    """

    async def insert(self, c: StoredContainer) -> None:
        """Write a new record and reserve its id in object_ids.

        Raises:
            errdefs.Conflict: the name is in use (Docker's text) or the id is taken.
        """
        ...

    async def update(self, c: StoredContainer) -> None:
        """Overwrite an existing record (state, name, host config).

        Raises:
            errdefs.NotFound: no such record.
            errdefs.Conflict: the (new) name is in use.
        """
        ...

    async def delete(self, container_id: str) -> bool:
        """Delete the record and its id reservation; False when it did not exist."""
        ...

    async def list_all(self) -> list[StoredContainer]:
        """Every container of this node, in creation order."""
        ...


def _state_to_json(s: ContainerState) -> dict[str, Any]:
    return dataclasses.asdict(s)


def _state_from_json(d: dict[str, Any]) -> ContainerState:
    names = {f.name for f in dataclasses.fields(ContainerState)}
    return ContainerState(**{k: v for k, v in d.items() if k in names})


def _fixed_json(r: ContainerRecord) -> str:
    return json.dumps({
        "Path": r.path, "Args": r.args, "Config": r.config, "HostConfig": r.host_config,
        "NetworkingConfig": r.networking_config, "Image": r.image, "LogPath": r.log_path,
        "HostnamePath": r.hostname_path, "HostsPath": r.hosts_path,
        "ResolvConfPath": r.resolv_conf_path, "Driver": r.driver, "GraphDriver": r.graph_driver,
        "Mounts": r.mounts,
    })  # fmt: skip


def _run_json(c: StoredContainer) -> str:
    r = c.record
    return json.dumps({
        "State": _state_to_json(r.state), "RestartCount": r.restart_count,
        "NetworkSettings": r.network_settings, "ExecIDs": r.exec_ids,
        "ManualStop": c.manual_stop, "Extra": c.extra,
    })  # fmt: skip


def _from_row(row: Container) -> StoredContainer:
    fixed = json.loads(row.config_json or "{}")
    run = json.loads(row.state_json or "{}")
    rec = ContainerRecord(
        id=row.id, name="/" + row.name, created=row.created, path=fixed.get("Path", ""),
        args=fixed.get("Args", []), config=fixed.get("Config", {}),
        host_config=fixed.get("HostConfig", {}), networking_config=fixed.get("NetworkingConfig", {}),
        image=fixed.get("Image", ""), image_id=row.image_id,
        state=_state_from_json(run.get("State", {"status": row.state, "pid": row.pid,
                                                 "exit_code": row.exit_code})),
        restart_count=run.get("RestartCount", 0), node_id=row.node_id,
        log_path=fixed.get("LogPath", ""), hostname_path=fixed.get("HostnamePath", ""),
        hosts_path=fixed.get("HostsPath", ""), resolv_conf_path=fixed.get("ResolvConfPath", ""),
        driver=fixed.get("Driver", "overlay2"), graph_driver=fixed.get("GraphDriver", {}),
        mounts=fixed.get("Mounts", []), exec_ids=run.get("ExecIDs", []),
        network_settings=run.get("NetworkSettings", {}),
    )  # fmt: skip
    return StoredContainer(rec, bool(run.get("ManualStop", False)), run.get("Extra", {}))


class SqlContainerStore:
    """ContainerStore on the shared state store (SQLite or PostgreSQL)."""

    def __init__(self, state: StateStore, node_id: str) -> None:
        self._state = state
        self._node = node_id

    def _columns(self, c: StoredContainer) -> dict[str, Any]:
        r = c.record
        return {
            "name": r.name.removeprefix("/"), "image_id": r.image_id, "config_json": _fixed_json(r),
            "created": r.created, "state": r.state.status, "pid": r.state.pid,
            "exit_code": r.state.exit_code, "started_at": r.state.started_at,
            "finished_at": r.state.finished_at, "state_json": _run_json(c),
        }  # fmt: skip

    async def _holder(self, name: str) -> str:
        async with self._state.session(readonly=True) as s:
            got = await s.scalar(
                select(Container.id).where(Container.node_id == self._node, Container.name == name)
            )
        return got or ""

    async def insert(self, c: StoredContainer) -> None:
        name = c.record.name.removeprefix("/")
        try:
            async with self._state.session() as s:
                if await s.get(ObjectId, (self._node, c.record.id)) is not None:
                    raise errdefs.Conflict(f"id {c.record.id} is already in use")
                s.add(ObjectId(node_id=self._node, id=c.record.id, kind="container"))
                s.add(Container(node_id=self._node, id=c.record.id, **self._columns(c)))
        except IntegrityError:
            raise name_conflict(name, await self._holder(name)) from None

    async def update(self, c: StoredContainer) -> None:
        name = c.record.name.removeprefix("/")
        try:
            async with self._state.session() as s:
                row = await s.get(Container, (self._node, c.record.id))
                if row is None:
                    raise errdefs.NotFound(f"No such container: {c.record.id}")
                for k, v in self._columns(c).items():
                    setattr(row, k, v)
        except IntegrityError:
            raise name_conflict(name, await self._holder(name)) from None

    async def delete(self, container_id: str) -> bool:
        async with self._state.session() as s:
            res = await s.execute(
                delete(Container).where(Container.node_id == self._node, Container.id == container_id)
            )
            await s.execute(
                delete(ObjectId).where(ObjectId.node_id == self._node, ObjectId.id == container_id)
            )
            return bool(getattr(res, "rowcount", 0))

    async def list_all(self) -> list[StoredContainer]:
        async with self._state.session(readonly=True) as s:
            rows = (
                await s.scalars(
                    select(Container).where(Container.node_id == self._node).order_by(Container.created)
                )
            ).all()
        return [_from_row(r) for r in rows]


