"""open_store, its SQLite settings and sessions, and load_node_id."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from sqlalchemy import func, select, text

import errdefs
from statestore import load_node_id, open_store, sqlite_url
from statestore.migrate import head_revision
from statestore.models import ObjectId

pytest_plugins = ["testkit.pytest_plugin"]

pytestmark = pytest.mark.anyio


async def test_open_migrates_to_head_and_reopens(state_url: str) -> None:
    store = await open_store(state_url)
    try:
        async with store.session(readonly=True) as s:
            assert await s.scalar(text("SELECT version_num FROM alembic_version")) == (
                head_revision()
            )
        assert store.dialect in ("sqlite", "postgresql")
    finally:
        await store.aclose()
    again = await open_store(state_url)  # already at head: a no-op
    await again.aclose()


async def test_sqlite_connection_settings(tmp_path: Path) -> None:
    store = await open_store(sqlite_url(tmp_path))
    try:
        async with store.engine.connect() as conn:
            pragmas = {
                p: (await conn.exec_driver_sql(f"PRAGMA {p}")).scalar()
                for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "foreign_keys": 1,
            "busy_timeout": 30_000,
        }
    finally:
        await store.aclose()


async def test_session_commits_or_rolls_back(state_url: str) -> None:
    store = await open_store(state_url)
    try:
        async with store.session() as s:
            s.add(ObjectId(node_id="n" * 32, id="a" * 64, kind="image"))
        with pytest.raises(RuntimeError):
            async with store.session() as s:
                s.add(ObjectId(node_id="n" * 32, id="b" * 64, kind="image"))
                await s.flush()
                raise RuntimeError("boom")
        async with store.session(readonly=True) as s:
            ids = list(await s.scalars(select(ObjectId.id)))
        assert ids == ["a" * 64]
    finally:
        await store.aclose()


async def test_sqlite_write_sessions_serialise(tmp_path: Path) -> None:
    """Read-then-write transactions queue for the lock instead of failing with SQLITE_BUSY."""
    store = await open_store(sqlite_url(tmp_path))

    async def bump() -> None:
        async with store.session() as s:
            n = await s.scalar(select(func.count()).select_from(ObjectId))
            await anyio.sleep(0.01)  # let the others read too
            s.add(ObjectId(node_id="n" * 32, id=f"{n:064x}", kind="image"))

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(15):
                tg.start_soon(bump)
        async with store.session(readonly=True) as s:
            assert await s.scalar(select(func.count()).select_from(ObjectId)) == 15
    finally:
        await store.aclose()


async def test_sqlite_reader_runs_beside_writer(tmp_path: Path) -> None:
    store = await open_store(sqlite_url(tmp_path))
    try:
        async with store.session() as w:
            w.add(ObjectId(node_id="n" * 32, id="c" * 64, kind="image"))
            await w.flush()  # holds the write lock now
            with anyio.fail_after(5):
                async with store.session(readonly=True) as r:
                    # WAL: the reader sees the last commit, not the open transaction.
                    assert await r.scalar(select(func.count()).select_from(ObjectId)) == 0
        async with store.session(readonly=True) as r:
            assert await r.scalar(select(func.count()).select_from(ObjectId)) == 1
    finally:
        await store.aclose()


async def test_open_rejects_unknown_schema_revision(state_url: str) -> None:
    store = await open_store(state_url)
    async with store.session() as s:
        await s.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    await store.aclose()
    with pytest.raises(errdefs.Internal, match="9999"):
        await open_store(state_url)


async def test_open_rejects_other_drivers() -> None:
    with pytest.raises(errdefs.InvalidArgument):
        await open_store("mysql+aiomysql://x/y")


def test_load_node_id_is_created_once(tmp_path: Path) -> None:
    first = load_node_id(tmp_path)
    assert len(first) == 32
    int(first, 16)
    assert load_node_id(tmp_path) == first
    assert (tmp_path / "node-id").read_text().strip() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node-id"]  # no temp files left


def test_load_node_id_rejects_garbage(tmp_path: Path) -> None:
    (tmp_path / "node-id").write_text("not-an-id\n")
    with pytest.raises(errdefs.Internal):
        load_node_id(tmp_path)
