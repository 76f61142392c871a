"""docker diff, docker export and docker cp (archive API) through the real docker CLI and docker-py.

The security tests plant symlinks in containers (to "/", to "../../../etc", to a host directory)
and hostile tars, then hash a host tree before and after: nothing outside the container may change.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker as dockerpy_mod
import pytest

from testkit.berthd import BerthdProcess, DockerCLI


def _name(prefix: str = "cp") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def made(docker: DockerCLI) -> Iterator[tuple[list[str], list[str]]]:
    """(containers, volumes) the test creates; removed afterwards."""
    ctrs: list[str] = []
    vols: list[str] = []
    yield ctrs, vols
    if ctrs:
        docker("rm", "-f", "-v", *ctrs, check=False)
    if vols:
        docker("volume", "rm", "-f", *vols, check=False)


@pytest.fixture
def host_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="berth-cp-host-", dir="/tmp"))
    (d / "secret").write_text("host secret\n")
    (d / "sub").mkdir()
    (d / "sub" / "f").write_text("host file\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{p}\0{st.st_mode:o}\0{st.st_uid}\0{st.st_gid}\0{st.st_mtime_ns}\0".encode())
            if os.path.isfile(p) and not os.path.islink(p):
                h.update(Path(p).read_bytes())
    return h.hexdigest()


def _run(docker: DockerCLI, name: str, *args: str) -> None:
    docker("run", "-d", "--name", name, *args)


def _wait_for(docker: DockerCLI, name: str, path: str) -> None:
    for _ in range(200):
        if docker("exec", name, "test", "-e", path, check=False).returncode == 0:
            return
        time.sleep(0.05)
    pytest.fail(f"{path} never appeared in {name}")


def _merged_dir(docker: DockerCLI, name: str) -> str:
    doc = json.loads(docker("inspect", name).stdout)[0]
    return str(doc["GraphDriver"]["Data"]["MergedDir"])


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def _untar(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf}


# --- diff ---------------------------------------------------------------------------------------


def test_diff_running_and_stopped(
    docker: DockerCLI, dockerpy: Any, busybox_image: str, made: tuple[list[str], list[str]]
) -> None:
    ctrs, _ = made
    name = _name()
    ctrs.append(name)
    _run(docker, name, "busybox", "sh", "-c",
         "touch /tmp/x; rm /bin/ls; mkdir /newdir; echo hi > /newdir/f; echo >> /etc/hosts; sleep 1000")
    _wait_for(docker, name, "/newdir/f")
    expected = "C /bin\nD /bin/ls\nA /newdir\nA /newdir/f\nC /tmp\nA /tmp/x\n"
    assert docker("diff", name).stdout == expected  # no /etc/hosts, /etc/hostname, /dev, /proc
    docker("stop", "-t", "0", name)
    assert docker("diff", name).stdout == expected
    changes = dockerpy.containers.get(name).diff()
    assert {"Path": "/bin/ls", "Kind": 2} in changes and {"Path": "/tmp/x", "Kind": 1} in changes
    assert {"Path": "/bin", "Kind": 0} in changes
    # A fresh container has no changes: moby answers null.
    fresh = _name()
    ctrs.append(fresh)
    docker("create", "--name", fresh, "busybox")
    assert docker("diff", fresh).stdout == ""
    assert dockerpy.containers.get(fresh).diff() is None
    res = docker("diff", "nosuchcontainer-x", check=False)
    assert res.returncode == 1 and "No such container: nosuchcontainer-x" in res.stderr


# --- export -------------------------------------------------------------------------------------


def test_export_running_and_created(
    docker: DockerCLI, berthd: BerthdProcess, busybox_image: str,
    made: tuple[list[str], list[str]], tmp_path: Path,
) -> None:
    ctrs, vols = made
    name, vol = _name(), _name("v")
    ctrs.append(name)
    vols.append(vol)
    _run(docker, name, "-v", f"{vol}:/data", "busybox", "sh", "-c",
         "echo exported > /exported; echo secret > /data/in-volume; sleep 1000")
    _wait_for(docker, name, "/data/in-volume")
    out = tmp_path / "ctr.tar"
    docker("export", "-o", str(out), name)
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        assert {"bin/sh", "etc/passwd", "exported", "data"} <= names
        assert "data/in-volume" not in names  # volume contents are not exported (as Docker)
        f = tf.extractfile("exported")
        assert f is not None and f.read() == b"exported\n"
    # docker export ctr | tar t
    piped = subprocess.run(f"docker export {name} | tar t", shell=True, env=berthd.docker_env(),
                           capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert "bin/busybox" in piped.stdout.split()
    # A container that never ran: its rootfs is mounted for the export and unmounted after.
    created = _name()
    ctrs.append(created)
    docker("create", "--name", created, "busybox")
    merged = _merged_dir(docker, created)
    res = docker("export", created, text=False)
    assert "bin/busybox" in _untar(res.stdout)
    assert not _mounted(merged)


# --- cp round trips -----------------------------------------------------------------------------


def test_cp_both_ways(
    docker: DockerCLI, busybox_image: str, made: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    ctrs, _ = made
    name = _name()
    ctrs.append(name)
    _run(docker, name, "busybox", "sleep", "1000")
    src = tmp_path / "hello.txt"
    src.write_text("hello from host\n")
    docker("cp", str(src), f"{name}:/tmp/")
    assert docker("exec", name, "cat", "/tmp/hello.txt").stdout == "hello from host\n"
    docker("cp", str(src), f"{name}:/tmp/renamed.txt")  # a new name in an existing dir
    assert docker("exec", name, "cat", "/tmp/renamed.txt").stdout == "hello from host\n"
    # A directory, both ways.
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "deep.txt").write_text("deep\n")
    os.symlink("a/b/deep.txt", tree / "link")
    docker("cp", str(tree), f"{name}:/tmp")  # into an existing dir: /tmp/tree
    assert docker("exec", name, "cat", "/tmp/tree/a/b/deep.txt").stdout == "deep\n"
    assert docker("exec", name, "readlink", "/tmp/tree/link").stdout.strip() == "a/b/deep.txt"
    docker("cp", str(tree), f"{name}:/opt")  # a new name: the dir becomes /opt
    assert docker("exec", name, "cat", "/opt/a/b/deep.txt").stdout == "deep\n"
    back = tmp_path / "back"
    docker("cp", f"{name}:/tmp/tree", str(back))
    assert (back / "a" / "b" / "deep.txt").read_text() == "deep\n"
    assert os.readlink(back / "link") == "a/b/deep.txt"
    # Contents only, with a trailing "/.".
    dot = tmp_path / "dot"
    dot.mkdir()
    docker("cp", f"{name}:/opt/.", str(dot))
    assert (dot / "a" / "b" / "deep.txt").exists()
    # A file out, and a tar on stdout.
    docker("cp", f"{name}:/etc/passwd", str(tmp_path / "passwd"))
    expected = docker("exec", name, "cat", "/etc/passwd").stdout.encode()
    assert (tmp_path / "passwd").read_bytes() == expected
    res = docker("cp", f"{name}:/etc/passwd", "-", text=False)
    members = _untar(res.stdout)
    assert list(members) == ["passwd"] and members["passwd"].size == len(expected)
    # Missing paths: Docker's text.
    res = docker("cp", f"{name}:/nope", str(tmp_path / "x"), check=False)
    assert res.returncode == 1
    assert f"Could not find the file /nope in container {name}" in res.stderr


def test_archive_api_with_dockerpy(
    dockerpy: Any, docker: DockerCLI, busybox_image: str, made: tuple[list[str], list[str]]
) -> None:
    ctrs, _ = made
    name = _name()
    ctrs.append(name)
    _run(docker, name, "busybox", "sh", "-c", "ln -s /etc /etclink; sleep 1000")
    _wait_for(docker, name, "/etclink")
    ctr = dockerpy.containers.get(name)
    stream, stat = ctr.get_archive("/etc/passwd")
    data = b"".join(stream)
    assert stat["name"] == "passwd" and stat["mode"] == 0o644 and stat["linkTarget"] == ""
    assert stat["size"] == _untar(data)["passwd"].size
    assert stat["mtime"].endswith("Z")
    _, st = ctr.get_archive("/etc")
    assert st["mode"] & (1 << 31) and st["name"] == "etc"
    _, st = ctr.get_archive("/etclink")
    assert st["mode"] & (1 << 27) and st["linkTarget"] == "/etc"
    with pytest.raises(dockerpy_mod.errors.NotFound) as e:
        ctr.get_archive("/does/not/exist")
    assert "Could not find the file /does/not/exist in container" in str(e.value)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("put.txt")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"put"))
    assert ctr.put_archive("/tmp", buf.getvalue())
    assert docker("exec", name, "cat", "/tmp/put.txt").stdout == "put"
    with pytest.raises(dockerpy_mod.errors.APIError) as e:
        ctr.put_archive("/etc/passwd", buf.getvalue())
    assert e.value.response.status_code == 400 and "extraction point is not a directory" in str(e.value)
    with pytest.raises(dockerpy_mod.errors.NotFound):
        ctr.put_archive("/no/such/dir", buf.getvalue())
    # HEAD answers with the stat header only.
    resp = dockerpy.api.head(dockerpy.api._url("/containers/{0}/archive", name),
                              params={"path": "/etclink"})  # fmt: skip
    assert resp.status_code == 200 and "X-Docker-Container-Path-Stat" in resp.headers
    resp = dockerpy.api.head(dockerpy.api._url("/containers/{0}/archive", name),
                              params={"path": "/nope"})  # fmt: skip
    assert resp.status_code == 404


def test_events_of_archive_and_export(
    docker: DockerCLI, dockerpy: Any, busybox_image: str, made: tuple[list[str], list[str]]
) -> None:
    ctrs, _ = made
    name = _name()
    ctrs.append(name)
    docker("create", "--name", name, "busybox")
    since = time.time() - 1
    ctr = dockerpy.containers.get(name)
    b"".join(ctr.get_archive("/etc/passwd")[0])
    ctr.put_archive("/tmp", _small_tar("e.txt", b"e"))
    b"".join(ctr.export())
    dockerpy.api.head(dockerpy.api._url("/containers/{0}/archive", name), params={"path": "/"})
    until = time.time() + 1
    out = docker("events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--filter",
                 f"container={name}", "--format", "{{.Action}}").stdout.split()  # fmt: skip
    # moby: archive-path on GET, extract-to-dir on PUT, export on export; nothing on HEAD.
    assert out == ["create", "archive-path", "extract-to-dir", "export"]


def _small_tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --- mounts and stopped containers --------------------------------------------------------------


def test_cp_into_volumes_binds_and_stopped_containers(
    docker: DockerCLI, busybox_image: str, made: tuple[list[str], list[str]], tmp_path: Path,
    host_dir: Path,
) -> None:
    ctrs, vols = made
    name, vol, rovol = _name(), _name("v"), _name("v")
    ctrs.append(name)
    vols += [vol, rovol]
    _run(docker, name, "-v", f"{vol}:/data", "-v", f"{host_dir}:/bind",
         "--mount", f"type=volume,src={rovol},dst=/ro,readonly", "busybox", "sleep", "1000")
    src = tmp_path / "f.txt"
    src.write_text("into the volume\n")
    docker("cp", str(src), f"{name}:/data/")
    mountpoint = json.loads(docker("volume", "inspect", vol).stdout)[0]["Mountpoint"]
    assert (Path(mountpoint) / "f.txt").read_text() == "into the volume\n"
    docker("cp", str(src), f"{name}:/bind/")
    assert (host_dir / "f.txt").read_text() == "into the volume\n"
    res = docker("cp", str(src), f"{name}:/ro/", check=False)
    assert res.returncode == 1 and "mounted volume is marked read-only" in res.stderr
    # Out of a volume too.
    docker("cp", f"{name}:/data/f.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "into the volume\n"
    # The container stopped: volumes still land in the volume.
    docker("stop", "-t", "0", name)
    src.write_text("while stopped\n")
    docker("cp", str(src), f"{name}:/data/stopped.txt")
    assert (Path(mountpoint) / "stopped.txt").read_text() == "while stopped\n"
    # A container that never ran: its rootfs is mounted for the copy, unmounted after.
    created = _name()
    ctrs.append(created)
    docker("create", "--name", created, "busybox", "cat", "/in.txt")
    merged = _merged_dir(docker, created)
    docker("cp", str(src), f"{created}:/in.txt")
    assert not _mounted(merged)
    assert docker("start", "-a", created).stdout == "while stopped\n"


def test_cp_ownership(
    docker: DockerCLI, busybox_image: str, made: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    """Without -a the archive's ids are kept (Docker); -a gives the container user's ids."""
    ctrs, _ = made
    name = _name()
    ctrs.append(name)
    # NOTE: a user name ("-u nobody") is refused at create by the containers service today.
    _run(docker, name, "-u", "65534:65534", "busybox", "sleep", "1000")
    src = tmp_path / "owned.txt"
    src.write_text("x")
    os.chown(src, 1234, 4321)
    docker("cp", str(src), f"{name}:/tmp/kept.txt")
    assert docker("exec", name, "stat", "-c", "%u:%g", "/tmp/kept.txt").stdout.strip() == "1234:4321"
    docker("cp", "-a", str(src), f"{name}:/tmp/archive.txt")
    assert docker("exec", name, "stat", "-c", "%u:%g", "/tmp/archive.txt").stdout.strip() == "65534:65534"


# --- security -----------------------------------------------------------------------------------


def test_symlinks_in_the_container_never_reach_the_host(
    docker: DockerCLI, busybox_image: str, made: tuple[list[str], list[str]], tmp_path: Path,
    host_dir: Path,
) -> None:
    ctrs, _ = made
    name = _name()
    ctrs.append(name)
    up = "../" * 12
    script = (f"ln -s / /rootlink; ln -s ../../../etc /etclink; ln -s {host_dir} /hostlink; "
              f"ln -s {up}{str(host_dir).lstrip('/')} /hostlink2; mkdir -p /d/e; "
              f"ln -s {up}etc /d/e/up; sleep 1000")  # fmt: skip
    _run(docker, name, "busybox", "sh", "-c", script)
    _wait_for(docker, name, "/d/e/up")
    before = _tree_hash(host_dir)
    host_etc = {p: Path(p).read_bytes() for p in ("/etc/passwd", "/etc/hostname") if Path(p).exists()}
    src = tmp_path / "payload"
    src.write_text("payload\n")
    # Into a link to "/": the container's root.
    docker("cp", str(src), f"{name}:/rootlink/tmp/")
    assert docker("exec", name, "cat", "/tmp/payload").stdout == "payload\n"
    docker("cp", str(src), f"{name}:/d/e/up/")
    assert docker("exec", name, "cat", "/etc/payload").stdout == "payload\n"
    # Into links naming the host directory: they resolve inside the container, where it is missing.
    for link in ("/hostlink/", "/hostlink2/", "/hostlink/sub/"):
        res = docker("cp", str(src), f"{name}:{link}", check=False)
        assert res.returncode != 0, link
    # Out of them: the container's files, never the host's.
    container_passwd = docker("exec", name, "cat", "/etc/passwd").stdout.encode()
    for path in ("/etclink/passwd", "/rootlink/etc/passwd", "/d/e/up/passwd", "/../../../etc/passwd"):
        res = docker("cp", f"{name}:{path}", "-", text=False)
        f = tarfile.open(fileobj=io.BytesIO(res.stdout)).extractfile("passwd")
        assert f is not None and f.read() == container_passwd, path
    for path in ("/hostlink/secret", "/hostlink2/secret", "/hostlink2/sub/f"):
        res = docker("cp", f"{name}:{path}", "-", check=False, text=False)
        assert res.returncode == 1 and b"Could not find the file" in res.stderr, path
    # Whole-tree copies of the link dirs stay in the container too.
    out = tmp_path / "out"
    out.mkdir()
    docker("cp", f"{name}:/d/e/up/", str(out / "up"))
    assert (out / "up" / "passwd").read_bytes() == container_passwd
    assert _tree_hash(host_dir) == before
    for p, data in host_etc.items():
        assert Path(p).read_bytes() == data


def _raw_put(dockerpy: Any, name: str, path: str, data: bytes) -> Any:
    return dockerpy.api._put(dockerpy.api._url("/containers/{0}/archive", name),
                             params={"path": path, "noOverwriteDirNonDir": "true"}, data=data)  # fmt: skip


def _tar_of(*entries: tuple[str, bytes, str]) -> bytes:
    """(name, type, linkname-or-data) entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, arg in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            body = b""
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = arg
            elif kind == tarfile.REGTYPE:
                body = arg.encode()
                info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def test_hostile_tars_on_put(
    dockerpy: Any, docker: DockerCLI, busybox_image: str, made: tuple[list[str], list[str]],
    host_dir: Path,
) -> None:
    ctrs, _ = made
    name = _name()
    ctrs.append(name)
    _run(docker, name, "busybox", "sh", "-c", f"ln -s {host_dir} /hostlink; mkdir -p /x/y; sleep 1000")
    _wait_for(docker, name, "/x/y")
    before = _tree_hash(host_dir)
    marker = f"berth-pwn-{uuid.uuid4().hex[:8]}"
    R, S, L, C = tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE
    refused = [
        _tar_of((f"../../../../tmp/{marker}", R, "x")),
        _tar_of((f"a/../../../{marker}", R, "x")),
        _tar_of(("up", S, "../../../../../../../.."), (f"up/tmp/{marker}", R, "x")),
        _tar_of(("h", L, "../../../../etc/passwd")),
        _tar_of(("h", L, f"{host_dir}/secret")),
        _tar_of(("null2", C, "")),
    ]
    for data in refused:
        resp = _raw_put(dockerpy, name, "/x/y", data)
        assert resp.status_code >= 400, resp.text
    # Contained, as in Docker: absolute names and links to "/" stay inside the container.
    ok = [
        _tar_of((f"/{marker}-abs", R, "abs")),
        _tar_of(("root", S, "/"), (f"root/tmp/{marker}", R, "through")),
    ]
    for data in ok:
        resp = _raw_put(dockerpy, name, "/x/y", data)
        assert resp.status_code == 200, resp.text
    # A link to the host dir, then a file through it: resolved in the container, where it is missing.
    resp = _raw_put(dockerpy, name, "/x/y", _tar_of(("hl", S, str(host_dir)), (f"hl/{marker}", R, "x")))
    assert resp.status_code == 404, resp.text
    assert docker("exec", name, "cat", f"/x/y/{marker}-abs").stdout == "abs"
    assert docker("exec", name, "cat", f"/tmp/{marker}").stdout == "through"
    # Writing through the container's link to a host path: a 404, never the host.
    resp = _raw_put(dockerpy, name, "/hostlink", _tar_of(("secret", R, "owned")))
    assert resp.status_code == 404
    assert _tree_hash(host_dir) == before
    assert not Path(f"/tmp/{marker}").exists() and not Path(f"/{marker}").exists()
    assert not Path(f"/{marker}-abs").exists()


