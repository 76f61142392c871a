"""docker build and docker commit in split mode: images and containers in their own processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.berthd import default_berthd_path, mounts_under
from testkit.fixtures import busybox_rootfs_tar

REPO = Path(__file__).resolve().parents[2]
BRIDGE = "btsplit60"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def split_docker() -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    base = Path(tempfile.mkdtemp(prefix="berth-sb-", dir="/tmp"))
    run, sock = base / "run", base / "run" / "api.sock"
    env = {**os.environ, "BERTHD": str(default_berthd_path())}
    log = (base / "split.log").open("w")
    proc = subprocess.Popen(
        [str(REPO / "deploy" / "split.sh"), "--data-root", str(base / "data"), "--exec-root", str(run),
         "-H", f"unix://{sock}", "--bridge", BRIDGE, "--bip", "10.199.60.1/24",
         "--default-address-pool", "base=10.199.64.0/20,size=24"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None, (base / "split.log").read_text()
            assert time.monotonic() < deadline, "gateway socket did not appear"
            time.sleep(0.1)
        yield base, proc
    finally:
        subprocess.run(["docker", "rm", "-f", *_ids(base)], env=_env(base), capture_output=True,
                       check=False)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for m in sorted(mounts_under(base), key=lambda p: len(str(p)), reverse=True):
            subprocess.run(["umount", "-l", str(m)], check=False)
        # The default bridge and nft table this daemon made (named after --bridge).
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        subprocess.run(["nft", "delete", "table", "ip", f"berth_{BRIDGE}"], capture_output=True,
                       check=False)
        shutil.rmtree(base, ignore_errors=True)


def _env(base: Path) -> dict[str, str]:
    (base / "cfg").mkdir(exist_ok=True)
    return {**os.environ, "DOCKER_HOST": f"unix://{base / 'run' / 'api.sock'}",
            "DOCKER_CONFIG": str(base / "cfg")}


def _ids(base: Path) -> list[str]:
    res = subprocess.run(["docker", "ps", "-aq"], env=_env(base), capture_output=True, text=True,
                         check=False)
    return res.stdout.split()


def _docker(base: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], env=_env(base), capture_output=True, text=True,
                          timeout=180, check=False, input=input)


def test_build_and_commit_split(split_docker: tuple[Path, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    base, _ = split_docker
    res = _docker(base, "import", "-c", f"ENV {PATH_ENV}", str(busybox_rootfs_tar()), "busybox:latest")
    assert res.returncode == 0, res.stderr
    (tmp_path / "f").write_text("split\n")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY f /f\nRUN cat /f > /g && echo run-ok\n")
    res = _docker(base, "build", "-t", "splitbuilt", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "run-ok" in res.stdout and "Successfully tagged splitbuilt:latest" in res.stdout
    again = _docker(base, "build", "-t", "splitbuilt", str(tmp_path))
    assert again.stdout.count("Using cache") == 2, again.stdout
    out = _docker(base, "run", "--name", "sc", "splitbuilt", "sh", "-c", "cat /g; echo more >> /g")
    assert out.stdout == "split\n", out.stderr
    res = _docker(base, "commit", "-c", 'CMD ["cat", "/g"]', "sc", "splitcommitted")
    assert res.returncode == 0, res.stderr
    assert _docker(base, "run", "--rm", "splitcommitted").stdout == "split\nmore\n"
    fail = _docker(base, "build", "-", input="FROM busybox\nRUN exit 4\n")
    assert fail.returncode == 4 and "returned a non-zero code: 4" in fail.stderr
