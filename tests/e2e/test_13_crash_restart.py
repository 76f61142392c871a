"""Crash safety: kill -9 during a load leaves no half image; restart reconciles files and records."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from testkit.berthd import BerthdProcess
from testkit.fixtures import BIG_IMAGE_REF, big_image_archive, busybox_rootfs_tar


def _dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0


@pytest.mark.needs_root
def test_kill9_during_load_leaves_no_half_image(fresh_berthd: BerthdProcess) -> None:
    archive = big_image_archive()
    d = fresh_berthd
    env = d.docker_env()
    load = subprocess.Popen(["docker", "load", "-i", str(archive)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Kill once a good part of the archive is on disk but before the load can finish.
        deadline = time.monotonic() + 60
        content = d.data_root / "content"
        while time.monotonic() < deadline and _dir_bytes(content) < 60 * 1024 * 1024:
            assert load.poll() is None, "load finished before the crash could be injected"
            time.sleep(0.05)
        d.kill9()
    finally:
        load.wait(timeout=60)
    assert load.returncode != 0

    d.start()
    res = d.docker("image", "inspect", BIG_IMAGE_REF, check=False)
    assert res.returncode != 0 and "No such image" in res.stderr
    assert d.docker("images", "-aq").stdout.strip() == ""
    # Reconcile removed what the crash left: no ingest files, no temp or orphan layers.
    assert list((d.data_root / "content" / "ingest").iterdir()) == []
    layers = d.data_root / "layers"
    if layers.exists():
        assert [p.name for p in layers.iterdir()] == []

    out = d.docker("load", "-i", str(archive)).stdout
    assert f"Loaded image: {BIG_IMAGE_REF}" in out
    info = json.loads(d.docker("image", "inspect", BIG_IMAGE_REF).stdout)[0]
    assert len(info["RootFS"]["Layers"]) == 3


def test_records_survive_restart_and_sigterm(fresh_berthd: BerthdProcess) -> None:
    d = fresh_berthd
    out = d.docker("import", str(busybox_rootfs_tar()), "keep:me").stdout.strip()
    d.docker("tag", "keep:me", "keep:too")
    d.restart()  # SIGTERM, must exit 0, then start on the same roots
    info = json.loads(d.docker("image", "inspect", "keep:me").stdout)[0]
    assert info["Id"] == out
    assert sorted(info["RepoTags"]) == ["keep:me", "keep:too"]
    d.kill9()
    d.start()
    assert json.loads(d.docker("image", "inspect", "keep:too").stdout)[0]["Id"] == out
