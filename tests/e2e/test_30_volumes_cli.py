"""docker volume create/ls/inspect/rm/prune through the real CLI and docker-py; data survives crashes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.berthd import BerthdProcess, DockerCLI


@pytest.fixture
def vols(docker: DockerCLI) -> Iterator[list[str]]:
    """Names the test creates; removed (forced) afterwards."""
    names: list[str] = []
    yield names
    if names:
        docker("volume", "rm", "-f", *names, check=False)


def _inspect(docker: DockerCLI, name: str) -> dict[str, Any]:
    out = json.loads(docker("volume", "inspect", name).stdout)
    assert isinstance(out, list) and len(out) == 1
    doc: dict[str, Any] = out[0]
    return doc


def _ls(docker: DockerCLI, *args: str) -> list[str]:
    out = docker("volume", "ls", "-q", *args).stdout
    return sorted(out.split())


def test_create_inspect_ls_rm(docker: DockerCLI, berthd: BerthdProcess, vols: list[str]) -> None:
    vols += ["e2e-web", "e2e-db"]
    assert docker("volume", "create", "--label", "app=web", "e2e-web").stdout.strip() == "e2e-web"
    assert docker("volume", "create", "--name", "e2e-db").stdout.strip() == "e2e-db"
    doc = _inspect(docker, "e2e-web")
    assert doc["Name"] == "e2e-web" and doc["Driver"] == "local" and doc["Scope"] == "local"
    assert doc["Labels"] == {"app": "web"} and doc["Options"] == {}
    assert doc["Mountpoint"] == str(berthd.data_root / "volumes" / "e2e-web" / "_data")
    assert Path(doc["Mountpoint"]).is_dir()
    assert doc["CreatedAt"].endswith("Z") and "UsageData" not in doc
    assert _inspect(docker, "e2e-db")["Labels"] == {}
    # Creating an existing name again returns it (Docker's behaviour).
    assert docker("volume", "create", "e2e-web").stdout.strip() == "e2e-web"

    assert {"e2e-web", "e2e-db"} <= set(_ls(docker))
    assert _ls(docker, "--filter", "label=app=web") == ["e2e-web"]
    assert _ls(docker, "--filter", "name=e2e-d") == ["e2e-db"]
    assert "e2e-db" in _ls(docker, "--filter", "dangling=true")
    assert "e2e-db" in _ls(docker, "--filter", "driver=local")
    out = docker("volume", "ls", "--filter", "name=e2e-", "--format", "{{.Name}} {{.Driver}} {{.Labels}}")
    assert sorted(out.stdout.splitlines()) == ["e2e-db local ", "e2e-web local app=web"]
    table = docker("volume", "ls", "--filter", "name=e2e-web").stdout.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"] and table[1].split() == ["local", "e2e-web"]
    fmt = docker("volume", "inspect", "--format", "{{.Name}}:{{.Scope}}", "e2e-db").stdout.strip()
    assert fmt == "e2e-db:local"

    assert docker("volume", "rm", "e2e-web", "e2e-db").stdout.split() == ["e2e-web", "e2e-db"]
    assert not (berthd.data_root / "volumes" / "e2e-web").exists()
    res = docker("volume", "inspect", "e2e-web", check=False)
    assert res.returncode == 1 and "get e2e-web: no such volume" in res.stderr
    res = docker("volume", "rm", "e2e-web", check=False)
    assert res.returncode == 1 and "no such volume" in res.stderr
    assert docker("volume", "rm", "-f", "e2e-web").returncode == 0


def test_generated_name_and_hostile_names(docker: DockerCLI, berthd: BerthdProcess, vols: list[str]) -> None:
    name = docker("volume", "create").stdout.strip()
    vols.append(name)
    assert len(name) == 64
    assert _inspect(docker, name)["Labels"] == {"com.docker.volume.anonymous": ""}
    before = sorted(os.listdir(berthd.data_root))
    for bad in ("..", "../escape", "a/b", "x", "-x", ".hidden", "a b"):
        res = docker("volume", "create", "--", bad, check=False)
        assert res.returncode == 1, bad
        assert "includes invalid characters for a local volume name" in res.stderr, res.stderr
    for bad in ("..", "../../etc"):
        assert docker("volume", "rm", "--", bad, check=False).returncode == 1
    assert sorted(os.listdir(berthd.data_root)) == before
    assert not (berthd.data_root / "escape").exists()


def test_driver_options(docker: DockerCLI, vols: list[str], tmp_path: Path) -> None:
    vols += ["e2e-tmp", "e2e-bind"]
    docker("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
           "--opt", "o=size=10m,uid=1000", "e2e-tmp")
    assert _inspect(docker, "e2e-tmp")["Options"] == {
        "type": "tmpfs", "device": "tmpfs", "o": "size=10m,uid=1000"}
    docker("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={tmp_path}",
           "e2e-bind")
    assert _inspect(docker, "e2e-bind")["Options"]["device"] == str(tmp_path)
    cases = [
        (["type=nfs", "device=:/export", "o=addr=127.0.0.1"], 'unsupported volume type "nfs"'),
        (["type=none", "o=bind", f"device={tmp_path}/missing"], "no such directory"),
        (["type=none", "o=bind", "device=../etc"], "absolute"),
        (["type=tmpfs", "device=tmpfs", "o=size=1m,remount"], "not an allowed mount option"),
        (["foo=bar"], 'invalid option: "foo"'),
    ]
    for opts, message in cases:
        args = [a for o in opts for a in ("--opt", o)]
        res = docker("volume", "create", *args, "e2e-bad", check=False)
        assert res.returncode == 1 and message in res.stderr, (opts, res.stderr)
    assert "e2e-bad" not in _ls(docker)
    # Bind volumes are never pruned or written through: the host dir keeps its content.
    (tmp_path / "host-file").write_text("host")
    docker("volume", "rm", "e2e-bind")
    assert (tmp_path / "host-file").read_text() == "host"


def test_prune_anonymous_by_default_all_with_flag(docker: DockerCLI, vols: list[str]) -> None:
    anon = docker("volume", "create", "--label", "e2e-prune=1").stdout.strip()
    named = "e2e-prune-named"
    docker("volume", "create", "--label", "e2e-prune=1", named)
    vols += [anon, named]
    out = docker("volume", "prune", "-f", "--filter", "label=e2e-prune=1").stdout
    assert anon in out and named not in out
    assert _ls(docker, "--filter", "label=e2e-prune") == [named]
    out = docker("volume", "prune", "-f", "--all", "--filter", "label=e2e-prune=1").stdout
    assert named in out and "Total reclaimed space" in out
    assert _ls(docker, "--filter", "label=e2e-prune") == []


def test_dockerpy_volumes(dockerpy: Any, vols: list[str]) -> None:
    vols += ["e2e-py"]
    v = dockerpy.volumes.create(name="e2e-py", driver="local", labels={"k": "v"})
    assert v.name == "e2e-py" and v.attrs["Labels"] == {"k": "v"} and v.attrs["Options"] == {}
    assert dockerpy.volumes.get("e2e-py").attrs["Mountpoint"].endswith("/volumes/e2e-py/_data")
    assert "e2e-py" in [x.name for x in dockerpy.volumes.list(filters={"label": "k=v"})]
    api = dockerpy.api
    assert api.inspect_volume("e2e-py")["Scope"] == "local"
    v.remove()
    assert "e2e-py" not in [x.name for x in dockerpy.volumes.list()]
    anon = dockerpy.volumes.create()
    vols.append(anon.name)
    res = dockerpy.volumes.prune()
    assert anon.name in (res["VolumesDeleted"] or []) and "SpaceReclaimed" in res
    # Pre-1.42 clients prune every unused volume, named ones included.
    dockerpy.volumes.create(name="e2e-py-old", labels={"e2e-old": "1"})
    vols.append("e2e-py-old")
    url = f"{api.base_url}/v1.41/volumes/prune"
    res = api._result(api._post(url, params={"filters": '{"label": ["e2e-old"]}'}), True)
    assert "e2e-py-old" in res["VolumesDeleted"]


def test_data_survives_restart_and_kill9(fresh_berthd: BerthdProcess) -> None:
    d = fresh_berthd
    d.docker("volume", "create", "--label", "keep=1", "durable")
    mp = Path(_inspect(d.docker, "durable")["Mountpoint"])
    (mp / "file.txt").write_text("precious")
    d.restart()
    assert Path(_inspect(d.docker, "durable")["Mountpoint"], "file.txt").read_text() == "precious"
    d.docker("volume", "create", "after-restart")
    d.kill9()
    d.start()
    doc = _inspect(d.docker, "durable")
    assert doc["Labels"] == {"keep": "1"}
    assert Path(doc["Mountpoint"], "file.txt").read_text() == "precious"
    assert "after-restart" in d.docker("volume", "ls", "-q").stdout.split()
    # prune (anonymous only) leaves named volumes and their data alone
    d.docker("volume", "prune", "-f")
    assert Path(doc["Mountpoint"], "file.txt").read_text() == "precious"
