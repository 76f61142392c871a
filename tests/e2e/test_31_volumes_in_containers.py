"""Volumes in containers through the real docker CLI: -v, --mount, --volumes-from, copy-up, rm -v."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.berthd import DockerCLI
from testkit.fixtures import busybox_rootfs_tar


def _name(prefix: str = "c") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def made(docker: DockerCLI) -> Iterator[tuple[list[str], list[str]]]:
    """(containers, volumes) the test creates; removed afterwards, containers first."""
    ctrs: list[str] = []
    vols: list[str] = []
    yield ctrs, vols
    if ctrs:
        docker("rm", "-f", "-v", *ctrs, check=False)
    if vols:
        docker("volume", "rm", "-f", *vols, check=False)


def _mounts(docker: DockerCLI, ctr: str) -> list[dict[str, Any]]:
    doc = json.loads(docker("inspect", ctr).stdout)[0]
    mounts: list[dict[str, Any]] = doc["Mounts"]
    return mounts


def _volume_exists(docker: DockerCLI, name: str) -> bool:
    return docker("volume", "inspect", name, check=False).returncode == 0


def test_named_volume_survives_rm_and_is_in_use(
    docker: DockerCLI, busybox_image: str, made: tuple[list[str], list[str]]
) -> None:
    ctrs, vols = made
    vol, a, b = _name("v"), _name(), _name()
    ctrs += [a, b]
    vols.append(vol)
    docker("run", "--name", a, "-v", f"{vol}:/data", "busybox", "sh", "-c", "echo persisted > /data/f")
    (mp,) = _mounts(docker, a)
    mountpoint = json.loads(docker("volume", "inspect", vol).stdout)[0]["Mountpoint"]
    assert mp == {"Type": "volume", "Name": vol, "Source": mountpoint, "Destination": "/data",
                  "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""}  # fmt: skip
    res = docker("volume", "rm", vol, check=False)
    assert res.returncode == 1 and "volume is in use" in res.stderr, res.stderr
    docker("rm", "-v", a)
    assert _volume_exists(docker, vol)  # rm -v never removes a named volume
    out = docker("run", "--name", b, "-v", f"{vol}:/data", "busybox", "cat", "/data/f").stdout
    assert out == "persisted\n"
    res = docker("run", "--rm", "-v", f"{vol}:/data:ro", "busybox", "touch", "/data/g", check=False)
    assert res.returncode != 0 and "Read-only file system" in res.stderr
    docker("rm", b)
    assert docker("volume", "rm", vol).stdout.strip() == vol


def test_anonymous_volume_rm_v_rm_and_autoremove(
    docker: DockerCLI, busybox_image: str, made: tuple[list[str], list[str]]
) -> None:
    ctrs, vols = made
    a, b, c = _name(), _name(), _name()
    ctrs += [a, b, c]
    docker("run", "--name", a, "-v", "/data", "busybox", "true")
    (mp,) = _mounts(docker, a)
    anon = mp["Name"]
    vols.append(anon)
    assert mp["Type"] == "volume" and len(anon) == 64 and mp["Destination"] == "/data" and mp["RW"]
    docker("rm", "-v", a)
    assert not _volume_exists(docker, anon)

    docker("run", "--name", b, "-v", "/data", "busybox", "true")
    kept = _mounts(docker, b)[0]["Name"]
    vols.append(kept)
    docker("rm", b)
    assert _volume_exists(docker, kept)

    before = set(docker("volume", "ls", "-q").stdout.split())
    docker("run", "--rm", "--name", c, "-v", "/data", "busybox", "sh", "-c", "echo x > /data/x")
    after = set(docker("volume", "ls", "-q").stdout.split())
    assert after - before == set()


def test_mount_flag_tmpfs_bind_and_errors(
    docker: DockerCLI, busybox_image: str, made: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    out = docker("run", "--rm", "--mount", "type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770",
                 "busybox", "sh", "-c", "grep ' /t ' /proc/mounts; stat -c %a /t").stdout  # fmt: skip
    assert "tmpfs /t tmpfs" in out and "size=1024k" in out and out.endswith("1770\n"), out
    res = docker("run", "--rm", "--mount", "type=bind,source=/x-berth-missing,target=/x", "busybox", "true",
                 check=False)  # fmt: skip
    assert res.returncode != 0
    assert ('invalid mount config for type "bind": bind source path does not exist: /x-berth-missing'
            in res.stderr), res.stderr  # fmt: skip
    (tmp_path / "hello").write_text("from host\n")
    out = docker("run", "--rm", "--mount", f"type=bind,source={tmp_path},target=/h,readonly",
                 "busybox", "sh", "-c", "cat /h/hello; touch /h/x || echo ro").stdout  # fmt: skip
    assert out == "from host\nro\n"
    ctrs, vols = made
    vol, ctr = _name("v"), _name()
    ctrs.append(ctr)
    vols.append(vol)
    docker("create", "--name", ctr, "--mount", f"type=volume,source={vol},target=/m,readonly,"
           "volume-label=role=test", "busybox", "true")  # fmt: skip
    (mp,) = _mounts(docker, ctr)
    assert (mp["Type"], mp["Name"], mp["RW"], mp["Mode"], mp["Driver"]) == ("volume", vol, False, "", "local")
    assert json.loads(docker("volume", "inspect", vol).stdout)[0]["Labels"] == {"role": "test"}


def test_volumes_from(docker: DockerCLI, busybox_image: str, made: tuple[list[str], list[str]]) -> None:
    ctrs, vols = made
    src, vol = _name(), _name("v")
    ctrs.append(src)
    vols.append(vol)
    docker("run", "--name", src, "-v", f"{vol}:/shared", "busybox", "sh", "-c", "echo hi > /shared/f")
    assert docker("ps", "-aq", "--no-trunc", "--filter", f"volume={vol}").stdout.split() == [
        docker("inspect", "-f", "{{.Id}}", src).stdout.strip()]
    assert docker("run", "--rm", "--volumes-from", src, "busybox", "cat", "/shared/f").stdout == "hi\n"
    res = docker("run", "--rm", "--volumes-from", f"{src}:ro", "busybox", "touch", "/shared/g", check=False)
    assert res.returncode != 0 and "Read-only file system" in res.stderr


def _data_image_tar(path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(busybox_rootfs_tar()) as src, tarfile.open(fileobj=buf, mode="w") as out:
        for m in src.getmembers():
            out.addfile(m, src.extractfile(m) if m.isfile() else None)
        d = tarfile.TarInfo("data")
        d.type, d.mode, d.uid, d.gid = tarfile.DIRTYPE, 0o750, 4321, 8765
        out.addfile(d)
        f = tarfile.TarInfo("data/file")
        f.mode, f.uid, f.gid, f.size = 0o604, 4321, 8765, 6
        out.addfile(f, io.BytesIO(b"image\n"))
    path.write_bytes(buf.getvalue())


def test_copy_up_from_image(
    docker: DockerCLI, busybox_image: str, made: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    ctrs, vols = made
    tar = tmp_path / "img.tar"
    _data_image_tar(tar)
    tag = f"berth-e2e-data:{uuid.uuid4().hex[:8]}"
    vtag = f"berth-e2e-datavol:{uuid.uuid4().hex[:8]}"
    docker("import", str(tar), tag)
    docker("import", "--change", "VOLUME /data", str(tar), vtag)
    try:
        fresh, nocopy, ctr = _name("v"), _name("v"), _name()
        vols += [fresh, nocopy]
        ctrs.append(ctr)
        script = "stat -c '%a %u:%g' /data /data/file; cat /data/file"
        want = "750 4321:8765\n604 4321:8765\nimage\n"
        assert docker("run", "--rm", "-v", f"{fresh}:/data", tag, "sh", "-c", script).stdout == want
        # The volume kept the copy: seen from an image without /data/file.
        out = docker("run", "--rm", "-v", f"{fresh}:/d", "busybox", "stat", "-c", "%a %u:%g",
                     "/d/file").stdout  # fmt: skip
        assert out == "604 4321:8765\n"
        out = docker("run", "--rm", "--mount", f"type=volume,source={nocopy},target=/data,volume-nocopy",
                     tag, "ls", "-A", "/data").stdout  # fmt: skip
        assert out == ""
        # The image's VOLUME /data: an anonymous volume filled from the image.
        assert docker("run", "--name", ctr, vtag, "sh", "-c", script).stdout == want
        (mp,) = _mounts(docker, ctr)
        assert mp["Type"] == "volume" and mp["Destination"] == "/data" and len(mp["Name"]) == 64
        docker("rm", "-v", ctr)
        assert not _volume_exists(docker, mp["Name"])
    finally:
        docker("rmi", "-f", tag, vtag, check=False)
