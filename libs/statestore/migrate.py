"""Runs the Alembic revisions in ``migrations/`` programmatically over an async engine.

Migrations run inside one transaction that the caller's engine begins (SQLite's DDL is
transactional once SQLAlchemy emits BEGIN, see ``engine``). On SQLite the engine must be made with
``foreign_keys=False``: batch migrations copy and drop tables, and with enforcement on a DROP
would cascade into child rows. Integrity is checked with ``PRAGMA foreign_key_check`` before the
commit instead.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from pathlib import Path

import anyio
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import errdefs

__all__ = [
    "MIGRATIONS_DIR",
    "current_revision",
    "downgrade",
    "head_revision",
    "revisions",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Alembic keeps the running migration in a module global (``alembic.context``), so two
# migrations interleaving on one event loop would clobber each other: run them one at a time.
# Other processes and hosts are kept out by the database itself (see migrations/env.py).
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _process_lock() -> anyio.Lock:
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = anyio.Lock()
    return lock


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def revisions() -> list[str]:
    """Return every revision id, oldest first (reads the version files; call off the loop)."""
    script = ScriptDirectory.from_config(_config())
    return [r.revision for r in reversed(list(script.walk_revisions("base", "heads")))]


def head_revision() -> str:
    """Return the single head revision id.

    Raises:
        errdefs.Internal: the versions directory has several heads (a branch to merge).
    """
    heads = ScriptDirectory.from_config(_config()).get_heads()
    if len(heads) != 1:
        raise errdefs.Internal(f"state store migrations have {len(heads)} heads: {heads}")
    return heads[0]


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """Return the revision the database is at, None when it has no schema yet."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def _check_known(conn: Connection) -> None:
    current = _current(conn)
    if current is None:
        return
    script = ScriptDirectory.from_config(_config())
    try:
        script.get_revision(current)
    except CommandError as e:
        raise errdefs.Internal(
            f"state store schema is at revision {current}, which this berth does not know "
            f"(newest known: {script.get_current_head()}); upgrade berth"
        ) from e


async def _run(engine: AsyncEngine, action: Callable[[Config], None]) -> None:
    async with _process_lock(), engine.begin() as conn:

        def run(sync_conn: Connection) -> None:
            _check_known(sync_conn)
            action(_config(sync_conn))

        await conn.run_sync(run)
        if conn.dialect.name == "sqlite":
            bad = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
            if bad:
                raise errdefs.Internal(f"migration left dangling foreign keys: {bad[:5]}")


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` in one transaction.

    Raises:
        errdefs.Internal: the database is at a revision this code does not know (a newer berth
            migrated it), or the migration broke referential integrity.
    """
    await _run(engine, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Downgrade the schema to ``revision`` ("base" drops everything) in one transaction.

    Raises:
        errdefs.Internal: as for ``upgrade``.
    """
    await _run(engine, lambda cfg: command.downgrade(cfg, revision))
