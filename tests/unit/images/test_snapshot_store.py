"""SqlImageStore's snapshot records on SQLite and PostgreSQL (``state_url`` runs both)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import errdefs
from images_svc.model import ImageRecord, LayerRecord, SnapshotRecord
from images_svc.store import SqlImageStore
from statestore import StateStore, open_store

pytestmark = pytest.mark.anyio

NODE = "a" * 32
OTHER = "b" * 32
IMG = "sha256:" + "1" * 64
CHAIN = "sha256:" + "2" * 64
K1, K2 = "3" * 64, "4" * 64


@pytest.fixture
async def state(state_url: str) -> AsyncIterator[StateStore]:
    st = await open_store(state_url)
    try:
        yield st
    finally:
        await st.aclose()


@pytest.fixture
async def store(state: StateStore) -> SqlImageStore:
    s = SqlImageStore(state, NODE)
    rec = ImageRecord(
        id=IMG, config_json=b"{}", manifest_digest="", manifest_media_type="", manifest_size=0,
        chain_ids=[CHAIN], parent="", created="2024-05-01T10:00:00Z", size=10, node_id=NODE,
        record_created="2024-05-02T10:00:00Z",
    )
    await s.put_image(rec, [LayerRecord(CHAIN, CHAIN, "", 10, NODE)], [], [])
    return s


def snap(key: str, image_id: str = IMG, node: str = NODE) -> SnapshotRecord:
    return SnapshotRecord(key=key, image_id=image_id, chain_ids=[CHAIN],
                          created="2024-06-01T00:00:00Z", node_id=node,
                          labels={"a": "1", "z": "ü"})


async def test_put_get_list_delete(store: SqlImageStore) -> None:
    assert await store.get_snapshot(K1) is None
    await store.put_snapshot(snap(K2))
    await store.put_snapshot(snap(K1))
    assert await store.get_snapshot(K1) == snap(K1)
    assert [r.key for r in await store.list_snapshots()] == [K1, K2]
    assert await store.snapshots_of(IMG) == [K1, K2]
    assert await store.delete_snapshot(K1) is True
    assert await store.delete_snapshot(K1) is False
    assert await store.snapshots_of(IMG) == [K2]


async def test_put_errors(store: SqlImageStore) -> None:
    await store.put_snapshot(snap(K1))
    with pytest.raises(errdefs.AlreadyExists):
        await store.put_snapshot(snap(K1))
    with pytest.raises(errdefs.NotFound, match="No such image"):
        await store.put_snapshot(snap(K2, image_id="sha256:" + "9" * 64))
    with pytest.raises(errdefs.InvalidArgument):
        await store.put_snapshot(snap(K2, node=OTHER))
    assert [r.key for r in await store.list_snapshots()] == [K1]


async def test_the_database_refuses_to_delete_an_image_in_use(store: SqlImageStore) -> None:
    await store.put_snapshot(snap(K1))
    with pytest.raises(Exception):  # noqa: B017 - the foreign key, whatever the driver calls it
        await store.delete_image(IMG)
    assert await store.get(IMG) is not None
    await store.delete_snapshot(K1)
    assert await store.delete_image(IMG) == [CHAIN]


async def test_nodes_do_not_see_each_other(state: StateStore, store: SqlImageStore) -> None:
    await store.put_snapshot(snap(K1))
    other = SqlImageStore(state, OTHER)
    assert await other.list_snapshots() == []
    assert await other.get_snapshot(K1) is None
    assert await other.delete_snapshot(K1) is False
    with pytest.raises(errdefs.NotFound):  # the other node has no such image
        await other.put_snapshot(snap(K1, node=OTHER))
