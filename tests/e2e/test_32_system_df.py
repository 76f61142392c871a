"""docker system df (plain and -v) through the real docker CLI: images, containers, volume usage."""

from __future__ import annotations

import json
import uuid
from typing import Any

from testkit.berthd import DockerCLI


def _df_verbose(docker: DockerCLI) -> dict[str, Any]:
    doc = json.loads(docker("system", "df", "-v", "--format", "{{json .}}").stdout)
    assert isinstance(doc, dict)
    return doc


def test_system_df_reports_volume_usage_images_and_containers(
    docker: DockerCLI, dockerpy: Any, busybox_image: str
) -> None:
    vol, ctr = f"v{uuid.uuid4().hex[:10]}", f"c{uuid.uuid4().hex[:10]}"
    try:
        docker("run", "--name", ctr, "-v", f"{vol}:/data", "busybox",
               "dd", "if=/dev/zero", "of=/data/blob", "bs=1024", "count=1024")
        doc = _df_verbose(docker)
        vols = {v["Name"]: v for v in doc["Volumes"]}
        assert vol in vols, doc["Volumes"]
        assert vols[vol]["Links"] == "1"
        summary = [json.loads(line) for line in
                   docker("system", "df", "--format", "{{json .}}").stdout.splitlines()]
        assert [r["Type"] for r in summary] == ["Images", "Containers", "Local Volumes",
                                               "Build Cache"]
        # The CLI prints human sizes ("1.049MB"); check the raw bytes through the API.
        api = dockerpy.df()
        usage = {v["Name"]: v["UsageData"] for v in api["Volumes"]}[vol]
        assert usage["Size"] >= 1024 * 1024 and usage["RefCount"] == 1
        assert busybox_image in {i["Id"] for i in api["Images"]}
        bb = {i["Id"]: i for i in api["Images"]}[busybox_image]
        assert bb["Containers"] >= 1 and bb["Size"] > 0
        assert api["LayersSize"] >= bb["Size"]
        names = {c["Names"][0] for c in api["Containers"]}
        assert f"/{ctr}" in names
        mine = next(c for c in api["Containers"] if c["Names"][0] == f"/{ctr}")
        assert "SizeRw" in mine and "SizeRootFs" in mine and mine["SizeRootFs"] >= mine["SizeRw"]
        assert api["BuildCache"] == []
        assert any(c["Names"] == ctr for c in doc["Containers"])
        cli_bb = next(i for i in doc["Images"] if i["ID"] == busybox_image)
        assert (cli_bb["Repository"], cli_bb["Tag"]) == ("busybox", "latest")
        assert int(cli_bb["Containers"]) >= 1
        docker("rm", ctr)
        vols_after = {v["Name"]: v for v in _df_verbose(docker)["Volumes"]}
        assert vols_after[vol]["Links"] == "0"
    finally:
        docker("rm", "-f", ctr, check=False)
        docker("volume", "rm", "-f", vol, check=False)
