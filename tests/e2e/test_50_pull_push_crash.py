"""kill -9 of berthd in the middle of a pull: nothing half-made is visible, verified blobs are reused."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.berthd import BerthdProcess
from testkit.fixtures import big_image_archive
from testkit.registry import RegistryServer

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None or shutil.which("skopeo") is None,
    reason="needs docker-registry and skopeo",
)


@pytest.fixture
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="berth-regk-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_kill9_mid_pull(base: Path) -> None:
    with RegistryServer(base / "reg") as reg:
        ref = f"{reg.host}/big/img:1"
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false",
                        f"docker-archive:{big_image_archive()}", f"docker://{ref}"],
                       check=True, capture_output=True, timeout=300)
        proc = BerthdProcess(base / "d")
        proc.start()
        try:
            staged = proc.data_root / "registry" / "staging" / "blobs" / "sha256"
            puller = threading.Thread(target=proc.docker, args=("pull", ref), kwargs={"check": False})
            puller.start()
            deadline = time.monotonic() + 120
            # The config and the small first layer land first; the big layers are still coming.
            while not (staged.is_dir() and len(list(staged.iterdir())) >= 2):
                assert time.monotonic() < deadline, "no blob was staged"
                time.sleep(0.02)
            kept = sorted(p.name for p in staged.iterdir())
            proc.kill9()
            puller.join(60)
            proc.start()
            assert proc.docker("images", "-q", ref).stdout.strip() == ""
            assert all((staged / name).exists() for name in kept)
            client = proc.api_client()
            try:
                events = list(client.api.pull(ref.rsplit(":", 1)[0], tag="1", stream=True, decode=True))
            finally:
                client.close()
            by_layer: dict[str, list[str]] = {}
            for ev in events:
                assert "error" not in ev, ev
                by_layer.setdefault(ev.get("id", ""), []).append(ev.get("status", ""))
            reused = [name[:12] for name in kept if name[:12] in by_layer]
            assert reused, (kept, by_layer)
            for short in reused:
                assert "Downloading" not in by_layer[short]
            assert proc.docker("images", "-q", ref).stdout.strip() != ""
        finally:
            proc.cleanup()