def test_symlink_swap_race(
    dockerpy: Any, docker: DockerCLI, busybox_image: str, made: tuple[list[str], list[str]]
) -> None:
    """CVE-2018-15664: the container flips /w/x between a dir and a link to "/" during cp."""
    ctrs, _ = made
    name = _name()
    ctrs.append(name)
    loop = ("mkdir -p /w/d/etc && cp /etc/passwd /w/d/etc/passwd && ln -s / /w/l && touch /w/ready; "
            "while true; do mv /w/d /w/x; mv /w/x /w/d; mv /w/l /w/x; mv /w/x /w/l; done")  # fmt: skip
    _run(docker, name, "busybox", "sh", "-c", loop)
    _wait_for(docker, name, "/w/ready")
    container_passwd = docker("exec", name, "cat", "/etc/passwd").stdout.encode()
    host_passwd = Path("/etc/passwd").read_bytes()
    assert host_passwd != container_passwd
    marker = f"berth-race-{uuid.uuid4().hex[:8]}"
    payload = _small_tar(marker, b"race")
    ctr = dockerpy.containers.get(name)
    reads = writes = 0
    for _ in range(1000):
        try:
            stream, _ = ctr.get_archive("/w/x/etc/passwd")
            data = b"".join(stream)
        except dockerpy_mod.errors.NotFound:
            pass
        else:
            f = tarfile.open(fileobj=io.BytesIO(data)).extractfile("passwd")
            assert f is not None and f.read() == container_passwd
            reads += 1
        try:
            ctr.put_archive("/w/x", payload)
            writes += 1
        except (dockerpy_mod.errors.NotFound, dockerpy_mod.errors.APIError):
            pass
        assert not Path(f"/{marker}").exists()
    assert reads > 0 and writes > 0
    assert not Path(f"/{marker}").exists()
    # The writes landed in the container (where depends on the race: the loop's own `mv` through the
    # link moves directories about inside the container, even to its "/x"), never on the host.
    docker("kill", name)
    landed = [line for line in docker("diff", name).stdout.splitlines() if line.endswith(marker)]
    assert landed
