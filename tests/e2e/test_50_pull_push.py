"""Pull and push against Debian's docker-registry on loopback, with the real CLI, docker-py and skopeo."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.berthd import BerthdProcess
from testkit.fixtures import busybox_rootfs_tar
from testkit.registry import RegistryServer, free_port

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None or shutil.which("skopeo") is None,
    reason="needs docker-registry and skopeo",
)

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True,
                          timeout=120).stdout


@pytest.fixture(scope="module")
def tmpdir_m() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="berth-reg-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def rd(tmpdir_m: Path) -> Iterator[BerthdProcess]:
    """A daemon of this module's own, with certs.d in a temp dir and busybox imported."""
    certs = tmpdir_m / "certs.d"
    certs.mkdir()
    proc = BerthdProcess(tmpdir_m / "d", extra_args=["--certs-dir", str(certs)])
    proc.start()
    try:
        tar = busybox_rootfs_tar()
        proc.docker("import", "--change", f"ENV PATH={_PATH}", "--change", 'CMD ["sh"]',
                    str(tar), "busybox:latest")
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture(scope="module")
def certs_dir(tmpdir_m: Path) -> Path:
    return tmpdir_m / "certs.d"


@pytest.fixture(scope="module")
def registry(tmpdir_m: Path) -> Iterator[RegistryServer]:
    with RegistryServer(tmpdir_m / "reg") as reg:
        yield reg


@pytest.fixture(scope="module")
def archive(rd: BerthdProcess, tmpdir_m: Path) -> Path:
    out = tmpdir_m / "busybox.tar"
    rd.docker("save", "-o", str(out), "busybox:latest")
    return out


@pytest.fixture(scope="module")
def seeded(registry: RegistryServer, archive: Path) -> str:
    """busybox pushed by skopeo as <registry>/test/busybox:1."""
    ref = f"{registry.host}/test/busybox:1"
    skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", f"docker://{ref}")
    return ref


def _digest(ref: str) -> str:
    return str(json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))["Digest"])


def test_pull_run_and_up_to_date(rd: BerthdProcess, seeded: str) -> None:
    out = rd.docker("pull", seeded)
    text = out.stdout
    assert "1: Pulling from test/busybox" in text
    assert "Pull complete" in text
    digest = _digest(seeded)
    assert f"Digest: {digest}" in text
    assert f"Status: Downloaded newer image for {seeded}" in text
    run = rd.docker("run", "--rm", seeded, "echo", "pulled-ok")
    assert run.stdout.strip() == "pulled-ok"
    images = rd.docker("images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}").stdout
    assert f"{seeded.rsplit(':', 1)[0]} 1 {digest}" in images
    again = rd.docker("pull", seeded).stdout
    assert f"Status: Image is up to date for {seeded}" in again
    rd.docker("rmi", seeded)


def test_pull_by_digest_records_repo_digest(rd: BerthdProcess, seeded: str) -> None:
    digest = _digest(seeded)
    name = seeded.rsplit(":", 1)[0]
    rd.docker("pull", f"{name}@{digest}")
    info = json.loads(rd.docker("image", "inspect", f"{name}@{digest}").stdout)[0]
    assert f"{name}@{digest}" in info["RepoDigests"]
    rd.docker("rmi", f"{name}@{digest}")


def test_implicit_pull_of_run(rd: BerthdProcess, seeded: str) -> None:
    out = rd.docker("run", "--rm", seeded, "echo", "implicit")
    assert "Unable to find image" in out.stderr
    assert out.stdout.strip().endswith("implicit")
    rd.docker("rmi", seeded)


def test_dockerpy_pull(rd: BerthdProcess, seeded: str) -> None:
    client = rd.api_client()
    try:
        name, tag = seeded.rsplit(":", 1)
        img = client.images.pull(name, tag=tag)
        assert seeded in img.tags
        assert any(d.startswith(name + "@sha256:") for d in img.attrs["RepoDigests"])
        client.images.remove(seeded)
    finally:
        client.close()


def test_push_then_skopeo_and_pull_back(rd: BerthdProcess, registry: RegistryServer) -> None:
    ref = f"{registry.host}/pushed/bb:v1"
    rd.docker("tag", "busybox:latest", ref)
    out = rd.docker("push", ref).stdout
    assert f"The push refers to repository [{ref.rsplit(':', 1)[0]}]" in out
    assert "Pushed" in out
    line = [ln for ln in out.splitlines() if "digest: sha256:" in ln][-1]
    digest = line.split("digest: ")[1].split()[0]
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))
    assert info["Digest"] == digest
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))
    assert raw["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    again = rd.docker("push", ref).stdout
    assert "Layer already exists" in again
    assert digest in again  # the gzip blob was remembered: same manifest
    # skopeo can copy it out whole (every blob verifies)
    skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{registry.dir / 'out'}")
    rd.docker("rmi", ref)
    rd.docker("pull", ref)
    assert rd.docker("run", "--rm", ref, "echo", "round-trip").stdout.strip() == "round-trip"
    rd.docker("rmi", ref)


def test_pull_all_tags(rd: BerthdProcess, registry: RegistryServer, archive: Path) -> None:
    for t in ("a", "b"):
        skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}",
               f"docker://{registry.host}/multi/bb:{t}")
    out = rd.docker("pull", "-a", f"{registry.host}/multi/bb").stdout
    assert f"Status: Downloaded newer image for {registry.host}/multi/bb" in out
    tags = rd.docker("images", "--format", "{{.Tag}}", f"{registry.host}/multi/bb").stdout.split()
    # (<none> rows: digest references of other repositories on the same image id)
    assert sorted(t for t in tags if t != "<none>") == ["a", "b"]
    rd.docker("rmi", f"{registry.host}/multi/bb:a", f"{registry.host}/multi/bb:b")


