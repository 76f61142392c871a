"""LayerStore: chain ids, compressed/plain layers, diff id checks, crash leftovers."""

from __future__ import annotations

import gzip
import hashlib
import tarfile
from pathlib import Path

import pytest
import zstandard

import errdefs
from images_svc.content import DigestMismatch
from images_svc.layers import LayerStore, chain_ids
from tests.unit.images.images_tarutil import E, make_tar

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


def _d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_chain_ids() -> None:
    a, b, c = _d(b"a"), _d(b"b"), _d(b"c")
    ids = chain_ids([a, b, c])
    assert ids[0] == a
    assert ids[1] == _d(f"{a} {b}".encode())
    assert ids[2] == _d(f"{ids[1]} {c}".encode())
    assert chain_ids([]) == []


@pytest.mark.parametrize("compress", ["plain", "gzip", "zstd"])
async def test_unpack_formats(tmp_path: Path, compress: str) -> None:
    tar = make_tar([E("etc", type=tarfile.DIRTYPE), E("etc/hosts", data=b"127.0.0.1 x\n")])
    blob = {"plain": tar, "gzip": gzip.compress(tar),
            "zstd": zstandard.ZstdCompressor().compress(tar)}[compress]
    (tmp_path / "blob").write_bytes(blob)
    store = LayerStore(tmp_path / "layers")
    diff = _d(tar)
    info = await store.unpack(diff, "", tmp_path / "blob", diff)
    assert (info.chain_id, info.diff_id, info.parent, info.size) == (diff, diff, "", 12)
    assert store.has(diff)
    assert (store.diff_dir(diff) / "etc/hosts").read_bytes() == b"127.0.0.1 x\n"
    assert store.read_meta(diff) == info
    assert store.diff_id_of(tmp_path / "blob") == diff
    assert await store.reconcile() == [diff]
    assert not any(p.name.startswith("tmp-") for p in (tmp_path / "layers").iterdir())
    # Unpacking again is a no-op.
    assert await store.unpack(diff, "", tmp_path / "blob", diff) == info


async def test_child_layer_chain(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "layers")
    t1, t2 = make_tar([E("a", data=b"1")]), make_tar([E("b", data=b"22")])
    (tmp_path / "1").write_bytes(t1)
    (tmp_path / "2").write_bytes(t2)
    c1, c2 = chain_ids([_d(t1), _d(t2)])
    await store.unpack(c1, "", tmp_path / "1", _d(t1))
    info = await store.unpack(c2, c1, tmp_path / "2", _d(t2))
    assert (info.parent, info.size) == (c1, 2)
    with pytest.raises(DigestMismatch):
        await store.unpack(_d(b"wrong chain"), c1, tmp_path / "2", None)


async def test_missing_parent(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "layers")
    (tmp_path / "b").write_bytes(make_tar([]))
    with pytest.raises(errdefs.NotFound):
        await store.unpack(_d(b"x"), _d(b"p"), tmp_path / "b", None)


async def test_diff_id_mismatch_cleans_up(tmp_path: Path) -> None:
    tar = make_tar([E("f", data=b"x")])
    (tmp_path / "blob").write_bytes(gzip.compress(tar))
    store = LayerStore(tmp_path / "layers")
    wrong = _d(b"not the layer")
    with pytest.raises(DigestMismatch, match=f"expected {wrong}, got {_d(tar)}"):
        await store.unpack(wrong, "", tmp_path / "blob", wrong)
    assert list((tmp_path / "layers").iterdir()) == []


async def test_corrupt_gzip(tmp_path: Path) -> None:
    blob = gzip.compress(make_tar([E("f", data=b"x" * 10000)]))
    (tmp_path / "blob").write_bytes(blob[: len(blob) // 2])
    store = LayerStore(tmp_path / "layers")
    with pytest.raises(errdefs.InvalidArgument):
        await store.unpack(_d(b"x"), "", tmp_path / "blob", None)
    assert list((tmp_path / "layers").iterdir()) == []


async def test_hostile_layer_cleans_up(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(make_tar([E("../evil", data=b"x")]))
    store = LayerStore(tmp_path / "layers")
    with pytest.raises(errdefs.InvalidArgument, match="path escapes"):
        await store.unpack(_d(b"x"), "", tmp_path / "blob", None)
    assert list((tmp_path / "layers").iterdir()) == []
    assert not (tmp_path / "evil").exists()


async def test_reconcile_and_remove(tmp_path: Path) -> None:
    root = tmp_path / "layers"
    store = LayerStore(root)
    tar = make_tar([E("ro", type=tarfile.DIRTYPE, mode=0o555), E("ro/f", data=b"x", mode=0o444)])
    (tmp_path / "blob").write_bytes(tar)
    good = _d(tar)
    await store.unpack(good, "", tmp_path / "blob", good)
    (root / "tmp-crashed" / "diff").mkdir(parents=True)
    half = "ab" * 32
    (root / half / "diff").mkdir(parents=True)  # no meta.json: incomplete
    assert await store.reconcile() == [good]
    assert sorted(p.name for p in root.iterdir()) == [good[7:]]
    await store.remove(good)
    assert list(root.iterdir()) == []
    assert not store.has(good)
    with pytest.raises(errdefs.NotFound):
        store.read_meta(good)
