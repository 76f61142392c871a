"""SqlImageStore against real SQLite and PostgreSQL (the ``state_url`` fixture runs both)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import anyio
import pytest

import errdefs
from images_svc.model import ImageRecord, LayerRecord
from images_svc.store import SqlImageStore
from statestore import StateStore, open_store
from statestore.models import ObjectId

pytest_plugins = ["testkit.pytest_plugin"]

pytestmark = pytest.mark.anyio

NODE = "a" * 32
OTHER = "b" * 32
GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def state(state_url: str) -> AsyncIterator[StateStore]:
    st = await open_store(state_url)
    try:
        yield st
    finally:
        await st.aclose()


@pytest.fixture
def store(state: StateStore) -> SqlImageStore:
    return SqlImageStore(state, NODE)


def sha(s: str) -> str:
    return "sha256:" + hashlib.sha256(s.encode()).hexdigest()


def make(
    name: str, stack: list[str], *, parent: str = "", manifest: bool = True, node: str = NODE
) -> tuple[ImageRecord, list[LayerRecord]]:
    """An image whose layers are named by ``stack`` (bottom first); equal prefixes share layers."""
    layers: list[LayerRecord] = []
    for i, layer in enumerate(stack):
        layers.append(
            LayerRecord(
                chain_id=sha("chain:" + "/".join(stack[: i + 1])),
                diff_id=sha("diff:" + layer),
                parent=layers[-1].chain_id if layers else "",
                size=100 * (i + 1),
                node_id=node,
            )
        )
    config = f'{{"name":"{name}"}}'.encode()
    rec = ImageRecord(
        id="sha256:" + hashlib.sha256(config).hexdigest(),
        config_json=config,
        manifest_digest=sha("manifest:" + name) if manifest else "",
        manifest_media_type="application/vnd.oci.image.manifest.v1+json" if manifest else "",
        manifest_size=321 if manifest else 0,
        chain_ids=[lr.chain_id for lr in layers],
        parent=parent,
        created="2024-05-01T10:00:00Z",
        size=sum(lr.size for lr in layers),
        node_id=node,
        record_created="2024-05-02T10:00:00.123456789Z",
        layers=[(GZ, sha("blob:" + x), 10 + i) for i, x in enumerate(stack)] if manifest else [],
    )
    return rec, layers


TAG = "docker.io/library/busybox:latest"
DIG = "docker.io/library/busybox@" + sha("manifest:busybox")


async def test_put_then_get_round_trips(store: SqlImageStore) -> None:
    rec, layers = make("busybox", ["base", "top"])
    assert await store.put_image(rec, layers, [TAG], [DIG]) == []
    got = await store.get(rec.id)
    assert got is not None
    assert got.repo_tags == [TAG]
    assert got.repo_digests == [DIG]
    expected = ImageRecord(**{f: getattr(rec, f) for f in ImageRecord.__slots__})
    expected.repo_tags, expected.repo_digests = [TAG], [DIG]
    assert got == expected
    assert await store.resolve_tag(TAG) == rec.id
    assert await store.resolve_digest(DIG) == rec.id
    assert await store.get_layer(layers[1].chain_id) == layers[1]
    assert await store.list_layers() == sorted(layers, key=lambda lr: lr.chain_id)
    assert await store.count_images() == 1
    assert [r.id for r in await store.list_images()] == [rec.id]


async def test_missing_lookups(store: SqlImageStore) -> None:
    assert await store.get(sha("nothing")) is None
    assert await store.resolve_tag(TAG) is None
    assert await store.resolve_digest(DIG) is None
    assert await store.get_layer(sha("nothing")) is None
    assert await store.list_images() == []
    assert await store.count_images() == 0
    assert await store.remove_tag(TAG) is False
    assert await store.remove_digest(DIG) is False
    with pytest.raises(errdefs.NotFound, match="No such image"):
        await store.delete_image(sha("nothing"))
    with pytest.raises(errdefs.NotFound, match="No such image"):
        await store.set_tag(TAG, sha("nothing"))


async def test_put_is_idempotent(store: SqlImageStore) -> None:
    rec, layers = make("busybox", ["base", "top"])
    for _ in range(3):
        assert await store.put_image(rec, layers, [TAG, TAG], [DIG]) == []
    assert await store.count_images() == 1
    assert len(await store.list_layers()) == 2
    got = await store.get(rec.id)
    assert got is not None
    assert (got.repo_tags, got.repo_digests, got.chain_ids) == ([TAG], [DIG], rec.chain_ids)


async def test_tag_moves_to_the_new_image(store: SqlImageStore) -> None:
    old, old_layers = make("v1", ["base"])
    new, new_layers = make("v2", ["base", "more"])
    other = "docker.io/library/busybox:1"
    await store.put_image(old, old_layers, [TAG, other], [])
    assert await store.put_image(new, new_layers, [TAG], []) == [old.id]
    assert await store.resolve_tag(TAG) == new.id
    got_old = await store.get(old.id)
    assert got_old is not None and got_old.repo_tags == [other]
    # set_tag reports the previous holder, and None when nothing changes.
    assert await store.set_tag(other, new.id) == old.id
    assert await store.set_tag(other, new.id) is None
    assert await store.set_tag("docker.io/library/fresh:latest", old.id) is None
    got_new = await store.get(new.id)
    assert got_new is not None and got_new.repo_tags == [other, TAG]
    assert await store.remove_tag(other) is True
    assert await store.resolve_tag(other) is None


async def test_digest_reference_moves_too(store: SqlImageStore) -> None:
    a, la = make("a", ["x"])
    b, lb = make("b", ["y"])
    await store.put_image(a, la, [], [DIG])
    assert await store.put_image(b, lb, [], [DIG]) == [a.id]
    assert await store.resolve_digest(DIG) == b.id
    assert await store.remove_digest(DIG) is True
    assert await store.resolve_digest(DIG) is None


async def test_delete_returns_layers_no_image_needs(store: SqlImageStore) -> None:
    a, la = make("a", ["base", "a1"])
    b, lb = make("b", ["base", "b1", "b2"])
    await store.put_image(a, la, [TAG], [DIG])
    await store.put_image(b, lb, ["docker.io/library/b:latest"], [])
    base = la[0].chain_id
    assert lb[0].chain_id == base
    assert await store.delete_image(b.id) == [lb[2].chain_id, lb[1].chain_id]  # top first
    assert await store.layer_in_use(base) is True
    assert await store.get_layer(lb[1].chain_id) is None
    assert await store.resolve_tag("docker.io/library/b:latest") is None
    assert await store.delete_image(a.id) == [la[1].chain_id, base]
    assert await store.layer_in_use(base) is False
    assert await store.list_layers() == []
    assert await store.resolve_tag(TAG) is None
    assert await store.resolve_digest(DIG) is None
    assert await store.count_images() == 0
    with pytest.raises(errdefs.NotFound):
        await store.delete_image(a.id)
    # The id reservation went too: the same image can come back.
    assert await store.put_image(a, la, [], []) == []
    assert await store.get(a.id) is not None


async def test_prefix_lookup(store: SqlImageStore) -> None:
    recs = [make(f"img{i}", [f"l{i}"]) for i in range(40)]
    for rec, layers in recs:
        await store.put_image(rec, layers, [], [])
    target = recs[7][0]
    hexid = target.id.removeprefix("sha256:")
    assert [r.id for r in await store.find_by_id_prefix(hexid[:12])] == [target.id]
    assert [r.id for r in await store.find_by_id_prefix("sha256:" + hexid[:12])] == [target.id]
    assert [r.id for r in await store.find_by_id_prefix(hexid)] == [target.id]
    first = hexid[0]
    same_first = sorted(r.id for r, _ in recs if r.id[7] == first)
    assert [r.id for r in await store.find_by_id_prefix(first)] == same_first
    for bad in ("", "sha256:", "%", "_" * 3, "xyz", hexid[:5] + "%"):
        assert await store.find_by_id_prefix(bad) == []


async def test_children_and_referenced_blobs(store: SqlImageStore) -> None:
    parent, lp = make("parent", ["base"])
    child, lc = make("child", ["base", "extra"], parent=parent.id)
    plain, lpl = make("plain", ["solo"], manifest=False)
    await store.put_image(parent, lp, [], [DIG])
    await store.put_image(child, lc, [], [])
    await store.put_image(plain, lpl, [], [])
    assert await store.children(parent.id) == [child.id]
    assert await store.children(child.id) == []
    expected = {parent.id, child.id, plain.id, parent.manifest_digest, child.manifest_digest}
    expected |= {d for r in (parent, child) for _, d, _ in r.layers}
    expected.add(DIG.rpartition("@")[2])
    assert await store.referenced_blobs() == expected
    await store.delete_image(child.id)
    assert child.manifest_digest not in await store.referenced_blobs()


async def test_existing_image_learns_its_manifest(store: SqlImageStore) -> None:
    loaded, layers = make("x", ["l"], manifest=False)
    pulled, _ = make("x", ["l"])
    assert loaded.id == pulled.id
    await store.put_image(loaded, layers, [], [])
    await store.put_image(pulled, [], [], [])
    got = await store.get(pulled.id)
    assert got is not None
    assert (got.manifest_digest, got.layers) == (pulled.manifest_digest, pulled.layers)


async def test_put_is_atomic_and_validated(store: SqlImageStore) -> None:
    rec, layers = make("x", ["l1", "l2"])
    with pytest.raises(errdefs.NotFound, match="No such layer"):
        await store.put_image(rec, layers[:1], [TAG], [DIG])  # l2 nowhere
    assert await store.list_layers() == []  # l1 rolled back with the rest
    assert await store.resolve_tag(TAG) is None
    with pytest.raises(errdefs.InvalidArgument):  # a layer that is not in rec's chain
        await store.put_image(rec, [*layers, *make("y", ["q"])[1]], [], [])
    with pytest.raises(errdefs.InvalidArgument):
        await store.put_image(make("z", ["z"], node=OTHER)[0], [], [], [])
    assert await store.count_images() == 0
    # Layers already recorded need not be passed again.
    await store.put_image(rec, layers, [], [])
    sibling, _ = make("sibling", ["l1", "l2"])
    await store.put_image(sibling, [], [], [])
    assert await store.delete_image(rec.id) == []


async def test_id_taken_by_another_kind(store: SqlImageStore, state: StateStore) -> None:
    rec, layers = make("x", ["l"])
    async with state.session() as s:
        s.add(ObjectId(node_id=NODE, id=rec.id.removeprefix("sha256:"), kind="container"))
    with pytest.raises(errdefs.Conflict):
        await store.put_image(rec, layers, [], [])


async def test_nodes_do_not_see_each_other(state: StateStore, store: SqlImageStore) -> None:
    other = SqlImageStore(state, OTHER)
    rec, layers = make("shared", ["base"])
    orec, olayers = make("shared", ["base"], node=OTHER)
    await store.put_image(rec, layers, [TAG], [])
    assert await other.get(rec.id) is None
    assert await other.resolve_tag(TAG) is None
    await other.put_image(orec, olayers, [TAG], [])
    assert await other.delete_image(orec.id) == [olayers[0].chain_id]
    assert await store.resolve_tag(TAG) == rec.id
    assert await store.layer_in_use(layers[0].chain_id) is True
    assert await other.count_images() == 0 and await store.count_images() == 1


async def test_concurrent_puts_of_one_image(store: SqlImageStore) -> None:
    rec, layers = make("busy", ["a", "b", "c"])
    lost: list[list[str]] = []

    async def put() -> None:
        lost.append(await store.put_image(rec, layers, [TAG], [DIG]))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(put)
    assert lost == [[]] * 8
    assert await store.count_images() == 1
    assert len(await store.list_layers()) == 3


async def test_records_survive_reopen(state_url: str) -> None:
    rec, layers = make("durable", ["base", "top"])
    first = await open_store(state_url)
    try:
        await SqlImageStore(first, NODE).put_image(rec, layers, [TAG], [DIG])
    finally:
        await first.aclose()
    second = await open_store(state_url)
    try:
        got = await SqlImageStore(second, NODE).get(rec.id)
    finally:
        await second.aclose()
    assert got is not None
    assert (got.config_json, got.chain_ids, got.repo_tags, got.repo_digests, got.layers) == (
        rec.config_json, rec.chain_ids, [TAG], [DIG], rec.layers,
    )
