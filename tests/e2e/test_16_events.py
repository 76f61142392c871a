"""docker events for image operations, with filters, since and until."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

from testkit.berthd import BerthdProcess, DockerCLI
from testkit.fixtures import busybox_rootfs_tar


def test_image_events_since_until_and_filters(berthd: BerthdProcess, docker: DockerCLI) -> None:
    since = str(int(time.time()) - 1)
    repo = f"ev{uuid.uuid4().hex[:8]}"
    image_id = docker("import", str(busybox_rootfs_tar()), f"{repo}:1").stdout.strip()
    docker("tag", f"{repo}:1", f"{repo}:2")
    docker("rmi", f"{repo}:2")
    until = str(int(time.time()) + 1)
    out = docker("events", "--since", since, "--until", until, "--format", "{{json .}}",
                 "--filter", "type=image", "--filter", f"image={repo}:2").stdout
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in events] == [
        ("tag", f"{repo}:2"), ("untag", f"{repo}:2")]
    assert all(e["Actor"]["ID"] == image_id for e in events)
    assert all(e["Type"] == "image" and e["scope"] == "local" for e in events)


def test_live_events_stream(berthd: BerthdProcess, docker: DockerCLI) -> None:
    repo = f"live{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(["docker", "events", "--format", "{{.Action}} {{.Actor.Attributes.name}}",
                             "--filter", "event=import"], env=berthd.docker_env(),
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        docker("import", str(busybox_rootfs_tar()), f"{repo}:x")
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == f"import {repo}:x"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_bad_event_filter(docker: DockerCLI) -> None:
    res = docker("events", "--since", "1s", "--until", "0s", "--filter", "bogus=1", check=False)
    assert res.returncode != 0 and "invalid filter 'bogus'" in res.stderr
