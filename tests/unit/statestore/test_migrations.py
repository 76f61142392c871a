"""Every revision upgrades, downgrades and upgrades again on SQLite and PostgreSQL, keeping data.

A revision without an entry in DATA_TESTS fails ``test_every_revision_has_a_data_test`` (the
discipline of containerd's TestMigrations): add an insert (run right after upgrading to it) and a
check (run at every later revision, and after downgrading back to it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from statestore import create_engine, open_store
from statestore.migrate import current_revision, downgrade, revisions, upgrade
from statestore.models import Base

pytest_plugins = ["testkit.pytest_plugin"]

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[3]

NODE = "0123456789abcdef0123456789abcdef"
IMG = "sha256:" + "1" * 64
CHAIN = "sha256:" + "2" * 64
CID = "3" * 64
NID = "4" * 64
CONFIG = b'{"architecture":"amd64"}\x00\xff'


@dataclass(frozen=True)
class DataTest:
    """Rows written at a revision, and the check that they are still intact."""

    insert: Callable[[Connection], None]
    check: Callable[[Connection], None]


def _insert_0001(c: Connection) -> None:
    stmts = [
        f"INSERT INTO nodes VALUES ('{NODE}', 'host-a', '2024-01-01T00:00:00Z')",
        f"INSERT INTO object_ids (node_id, id, kind) VALUES ('{NODE}', '{'1' * 64}', 'image')",
        f"INSERT INTO object_ids (node_id, id, kind) VALUES ('{NODE}', '{CID}', 'container')",
        "INSERT INTO img_layers (node_id, chain_id, diff_id, parent, size) "
        f"VALUES ('{NODE}', '{CHAIN}', '{CHAIN}', '', 1234)",
        "INSERT INTO img_image_layers (node_id, image_id, idx, chain_id) "
        f"VALUES ('{NODE}', '{IMG}', 0, '{CHAIN}')",
        "INSERT INTO img_manifest_layers (node_id, image_id, idx, media_type, digest, size) "
        f"VALUES ('{NODE}', '{IMG}', 0, 'application/vnd.oci.image.layer.v1.tar+gzip', "
        f"'sha256:{'5' * 64}', 99)",
        "INSERT INTO img_tags (node_id, ref, image_id) "
        f"VALUES ('{NODE}', 'docker.io/library/busybox:latest', '{IMG}')",
        "INSERT INTO img_digests (node_id, ref, image_id) "
        f"VALUES ('{NODE}', 'docker.io/library/busybox@sha256:{'6' * 64}', '{IMG}')",
        "INSERT INTO ctr_containers (node_id, id, name, image_id, config_json, created, state, "
        "pid, exit_code, started_at, finished_at) "
        f"VALUES ('{NODE}', '{CID}', 'web', '{IMG}', '{{}}', 't0', 'exited', 0, 3, 't1', 't2')",
        "INSERT INTO net_networks (node_id, id, name, driver, config_json, created) "
        f"VALUES ('{NODE}', '{NID}', 'front', 'bridge', '{{}}', 't0')",
        "INSERT INTO vol_volumes (node_id, name, driver, mountpoint, options_json, labels_json, "
        f"created) VALUES ('{NODE}', 'data', 'local', '/v/data/_data', '{{}}', '{{}}', 't0')",
    ]
    # The image row first (children reference it), with binary config bytes as a parameter.
    c.execute(
        text(
            "INSERT INTO img_images (node_id, id, config_json, manifest_digest, "
            "manifest_media_type, manifest_size, parent, created, size, record_created) "
            "VALUES (:n, :id, :cfg, :md, 'application/vnd.oci.image.manifest.v1+json', 512, '', "
            "'2024-01-01T00:00:00Z', 1234, '2024-01-02T00:00:00Z')"
        ),
        {"n": NODE, "id": IMG, "cfg": CONFIG, "md": "sha256:" + "7" * 64},
    )
    for s in stmts:
        c.execute(text(s))


def _check_0001(c: Connection) -> None:
    row = c.execute(text("SELECT config_json, size, manifest_size FROM img_images")).one()
    assert (bytes(row[0]), row[1], row[2]) == (CONFIG, 1234, 512)
    assert c.execute(text("SELECT ref, image_id FROM img_tags")).all() == [
        ("docker.io/library/busybox:latest", IMG)
    ]
    assert c.execute(text("SELECT count(*) FROM img_digests")).scalar() == 1
    assert c.execute(text("SELECT chain_id FROM img_image_layers")).all() == [(CHAIN,)]
    assert c.execute(text("SELECT size FROM img_manifest_layers")).all() == [(99,)]
    assert c.execute(text("SELECT size FROM img_layers")).all() == [(1234,)]
    assert sorted(c.execute(text("SELECT kind FROM object_ids")).scalars()) == [
        "container",
        "image",
    ]
    assert c.execute(text("SELECT name, exit_code FROM ctr_containers")).all() == [("web", 3)]
    assert c.execute(text("SELECT name, driver FROM net_networks")).all() == [("front", "bridge")]
    assert c.execute(text("SELECT mountpoint FROM vol_volumes")).all() == [("/v/data/_data",)]
    assert c.execute(text("SELECT hostname FROM nodes")).all() == [("host-a",)]


SNAP_KEY = "8" * 64
SNAP_LABELS = '{"com.example.role": "web"}'


def _insert_0002(c: Connection) -> None:
    # A snapshot of the 0001 image (the rows of earlier revisions are present by now).
    c.execute(
        text(
            "INSERT INTO img_snapshots (node_id, key, image_id, chain_ids, created, labels) "
            "VALUES (:n, :k, :img, :chains, '2024-01-03T00:00:00Z', :labels)"
        ),
        {"n": NODE, "k": SNAP_KEY, "img": IMG, "chains": f'["{CHAIN}"]', "labels": SNAP_LABELS},
    )


def _check_0002(c: Connection) -> None:
    assert c.execute(
        text("SELECT node_id, key, image_id, chain_ids, created, labels FROM img_snapshots")
    ).all() == [(NODE, SNAP_KEY, IMG, f'["{CHAIN}"]', "2024-01-03T00:00:00Z", SNAP_LABELS)]


STATE_JSON = '{"State": {"Status": "exited", "ExitCode": 3}, "RestartCount": 2}'


def _insert_0003(c: Connection) -> None:
    # The 0001 container got the column's default; give it a run state.
    assert c.execute(text("SELECT state_json FROM ctr_containers")).scalar() == "{}"
    c.execute(text("UPDATE ctr_containers SET state_json = :st WHERE name = 'web'"), {"st": STATE_JSON})


def _check_0003(c: Connection) -> None:
    assert c.execute(text("SELECT name, state_json FROM ctr_containers")).all() == [("web", STATE_JSON)]


def _insert_0004(c: Connection) -> None:
    # The 0001 volume got the column's default; mark it anonymous and give it a reference.
    assert c.execute(text("SELECT name, anonymous FROM vol_volumes")).all() == [("data", False)]
    c.execute(text("UPDATE vol_volumes SET anonymous = :t WHERE name = 'data'"), {"t": True})
    c.execute(text("INSERT INTO vol_refs (node_id, volume_name, container_id) VALUES (:n, :v, :c)"),
              {"n": NODE, "v": "data", "c": CID})


def _check_0004(c: Connection) -> None:
    assert c.execute(text("SELECT name, anonymous FROM vol_volumes")).all() == [("data", True)]
    assert c.execute(text("SELECT volume_name, container_id FROM vol_refs")).all() == [
        ("data", CID)]


EP_CONFIG = '{"aliases": ["db"], "ipv4_address": "10.1.0.5"}'
SB_REQUEST = '{"network_mode": "front"}'


def _insert_0005(c: Connection) -> None:
    # The 0001 container joins the 0001 network: an endpoint and its sandbox.
    c.execute(text("INSERT INTO net_endpoints (node_id, network_id, container_id, container_name, "
                   "endpoint_id, config_json, state_json) VALUES (:n, :net, :c, 'web', :ep, :cfg, '{}')"),
              {"n": NODE, "net": NID, "c": CID, "ep": "9" * 64, "cfg": EP_CONFIG})
    c.execute(text("INSERT INTO net_sandboxes (node_id, container_id, request_json, state_json) "
                   "VALUES (:n, :c, :req, '{}')"), {"n": NODE, "c": CID, "req": SB_REQUEST})


def _check_0005(c: Connection) -> None:
    assert c.execute(text("SELECT network_id, container_name, config_json FROM net_endpoints")).all() == [
        (NID, "web", EP_CONFIG)]
    assert c.execute(text("SELECT container_id, request_json FROM net_sandboxes")).all() == [
        (CID, SB_REQUEST)]


DATA_TESTS: dict[str, DataTest] = {
    "0001": DataTest(_insert_0001, _check_0001),
    "0002": DataTest(_insert_0002, _check_0002),
    "0003": DataTest(_insert_0003, _check_0003),
    "0004": DataTest(_insert_0004, _check_0004),
    "0005": DataTest(_insert_0005, _check_0005),
}


def test_every_revision_has_a_data_test() -> None:
    assert set(DATA_TESTS) == set(revisions()), "add a DataTest for each new revision"


def test_revisions_are_sequential() -> None:
    revs = revisions()
    assert revs == [f"{i:04d}" for i in range(1, len(revs) + 1)]


def _schema_diff(c: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(c), Base.metadata))


def _tables(c: Connection) -> set[str]:
    return set(inspect(c).get_table_names())


async def _sync(engine: AsyncEngine, fn: Callable[[Connection], T]) -> T:
    async with engine.begin() as conn:
        return await conn.run_sync(fn)


@pytest.mark.anyio
async def test_upgrade_downgrade_upgrade_keeps_data(state_url: str) -> None:
    revs = revisions()
    engine = create_engine(state_url, foreign_keys=False, poolclass=NullPool)
    try:
        # Up one revision at a time: each revision's data lands and all earlier data survives.
        for i, rev in enumerate(revs):
            await upgrade(engine, rev)
            assert await current_revision(engine) == rev
            await _sync(engine, DATA_TESTS[rev].insert)
            for earlier in revs[: i + 1]:
                await _sync(engine, DATA_TESTS[earlier].check)
        # At head the migrations build exactly the schema the models declare.
        assert await _sync(engine, _schema_diff) == []
        # Down one at a time: data of the revisions still applied survives.
        for i in range(len(revs) - 1, -1, -1):
            await downgrade(engine, revs[i - 1] if i else "base")
            for earlier in revs[:i]:
                await _sync(engine, DATA_TESTS[earlier].check)
        assert await current_revision(engine) is None
        assert await _sync(engine, _tables) <= {"alembic_version"}
        # And up again from nothing.
        await upgrade(engine, "head")
        assert await _sync(engine, _schema_diff) == []
        for rev in revs:
            await _sync(engine, DATA_TESTS[rev].insert)
            await _sync(engine, DATA_TESTS[rev].check)
    finally:
        await engine.dispose()


_OPEN = """
import sys, anyio
from statestore import open_store
async def main() -> None:
    store = await open_store(sys.argv[1])
    await store.aclose()
anyio.run(main)
"""


@pytest.mark.anyio
@pytest.mark.postgres
async def test_hosts_opening_together_migrate_once(pg_url: str) -> None:
    """Several berth processes starting at once on one PostgreSQL: one migrates, the rest wait."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in ("libs", "services"))}
    codes: list[tuple[int, bytes]] = []

    async def open_one() -> None:
        res = await anyio.run_process(
            [sys.executable, "-c", _OPEN, pg_url], env=env, check=False
        )
        codes.append((res.returncode, res.stderr[-2000:]))

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(open_one)
    assert [c for c, _ in codes] == [0, 0, 0, 0], codes


@pytest.mark.anyio
async def test_opens_in_one_process_run_one_at_a_time(state_url: str) -> None:
    """alembic keeps the running migration in a global; concurrent opens must not interleave."""
    stores = []

    async def open_one() -> None:
        stores.append(await open_store(state_url))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(open_one)
    for s in stores:
        await s.aclose()
    assert len(stores) == 4
