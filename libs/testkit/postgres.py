"""A throwaway PostgreSQL 15 server for tests, from Debian's packages, on a unix socket only.

Example::

    with postgres_server() as pg:
        url = pg.create_database("t1")   # postgresql+asyncpg://postgres@/t1?host=/tmp/berth-pg-…

Resource handling: the server runs from a fresh temp dir (data, socket, log); leaving the
``with`` block stops it (``pg_ctl stop -m immediate``) and removes the dir. The server never
listens on TCP. Durability settings are off: the data is thrown away anyway.

Error handling: ``PostgresUnavailable`` when the binaries are missing; ``RuntimeError`` with the
server log when initdb or the start fails.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_BIN_DIR", "PgServer", "PostgresUnavailable", "postgres_server"]

DEFAULT_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """Raised when the PostgreSQL server binaries are not installed."""


@dataclass(frozen=True, slots=True)
class PgServer:
    """A running throwaway server; connect as role ``postgres`` through ``socket_dir``."""

    bin_dir: Path
    socket_dir: Path

    def url(self, database: str) -> str:
        """Return the asyncpg URL of ``database`` on this server."""
        return f"postgresql+asyncpg://postgres@/{database}?host={self.socket_dir}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL (blocking).

        Raises:
            ValueError: ``name`` is not a plain lowercase identifier.
            subprocess.CalledProcessError: createdb failed (e.g. the name exists).
        """
        if not _DB_NAME.match(name):
            raise ValueError(f"bad database name {name!r}")
        subprocess.run(
            [str(self.bin_dir / "createdb"), "-h", str(self.socket_dir), "-U", "postgres", name],
            check=True,
            capture_output=True,
        )
        return self.url(name)


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@contextmanager
def postgres_server(bin_dir: Path | None = None) -> Iterator[PgServer]:
    """Start a fresh server, yield it, then stop it and delete its files (blocking).

    Args:
        bin_dir: where ``initdb``/``pg_ctl`` live; default ``$BERTH_TEST_PG_BIN`` or
            ``/usr/lib/postgresql/15/bin``.

    Raises:
        PostgresUnavailable: the binaries are missing (install ``postgresql-15``), or we run as
            root and there is no ``postgres`` user to run the server as.
        RuntimeError: initdb or the start failed; the message carries the server log.
    """
    bin_dir = bin_dir or Path(os.environ.get("BERTH_TEST_PG_BIN", str(DEFAULT_BIN_DIR)))
    missing = [b for b in ("initdb", "pg_ctl", "createdb") if not (bin_dir / b).is_file()]
    if missing:
        raise PostgresUnavailable(
            f"PostgreSQL server binaries {missing} not found in {bin_dir}: install Debian's "
            "postgresql-15 package (`make test` does) or set BERTH_TEST_PG_BIN"
        )
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as e:
            raise PostgresUnavailable("running as root but there is no 'postgres' user") from e

    root = Path(tempfile.mkdtemp(prefix="berth-pg-"))  # short: socket paths max 107 bytes
    data, log = root / "data", root / "server.log"
    try:
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        _run(
            _as_postgres(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--locale=C", "--no-sync"]
            ),
            log,
        )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )
        _run(
            _as_postgres(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                 "start"]
            ),
            log,
        )
        try:
            yield PgServer(bin_dir=bin_dir, socket_dir=root)
        finally:
            subprocess.run(
                _as_postgres(
                    [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
                ),
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(argv: list[str], log: Path) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        server_log = log.read_text() if log.exists() else ""
        raise RuntimeError(
            f"{' '.join(argv)} failed ({res.returncode}):\n{res.stdout}{res.stderr}{server_log}"
        )
