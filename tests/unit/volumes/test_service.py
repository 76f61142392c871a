"""VolumesService over a real SQLite store: create, filters, refs, rm in use, prune, events."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import errdefs
from events_svc.bus import EventBus
from events_svc.model import Event
from statestore import open_store
from volumes_svc.model import ANONYMOUS_LABEL
from volumes_svc.service import VolumesService
from volumes_svc.store import SqlVolumeStore

pytestmark = pytest.mark.anyio


NODE = "e" * 32
C1, C2 = "1" * 64, "2" * 64


def _read(*parts: str | Path) -> str:
    return Path(*parts).read_text()


def _write(text: str, *parts: str | Path) -> None:
    Path(*parts).write_text(text)


def _exists(*parts: str | Path) -> bool:
    return Path(*parts).exists()


def _isdir(*parts: str | Path) -> bool:
    return Path(*parts).is_dir()


class Recorder(EventBus):
    """The real bus, keeping what was published."""

    def __init__(self) -> None:
        super().__init__(NODE)
        self.seen: list[Event] = []

    async def publish(self, event: Event) -> None:
        self.seen.append(event)
        await super().publish(event)


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[tuple[VolumesService, Recorder]]:
    state = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
    events = Recorder()
    try:
        s = VolumesService(tmp_path / "root", SqlVolumeStore(state, NODE), NODE, events)
        await s.reconcile()
        yield s, events
    finally:
        await state.aclose()


async def test_create_inspect_idempotent(svc: tuple[VolumesService, Recorder], tmp_path: Path) -> None:
    s, ev = svc
    v = await s.create_volume("data", "", {}, {"a": "b"})
    assert (v.name, v.driver, v.labels, v.options, v.anonymous) == ("data", "local", {"a": "b"}, {}, False)
    assert v.mountpoint == str(tmp_path / "root" / "volumes" / "data" / "_data")
    assert _isdir(v.mountpoint)
    assert v.created.endswith("Z") and len(v.created) == 20
    # moby: an existing name returns the existing volume, whatever the options and labels.
    again = await s.create_volume("data", "local", {}, {"other": "x"})
    assert again == v
    assert await s.get_volume("data") == v
    assert [(e.type, e.action, e.actor_id, e.attributes) for e in ev.seen] == [
        ("volume", "create", "data", {"driver": "local"})]


async def test_errors(svc: tuple[VolumesService, Recorder]) -> None:
    s, _ = svc
    with pytest.raises(errdefs.NotFound, match=r"^get nope: no such volume$"):
        await s.get_volume("nope")
    with pytest.raises(errdefs.NotFound, match=r"^get nope: no such volume$"):
        await s.remove_volume("nope")
    await s.remove_volume("nope", force=True)
    with pytest.raises(errdefs.InvalidArgument, match="invalid characters"):
        await s.create_volume("../etc", "", {}, {})
    with pytest.raises(errdefs.NotFound, match="plugin"):
        await s.create_volume("x1", "rexray", {}, {})
    with pytest.raises(errdefs.InvalidArgument, match="unsupported volume type"):
        await s.create_volume("x1", "", {"type": "nfs", "device": ":/x", "o": "addr=1.2.3.4"}, {})
    assert await s.list_volumes({}) == []


async def test_anonymous_generated_name(svc: tuple[VolumesService, Recorder]) -> None:
    s, _ = svc
    v = await s.create_volume("", "", {}, {})
    assert len(v.name) == 64 and v.anonymous and v.labels == {ANONYMOUS_LABEL: ""}


async def test_refs_block_rm_until_released(svc: tuple[VolumesService, Recorder]) -> None:
    s, ev = svc
    got = await s.acquire_volume("shared", C1)  # created on first acquire, like run -v
    assert got.created and got.mountpoint == got.volume.mountpoint
    again = await s.acquire_volume("shared", C1)
    assert not again.created  # idempotent per (volume, container)
    await s.acquire_volume("shared", C2)
    with pytest.raises(errdefs.Conflict, match=rf"^remove shared: volume is in use - \[{C1}, {C2}\]$"):
        await s.remove_volume("shared")
    with pytest.raises(errdefs.Conflict):
        await s.remove_volume("shared", force=True)  # force never removes a volume in use
    assert await s.release_volume("shared", C1) is False
    assert await s.release_volume("shared", C1) is False  # absent reference: no-op
    with pytest.raises(errdefs.Conflict, match=rf"\[{C2}\]$"):
        await s.remove_volume("shared")
    await s.release_volume("shared", C2)
    await s.remove_volume("shared")
    assert await s.list_volumes({}) == []
    actions = [(e.action, e.attributes.get("container", "")) for e in ev.seen]
    assert actions == [("create", ""), ("mount", C1), ("mount", C2), ("unmount", C1),
                       ("unmount", C2), ("destroy", "")]


async def test_acquire_checks_container_id(svc: tuple[VolumesService, Recorder]) -> None:
    s, _ = svc
    with pytest.raises(errdefs.InvalidArgument, match="container id"):
        await s.acquire_volume("v1", "../../x")
    assert await s.list_volumes({}) == []


async def test_release_remove_deletes_anonymous_only(svc: tuple[VolumesService, Recorder]) -> None:
    s, _ = svc
    anon = (await s.acquire_volume("", C1)).volume
    named = (await s.acquire_volume("named", C1)).volume
    assert await s.release_volume(anon.name, C1, remove=True) is True
    assert await s.release_volume(named.name, C1, remove=True) is False
    assert [v.name for v in await s.list_volumes({})] == ["named"]
    assert not _exists(anon.mountpoint)


async def test_list_filters(svc: tuple[VolumesService, Recorder]) -> None:
    s, _ = svc
    await s.create_volume("web-data", "", {}, {"app": "web", "tier": "front"})
    await s.create_volume("db-data", "", {}, {"app": "db"})
    await s.create_volume("cache", "", {}, {})
    await s.acquire_volume("db-data", C1)

    async def names(f: dict[str, list[str]]) -> list[str]:
        return [v.name for v in await s.list_volumes(f)]

    assert await names({}) == ["cache", "db-data", "web-data"]
    assert await names({"dangling": ["true"]}) == ["cache", "web-data"]
    assert await names({"dangling": ["0"]}) == ["db-data"]
    assert await names({"label": ["app"]}) == ["db-data", "web-data"]
    assert await names({"label": ["app=web"]}) == ["web-data"]
    assert await names({"label": ["app", "tier=front"]}) == ["web-data"]
    assert await names({"name": ["data"]}) == ["db-data", "web-data"]  # substring regex
    assert await names({"name": ["^c"]}) == ["cache"]
    assert await names({"name": ["["]}) == []  # a bad pattern matches nothing
    assert await names({"driver": ["local"]}) == ["cache", "db-data", "web-data"]
    assert await names({"driver": ["other"]}) == []
    with pytest.raises(errdefs.InvalidArgument, match="invalid filter 'foo'"):
        await names({"foo": ["x"]})
    with pytest.raises(errdefs.InvalidArgument, match="invalid filter 'dangling"):
        await names({"dangling": ["maybe"]})
    sized = {v.name: (v.size, v.ref_count) for v in await s.list_volumes({}, usage=True)}
    assert sized == {"cache": (0, 0), "db-data": (0, 1), "web-data": (0, 0)}


async def test_prune_semantics(svc: tuple[VolumesService, Recorder]) -> None:
    s, ev = svc
    anon = await s.create_volume("", "", {}, {})
    anon_used = (await s.acquire_volume("", C1)).volume
    named = await s.create_volume("named", "", {}, {"keep": "yes"})
    await s.create_volume("other", "", {}, {})
    await s.create_volume("tmp1", "", {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}, {})
    _write("z" * 100, anon.mountpoint, "f")
    # Default (1.42+): anonymous and unreferenced only.
    rep = await s.prune_volumes({})
    assert (rep.deleted, rep.space_reclaimed) == ([anon.name], 100)
    assert ev.seen[-1].action == "prune" and ev.seen[-1].attributes == {"reclaimed": "100"}
    # all=true: every unused local volume without mount options; label! narrows it.
    rep = await s.prune_volumes({"all": ["true"], "label!": ["keep=yes"]})
    assert rep.deleted == ["other"]
    rep = await s.prune_volumes({"all": ["1"], "label": ["keep"]})
    assert rep.deleted == [named.name]
    left = [v.name for v in await s.list_volumes({})]
    assert sorted(left) == sorted([anon_used.name, "tmp1"])
    with pytest.raises(errdefs.InvalidArgument, match="only one value"):
        await s.prune_volumes({"all": ["true", "false"]})
    with pytest.raises(errdefs.InvalidArgument, match="invalid filter 'all'"):
        await s.prune_volumes({"all": ["yes"]})
    with pytest.raises(errdefs.InvalidArgument, match="invalid filter 'dangling'"):
        await s.prune_volumes({"dangling": ["true"]})


async def test_reconcile_recreates_and_keeps(svc: tuple[VolumesService, Recorder], tmp_path: Path) -> None:
    s, _ = svc
    v = await s.create_volume("lost", "", {}, {})
    os.rmdir(v.mountpoint)
    stray = tmp_path / "root" / "volumes" / "stray" / "_data"
    stray.mkdir(parents=True)
    _write("user data", stray, "precious")
    await s.reconcile()
    assert _isdir(v.mountpoint)
    assert _read(stray, "precious") == "user data"  # never deleted automatically
    # A later create of that name adopts the data.
    adopted = await s.create_volume("stray", "", {}, {})
    assert _read(adopted.mountpoint, "precious") == "user data"
