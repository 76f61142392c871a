"""Alembic environment: migrates the connection statestore.migrate hands over, or a URL (CLI)."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection, text

from statestore.models import Base

# Any constant works; it only has to be the same for every berth host sharing the database.
_PG_MIGRATION_LOCK = 0x6265727468  # "berth"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Hosts sharing one PostgreSQL may start together: one migrates, the others wait
            # and then find the schema already at head.
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
        context.run_migrations()


async def _run_url(url: str) -> None:
    from statestore.engine import create_engine

    engine = create_engine(url, foreign_keys=False)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


_connection = context.config.attributes.get("connection")
if _connection is not None:
    _run(_connection)
elif context.is_offline_mode():
    raise SystemExit("berth migrations run online only")
else:
    # `alembic -x url=sqlite+aiosqlite:///... revision --autogenerate` for new revisions.
    _url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "BERTH_STATESTORE_URL", ""
    )
    if not _url:
        raise SystemExit("pass -x url=<sqlalchemy url> or set BERTH_STATESTORE_URL")
    asyncio.run(_run_url(_url))
