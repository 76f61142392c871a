"""ContentStore: digests verified, ingest leftovers cleaned, blobs durable and addressable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import errdefs
from images_svc.content import ContentStore, DigestMismatch

pytestmark = pytest.mark.anyio


def _d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_put_read_roundtrip(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path / "content")
    data = b"hello world" * 1000
    digest = await cs.put_bytes(data)
    assert digest == _d(data)
    assert await cs.has(digest)
    assert await cs.size(digest) == len(data)
    assert await cs.read_bytes(digest) == data
    assert b"".join([c async for c in cs.iter_chunks(digest, chunk_size=100)]) == data
    assert cs.blob_path(digest) == tmp_path / "content/blobs/sha256" / digest[7:]
    assert await cs.list_digests() == [digest]
    assert list((tmp_path / "content/ingest").iterdir()) == []
    await cs.delete(digest)
    assert not await cs.has(digest)
    await cs.delete(digest)  # idempotent


async def test_expected_digest_mismatch(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    wrong = _d(b"other")
    with pytest.raises(DigestMismatch, match=f"expected {wrong}, got {_d(b'data')}") as ei:
        await cs.put_bytes(b"data", expected=wrong)
    assert isinstance(ei.value, errdefs.InvalidArgument)
    assert await cs.list_digests() == []
    assert list((tmp_path / "ingest").iterdir()) == []


async def test_expected_digest_match(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    assert await cs.put_bytes(b"data", expected=_d(b"data")) == _d(b"data")
    assert await cs.put_bytes(b"data") == _d(b"data")  # existing blob: no error


@pytest.mark.parametrize("bad", ["sha256:ABC", "md5:" + "0" * 32, "sha256:" + "A" * 64, "x"])
def test_invalid_digest(tmp_path: Path, bad: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        ContentStore(tmp_path).blob_path(bad)


async def test_missing_blob(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    with pytest.raises(errdefs.NotFound):
        await cs.read_bytes(_d(b"x"))
    with pytest.raises(errdefs.NotFound):
        await cs.size(_d(b"x"))
    with pytest.raises(errdefs.NotFound):
        async for _ in cs.iter_chunks(_d(b"x")):
            pass


async def test_read_limit(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    d = await cs.put_bytes(b"x" * 100)
    with pytest.raises(errdefs.InvalidArgument):
        await cs.read_bytes(d, limit=10)


def test_writer_context_aborts(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    with cs.open_writer() as w:
        w.write(b"partial")
        assert len(list((tmp_path / "ingest").iterdir())) == 1
    assert list((tmp_path / "ingest").iterdir()) == []
    assert list((tmp_path / "blobs/sha256").iterdir()) == []


def test_writer_commit(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    with cs.open_writer(_d(b"abcdef")) as w:
        w.write(b"abc")
        w.write(memoryview(b"def"))
        assert w.commit() == (_d(b"abcdef"), 6)
    assert cs.blob_path(_d(b"abcdef")).read_bytes() == b"abcdef"


async def test_reconcile_removes_crash_leftovers(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    kept = await cs.put_bytes(b"kept")
    (tmp_path / "ingest" / "deadbeef").write_bytes(b"half a blob")
    (tmp_path / "ingest" / "olddir").mkdir()
    (tmp_path / "ingest" / "olddir" / "data").write_bytes(b"x")
    w = cs.open_writer()
    w.write(b"in flight when we crashed")  # never committed nor aborted
    cs2 = ContentStore(tmp_path)
    await cs2.reconcile()
    assert list((tmp_path / "ingest").iterdir()) == []
    assert await cs2.list_digests() == [kept]
    w.abort()
