"""Opens the state store: engine with durable SQLite settings, migrations at open, sessions."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import Connection, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

import errdefs

from . import migrate

__all__ = ["StateStore", "create_engine", "load_node_id", "open_store", "sqlite_url"]

SQLITE_BUSY_TIMEOUT_MS = 30_000
_READONLY = "berth_readonly"  # execution option: a read-only session on SQLite


def sqlite_url(data_root: Path) -> str:
    """Return the default URL: ``sqlite+aiosqlite:///<data_root>/state.db``."""
    return f"sqlite+aiosqlite:///{data_root / 'state.db'}"


def create_engine(url: str, *, foreign_keys: bool = True, **kwargs: Any) -> AsyncEngine:
    """Create an AsyncEngine for ``url`` with berth's connection settings.

    SQLite connections get WAL, ``synchronous=FULL`` (a commit is on disk when it returns),
    ``busy_timeout`` and ``foreign_keys``; SQLAlchemy emits BEGIN itself, so reads are
    transactional too, and write sessions take the write lock at BEGIN (``BEGIN IMMEDIATE``)
    rather than failing with SQLITE_BUSY when a read transaction later tries to write.

    Args:
        url: ``sqlite+aiosqlite:///<path>`` or ``postgresql+asyncpg://...``.
        foreign_keys: SQLite only; False for migrations (see ``statestore.migrate``).
        **kwargs: passed to ``create_async_engine``.

    Raises:
        errdefs.InvalidArgument: the URL names another driver.
    """
    if url.startswith("sqlite+aiosqlite:"):
        engine = create_async_engine(url, **kwargs)
        _sqlite_listeners(engine, foreign_keys=foreign_keys)
        return engine
    if url.startswith("postgresql+asyncpg:"):
        kwargs.setdefault("pool_pre_ping", True)
        return create_async_engine(url, **kwargs)
    raise errdefs.InvalidArgument(
        "state store URL must start with sqlite+aiosqlite: or postgresql+asyncpg:"
    )


def _sqlite_listeners(engine: AsyncEngine, *, foreign_keys: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Take BEGIN away from the sqlite3 driver (it skips it for SELECT and DDL).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        finally:
            cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get(_READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class StateStore:
    """An open state store: the engine plus transactional sessions.

    Resource handling: ``aclose()`` disposes the connection pool; sessions must be finished first.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name  # "sqlite" or "postgresql"
        self._rw = async_sessionmaker(engine, expire_on_commit=False)
        self._ro = async_sessionmaker(
            engine.execution_options(**{_READONLY: True}), expire_on_commit=False
        )

    @asynccontextmanager
    async def session(self, *, readonly: bool = False) -> AsyncIterator[AsyncSession]:
        """Yield a session inside one transaction: committed on exit, rolled back on error.

        Args:
            readonly: the block only reads; on SQLite it then does not take the write lock, so
                it runs beside a writer (WAL) instead of queueing behind it.
        """
        maker = self._ro if readonly else self._rw
        async with maker() as session, session.begin():
            yield session

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


async def open_store(url: str) -> StateStore:
    """Open the state store at ``url`` and migrate its schema to the newest revision.

    Args:
        url: ``sqlite+aiosqlite:///<data_root>/state.db`` (see ``sqlite_url``) or
            ``postgresql+asyncpg://user@/db?host=/run/postgresql``.

    Raises:
        errdefs.InvalidArgument: unsupported URL.
        errdefs.Internal: the schema is at a revision this code does not know (a newer berth
            migrated it) or did not reach head.
    """
    # Migrate on a separate, pool-less engine: SQLite migrations need foreign_keys=OFF.
    mig = create_engine(url, foreign_keys=False, poolclass=NullPool)
    try:
        await migrate.upgrade(mig, "head")
        current = await migrate.current_revision(mig)
    finally:
        await mig.dispose()
    head = await anyio.to_thread.run_sync(migrate.head_revision)  # reads the version files
    if current != head:
        raise errdefs.Internal(f"state store schema at {current}, expected {head}")
    return StateStore(create_engine(url))


def load_node_id(data_root: Path) -> str:
    """Return this host's node id, creating ``<data_root>/node-id`` on first use.

    The id is 32 random hex characters, written durably (temp file, fsync, rename, fsync of the
    directory) so a crash never leaves a host with a second identity. Blocking: call it before
    the event loop starts or through ``anyio.to_thread.run_sync``.

    Raises:
        errdefs.Internal: the file exists but does not hold a valid id.
    """
    path = data_root / "node-id"
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        pass
    else:
        if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
            raise errdefs.Internal(f"{path} does not hold a 32-hex node id")
        return text
    node_id = secrets.token_hex(16)
    tmp = data_root / f".node-id.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, (node_id + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if another process won the race; its id is then the one to use.
        os.link(tmp, path)
    except FileExistsError:
        return load_node_id(data_root)
    finally:
        tmp.unlink()
    dfd = os.open(data_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return node_id
