"""Images through the real docker CLI: import, images, inspect, tag, rmi, history, save/load, prune."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from testkit.berthd import BerthdProcess, DockerCLI
from testkit.fixtures import busybox_rootfs_tar


def _name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _rootfs_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _import(docker: DockerCLI, ref: str, files: dict[str, bytes] | None = None, *changes: str) -> str:
    data = _rootfs_tar(files or {"hello.txt": ref.encode()})
    args = [a for c in changes for a in ("-c", c)]
    out = docker("import", *args, "-", ref, input=data, text=False).stdout.decode()
    image_id = out.strip().splitlines()[-1]
    assert image_id.startswith("sha256:"), out
    return image_id


def _inspect(docker: DockerCLI, ref: str) -> dict[str, object]:
    data = json.loads(docker("image", "inspect", ref).stdout)
    assert isinstance(data, list) and len(data) == 1
    out = data[0]
    assert isinstance(out, dict)
    return out


def test_info_counts_images(docker: DockerCLI, busybox_image: str) -> None:
    info = json.loads(docker("info", "--format", "{{json .}}").stdout)
    assert info["Images"] >= 1
    assert info["OSType"] == "linux"
    assert info["Driver"] == "overlay2"
    assert info["DockerRootDir"]


def test_import_file_with_changes_and_inspect(docker: DockerCLI) -> None:
    ref = f"{_name()}:v1"
    out = docker(
        "import", "-c", 'CMD ["/bin/sh", "-c", "echo hi"]', "-c", "ENV A=1 B=2", "-c", "WORKDIR /w",
        "-c", "EXPOSE 80/udp", "-c", "LABEL k=v", "-c", "USER nobody", "-c", "ENTRYPOINT /bin/true",
        "-m", "my message", str(busybox_rootfs_tar()), ref,
    ).stdout
    image_id = out.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    info = _inspect(docker, ref)
    assert info["Id"] == image_id
    assert info["RepoTags"] == [ref]
    assert info["Comment"] == "my message"
    cfg = info["Config"]
    assert isinstance(cfg, dict)
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/bin/true"]
    assert cfg["Env"] == ["A=1", "B=2"]
    assert cfg["WorkingDir"] == "/w"
    assert cfg["ExposedPorts"] == {"80/udp": {}}
    assert cfg["Labels"] == {"k": "v"}
    assert cfg["User"] == "nobody"
    assert info["Os"] == "linux" and info["Architecture"] == "amd64"
    rootfs = info["RootFS"]
    assert isinstance(rootfs, dict) and rootfs["Type"] == "layers" and len(rootfs["Layers"]) == 1
    size = info["Size"]
    assert isinstance(size, int) and size > 1_000_000  # busybox binary
    # Swagger: fields Docker always sends.
    for key in ("Parent", "DockerVersion", "Author", "GraphDriver", "Metadata", "Created"):
        assert key in info, key


def test_import_bad_change_fails(docker: DockerCLI) -> None:
    res = docker("import", "-c", "FOO bar", "-", _name(), input=_rootfs_tar({"a": b"1"}),
                 text=False, check=False)
    assert res.returncode != 0
    assert b"FOO is not a valid change command" in res.stderr


def test_images_list_filters_and_format(docker: DockerCLI) -> None:
    repo = _name()
    old = _import(docker, f"{repo}:old", {"x": b"old"}, "LABEL tier=old")
    new = _import(docker, f"{repo}:new", {"x": b"new"}, "LABEL tier=new")
    lines = docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", repo).stdout.split()
    assert f"{repo}:old" in lines and f"{repo}:new" in lines
    out = docker("images", "-q", "--no-trunc", "--filter", "label=tier=new").stdout.split()
    assert new in out and old not in out
    out = docker("images", "-q", "--no-trunc", "--filter", f"reference={repo}:o*").stdout.split()
    assert out == [old]
    out = docker("images", "-q", "--no-trunc", "--filter", f"since={repo}:old").stdout.split()
    assert new in out and old not in out
    out = docker("images", "-q", "--no-trunc", "--filter", f"before={repo}:new").stdout.split()
    assert old in out and new not in out
    res = docker("images", "--filter", "nope=1", check=False)
    assert res.returncode != 0 and "invalid filter 'nope'" in res.stderr
    digests = docker("images", "--digests", "--format", "{{.Digest}}", repo).stdout.split()
    assert digests == ["<none>", "<none>"]


def test_dangling_filter_and_prune(docker: DockerCLI) -> None:
    repo = _name()
    first = _import(docker, f"{repo}:x", {"v": b"1"})
    _import(docker, f"{repo}:x", {"v": b"2"})  # moves the tag: first becomes dangling
    dangling = docker("images", "-q", "--no-trunc", "-f", "dangling=true").stdout.split()
    assert first in dangling
    out = docker("image", "prune", "-f").stdout
    assert f"deleted: {first}" in out
    assert "Total reclaimed space" in out
    res = docker("image", "inspect", first, check=False)
    assert res.returncode != 0 and f"No such image: {first}" in res.stderr
    # The tagged image is untouched by a dangling prune.
    assert docker("image", "inspect", f"{repo}:x").returncode == 0


def test_prune_all_removes_unused_tagged(docker: DockerCLI) -> None:
    ref = f"{_name()}:gone"
    image_id = _import(docker, ref, {"p": b"x"}, "LABEL prune-me=yes")
    out = docker("image", "prune", "-a", "-f", "--filter", "label=prune-me=yes").stdout
    assert f"untagged: {ref}" in out and f"deleted: {image_id}" in out
    assert docker("image", "inspect", ref, check=False).returncode != 0


def test_tag_and_rmi_semantics(docker: DockerCLI) -> None:
    repo = _name()
    image_id = _import(docker, f"{repo}:a")
    docker("tag", f"{repo}:a", f"{repo}:b")
    docker("tag", image_id, f"other-{repo}")
    assert set(_inspect(docker, image_id)["RepoTags"]) == {  # type: ignore[arg-type]
        f"{repo}:a", f"{repo}:b", f"other-{repo}:latest"}
    # Referenced in several repositories: deleting by id needs -f.
    res = docker("rmi", image_id[7:19], check=False)
    assert res.returncode != 0
    assert "image is referenced in multiple repositories" in res.stderr
    # By name only untags while other tags remain.
    out = docker("rmi", f"{repo}:a").stdout
    assert out.strip() == f"Untagged: {repo}:a"
    out = docker("rmi", "-f", image_id).stdout
    assert f"Untagged: {repo}:b" in out and f"Untagged: other-{repo}:latest" in out
    assert f"Deleted: {image_id}" in out
    res = docker("rmi", f"{repo}:b", check=False)
    assert res.returncode != 0 and f"No such image: {repo}:b" in res.stderr


def test_tag_moves_between_images(docker: DockerCLI) -> None:
    repo = _name()
    one = _import(docker, f"{repo}:1", {"n": b"1"})
    two = _import(docker, f"{repo}:2", {"n": b"2"})
    docker("tag", f"{repo}:2", f"{repo}:1")
    assert _inspect(docker, f"{repo}:1")["Id"] == two
    assert _inspect(docker, one)["RepoTags"] == []


@pytest.mark.parametrize("bad,message", [
    ("UPPER", "invalid reference format: repository name (library/UPPER) must be lowercase"),
    ("a::b", "invalid reference format"),
    ("x:" + "t" * 129, "invalid reference format"),
])
def test_invalid_references_over_the_api(
    berthd: BerthdProcess, busybox_image: str, bad: str, message: str
) -> None:
    # The CLI validates references itself, so speak HTTP directly for the server's text.
    import docker.errors

    client = berthd.api_client()
    try:
        with pytest.raises(docker.errors.APIError) as err:
            client.api.tag("busybox", bad)
        assert err.value.status_code == 400
        assert message == str(err.value.explanation)
        with pytest.raises(docker.errors.APIError) as err:
            client.api.inspect_image(bad)
        assert err.value.status_code in (400, 404)
    finally:
        client.close()


def test_history(docker: DockerCLI, busybox_image: str) -> None:
    rows = [json.loads(line) for line in
            docker("history", "--format", "{{json .}}", "--no-trunc", "busybox").stdout.splitlines()]
    assert rows and rows[0]["ID"] == busybox_image
    assert rows[0]["Comment"] == "Imported from -"


def test_save_load_round_trip(docker: DockerCLI, tmp_path: Path) -> None:
    repo = _name()
    a = _import(docker, f"{repo}:a", {"a": b"a" * 1000})
    b = _import(docker, f"{repo}:b", {"b": b"b" * 1000})
    archive = tmp_path / "two.tar"
    docker("save", "-o", str(archive), f"{repo}:a", f"{repo}:b")
    with tarfile.open(archive) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert "index.json" in names and "oci-layout" in names
    assert sorted(t for m in manifest for t in m["RepoTags"]) == [f"{repo}:a", f"{repo}:b"]
    docker("rmi", f"{repo}:a", f"{repo}:b")
    out = docker("load", "-i", str(archive)).stdout
    assert f"Loaded image: {repo}:a" in out and f"Loaded image: {repo}:b" in out
    assert _inspect(docker, f"{repo}:a")["Id"] == a
    assert _inspect(docker, f"{repo}:b")["Id"] == b
    # skopeo reads what we write.
    res = subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}:{repo}:a"],
                         capture_output=True, text=True, check=True)
    assert json.loads(res.stdout)["Layers"]


def test_save_to_stdout_and_load_from_stdin(docker: DockerCLI) -> None:
    ref = f"{_name()}:s"
    image_id = _import(docker, ref)
    data = docker("save", ref, text=False).stdout
    assert isinstance(data, bytes) and len(data) > 1000
    docker("rmi", ref)
    out = docker("load", input=data, text=False).stdout.decode()
    assert f"Loaded image: {ref}" in out
    assert _inspect(docker, ref)["Id"] == image_id


def test_load_oci_archive_from_skopeo(docker: DockerCLI, tmp_path: Path) -> None:
    ref = f"{_name()}:oci"
    _import(docker, ref, {"o": b"oci"})
    layers = _inspect(docker, ref)["RootFS"]
    saved = tmp_path / "d.tar"
    docker("save", "-o", str(saved), ref)
    docker("rmi", ref)
    oci = tmp_path / "o.tar"
    subprocess.run(["skopeo", "copy", f"docker-archive:{saved}", f"oci-archive:{oci}:{ref}"],
                   check=True, capture_output=True)
    out = docker("load", "-i", str(oci)).stdout
    assert f"Loaded image: {ref}" in out
    # skopeo re-serialises the config (a new id) and gzips the layer; the diff ids stay.
    assert _inspect(docker, ref)["RootFS"] == layers


def test_load_garbage_fails_cleanly(docker: DockerCLI, tmp_path: Path) -> None:
    before = docker("images", "-a", "-q", "--no-trunc").stdout.split()
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive" * 100)
    res = docker("load", "-i", str(junk), check=False)
    assert res.returncode != 0 and res.stderr.strip()
    truncated = tmp_path / "trunc.tar"
    ref = f"{_name()}:t"
    _import(docker, ref)
    docker("save", "-o", str(truncated), ref)
    docker("rmi", ref)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    res = docker("load", "-i", str(truncated), check=False)
    assert res.returncode != 0
    after = docker("images", "-a", "-q", "--no-trunc").stdout.split()
    assert sorted(after) == sorted(before)


def test_load_digest_mismatch_fails(docker: DockerCLI, tmp_path: Path) -> None:
    ref = f"{_name()}:dm"
    _import(docker, ref, {"f": b"original"})
    saved = tmp_path / "s.tar"
    docker("save", "-o", str(saved), ref)
    docker("rmi", ref)
    # Rewrite one layer blob with other bytes of the same size under the same name.
    out = tmp_path / "bad.tar"
    with tarfile.open(saved) as src, tarfile.open(out, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            if data is not None and m.size > 1024:
                data = bytes(reversed(data))
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    res = docker("load", "-i", str(out), check=False)
    assert res.returncode != 0
    assert "digest" in res.stderr.lower()
    assert docker("image", "inspect", ref, check=False).returncode != 0


def test_malformed_filters_json_is_400(berthd: BerthdProcess) -> None:
    import docker.errors

    client = berthd.api_client()
    try:
        with pytest.raises(docker.errors.APIError) as err:
            client.api._result(client.api._get(client.api._url("/images/json"),
                                               params={"filters": "{not json"}), json=True)
        assert err.value.status_code == 400
    finally:
        client.close()


def test_import_unknown_platform_fails(docker: DockerCLI) -> None:
    res = docker("import", "--platform", "windows/amd64", "-", _name(), input=_rootfs_tar({"a": b"1"}),
                 text=False, check=False)
    assert res.returncode != 0
    assert b"unknown operating system or architecture" in res.stderr