def test_registry_down_is_a_clear_error(rd: BerthdProcess) -> None:
    ref = f"127.0.0.1:{free_port()}/nothing/here:1"
    out = rd.docker("pull", ref, check=False)
    assert out.returncode != 0
    assert "connection refused" in out.stderr
    assert rd.docker("images", "-q", ref).stdout.strip() == ""


def test_unknown_manifest(rd: BerthdProcess, seeded: str) -> None:
    name = seeded.rsplit(":", 1)[0]
    out = rd.docker("pull", f"{name}:nope", check=False)
    assert out.returncode != 0
    assert "manifest unknown" in out.stderr


def _unique_archive(rd: BerthdProcess, where: Path, name: str) -> Path:
    """A one-layer image no other test has (a file of random bytes), saved as a docker-archive."""
    src = where / f"{name}.rootfs.tar"
    with tarfile.open(src, "w") as tf:
        data = os.urandom(256 << 10)
        ti = tarfile.TarInfo("random.bin")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    rd.docker("import", str(src), f"{name}:1")
    out = where / f"{name}.tar"
    rd.docker("save", "-o", str(out), f"{name}:1")
    rd.docker("rmi", f"{name}:1")
    return out


def test_wrong_blob_fails_and_stores_nothing(rd: BerthdProcess, tmpdir_m: Path) -> None:
    archive = _unique_archive(rd, tmpdir_m, "hostile")
    with RegistryServer(tmpdir_m / "hostile") as reg:
        ref = f"{reg.host}/bad/bb:1"
        skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", f"docker://{ref}")
        raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))
        blob = reg.blob_file(raw["layers"][0]["digest"])
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, one byte off
        blob.write_bytes(bytes(data))
        out = rd.docker("pull", ref, check=False)
        assert out.returncode != 0
        assert "verification failed" in out.stderr
        assert rd.docker("images", "-q", ref).stdout.strip() == ""
        blobs = rd.data_root / "content" / "blobs" / "sha256"
        assert not (blobs / raw["layers"][0]["digest"].removeprefix("sha256:")).exists()


def test_platform_from_index(rd: BerthdProcess, registry: RegistryServer, tmpdir_m: Path) -> None:
    """An index with an amd64 and an arm64 image (told apart by a label); --platform picks."""
    tar = busybox_rootfs_tar()
    digests = {}
    for arch in ("amd64", "arm64"):
        rd.docker("import", "--change", f"LABEL arch={arch}", "--change", 'CMD ["sh"]', str(tar),
                  f"plat:{arch}")
        out = tmpdir_m / f"plat-{arch}.tar"
        rd.docker("save", "-o", str(out), f"plat:{arch}")
        ref = f"{registry.host}/plat/bb:{arch}"
        skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{out}", f"docker://{ref}")
        raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}").encode()
        digests[arch] = (_digest(ref), len(raw), json.loads(raw)["mediaType"])
        rd.docker("rmi", f"plat:{arch}")
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": mt, "digest": d, "size": n, "platform": {"os": "linux", "architecture": arch}}
            for arch, (d, n, mt) in digests.items()
        ],
    }
    body = json.dumps(index).encode()
    req = urllib.request.Request(
        f"http://{registry.host}/v2/plat/bb/manifests/multi", data=body, method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201
    ref = f"{registry.host}/plat/bb:multi"
    rd.docker("pull", "--platform", "linux/arm64", ref)
    labels = json.loads(rd.docker("image", "inspect", ref).stdout)[0]["Config"]["Labels"]
    assert labels == {"arch": "arm64"}
    rd.docker("rmi", ref)
    rd.docker("pull", ref)  # the host's platform
    labels = json.loads(rd.docker("image", "inspect", ref).stdout)[0]["Config"]["Labels"]
    assert labels == {"arch": "amd64"}
    rd.docker("rmi", ref)
    out = rd.docker("pull", "--platform", "linux/s390x", ref, check=False)
    assert out.returncode != 0
    assert "no matching manifest for linux/s390x" in out.stderr


def test_registry_mirror_for_docker_io(tmpdir_m: Path, archive: Path) -> None:
    """`docker pull busybox` goes to the mirror (docker.io itself is switched off: no traffic out)."""
    with RegistryServer(tmpdir_m / "mirror") as mirror:
        skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}",
               f"docker://{mirror.host}/library/busybox:latest")
        proc = BerthdProcess(tmpdir_m / "m", extra_args=["--registry-mirror", f"http://{mirror.host}"],
                             env={"BERTH_REGISTRY_HUB": "0"})
        proc.start()
        try:
            out = proc.docker("pull", "busybox").stdout
            assert "latest: Pulling from library/busybox" in out
            assert "Status: Downloaded newer image for busybox:latest" in out
            digests = json.loads(proc.docker("image", "inspect", "busybox").stdout)[0]["RepoDigests"]
            assert digests and digests[0].startswith("busybox@sha256:")
        finally:
            proc.cleanup()
