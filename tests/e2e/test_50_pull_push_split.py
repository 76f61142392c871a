"""Pull and push in split mode: the registry is its own process, registering through images' gRPC."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.berthd import default_berthd_path
from testkit.fixtures import busybox_rootfs_tar
from testkit.registry import RegistryServer

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry")


def _docker(sock: Path, *args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(config)}
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=120,
                          check=True)


@pytest.fixture
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="berth-splitreg-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_split_mode_push_and_pull(base: Path) -> None:
    data, run, sock, cfg = base / "data", base / "run", base / "run" / "api.sock", base / "cfg"
    cfg.mkdir()
    env = {**os.environ, "BERTHD": str(default_berthd_path())}
    with RegistryServer(base / "reg") as reg, (base / "split.log").open("w") as log:
        proc = subprocess.Popen(
            [str(REPO / "deploy" / "split.sh"), "--data-root", str(data), "--exec-root", str(run),
             "-H", f"unix://{sock}", "--certs-dir", str(base / "certs.d")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not sock.exists():
                assert proc.poll() is None, (base / "split.log").read_text()
                assert time.monotonic() < deadline, "gateway socket did not appear"
                time.sleep(0.1)
            assert (run / "registry.sock").exists()
            ref = f"{reg.host}/split/bb:1"
            _docker(sock, "import", "--change", 'CMD ["sh"]', str(busybox_rootfs_tar()), ref, config=cfg)
            out = _docker(sock, "push", ref, config=cfg).stdout
            assert "digest: sha256:" in out
            _docker(sock, "rmi", ref, config=cfg)
            pulled = _docker(sock, "pull", ref, config=cfg).stdout
            assert f"Status: Downloaded newer image for {ref}" in pulled
            digests = _docker(sock, "images", "--digests", "--format", "{{.Digest}}", ref, config=cfg).stdout
            assert digests.strip().startswith("sha256:")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert proc.returncode == 0, (base / "split.log").read_text()
