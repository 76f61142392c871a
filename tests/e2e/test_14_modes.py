"""Split mode (a process per service, deploy/split.sh) and PostgreSQL state, through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.berthd import BerthdProcess, default_berthd_path
from testkit.fixtures import busybox_rootfs_tar

REPO = Path(__file__).resolve().parents[2]


def _docker(sock: Path, *args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(config)}
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=120,
                           check=True)


@pytest.fixture
def split_root() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="berth-split-", dir="/tmp"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_split_mode_serves_the_same_api(split_root: Path) -> None:
    data, run, sock = split_root / "data", split_root / "run", split_root / "run" / "api.sock"
    cfg = split_root / "cfg"
    cfg.mkdir()
    env = {**os.environ, "BERTHD": str(default_berthd_path())}
    log = (split_root / "split.log").open("w")
    proc = subprocess.Popen(
        [str(REPO / "deploy" / "split.sh"), "--data-root", str(data), "--exec-root", str(run),
         "-H", f"unix://{sock}"], env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None, (split_root / "split.log").read_text()
            assert time.monotonic() < deadline, "gateway socket did not appear"
            time.sleep(0.1)
        assert (run / "images.sock").exists()
        version = json.loads(_docker(sock, "version", "--format", "{{json .Server}}", config=cfg).stdout)
        assert version["ApiVersion"] == "1.50"
        _docker(sock, "import", str(busybox_rootfs_tar()), "split:test", config=cfg)
        out = _docker(sock, "images", "--format", "{{.Repository}}:{{.Tag}}", config=cfg).stdout
        assert out.split() == ["split:test"]
        info = json.loads(_docker(sock, "info", "--format", "{{json .}}", config=cfg).stdout)
        assert info["Images"] == 1
        # berthctl finds the per-service sockets under the exec root.
        res = subprocess.run([str(Path(default_berthd_path()).with_name("berthctl")), "--exec-root",
                              str(run), "images", "ls", "-q"], capture_output=True, text=True,
                             check=True)
        assert len(res.stdout.split()) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            log.close()
    assert proc.returncode == 0, (split_root / "split.log").read_text()
    assert not sock.exists() and not (run / "images.sock").exists()


@pytest.mark.postgres
def test_berthd_on_postgresql(pg_url: str) -> None:
    base = Path(tempfile.mkdtemp(prefix="berth-pg-", dir="/tmp"))
    proc = BerthdProcess(base, extra_args=("--state-url", pg_url))
    try:
        proc.start()
        image_id = proc.docker("import", str(busybox_rootfs_tar()), "pg:one").stdout.strip()
        proc.restart()
        info = json.loads(proc.docker("image", "inspect", "pg:one").stdout)[0]
        assert info["Id"] == image_id
        assert not (proc.data_root / "state.db").exists()  # the records live in PostgreSQL
    finally:
        proc.cleanup()
        shutil.rmtree(base, ignore_errors=True)
