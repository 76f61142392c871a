"""FROM images the daemon does not have: pulled by the build from a loopback registry (and --pull)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.berthd import DockerCLI
from testkit.registry import RegistryServer

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None or shutil.which("skopeo") is None,
    reason="needs docker-registry and skopeo",
)


@pytest.fixture(scope="module")
def seeded(docker_module: DockerCLI) -> Iterator[str]:
    base = Path(tempfile.mkdtemp(prefix="berth-bpull-", dir="/tmp"))
    try:
        with RegistryServer(base / "reg") as reg:
            archive = base / "bb.tar"
            docker_module("save", "-o", str(archive), "busybox:latest")
            ref = f"{reg.host}/lib/frombase:1"
            subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{archive}",
                            f"docker://{ref}"], check=True, capture_output=True, timeout=120)
            yield ref
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def docker_module(berthd: object, busybox_image: str) -> DockerCLI:
    return berthd.docker  # type: ignore[attr-defined, no-any-return]


def test_from_pulls_missing_base(docker: DockerCLI, seeded: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {seeded}\nRUN echo on-pulled-base\n")
    try:
        res = docker("build", "-t", "frompulled", str(tmp_path))
        assert "Pulling from lib/frombase" in res.stdout, res.stdout
        assert "on-pulled-base" in res.stdout and "Successfully tagged frompulled:latest" in res.stdout
        assert docker("image", "inspect", seeded, check=False).returncode == 0
        # --pull asks the registry again even though the base is here now.
        again = docker("build", "--pull", "-t", "frompulled", str(tmp_path)).stdout
        assert "Image is up to date" in again, again
    finally:
        docker("rmi", "-f", "frompulled", seeded, check=False)
