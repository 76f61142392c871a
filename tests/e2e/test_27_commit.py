"""docker commit through the real CLI and docker-py: the container's changes become a new image."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from testkit.berthd import DockerCLI


def _name() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


@pytest.fixture
def leftovers(docker: DockerCLI) -> Iterator[tuple[list[str], list[str]]]:
    containers: list[str] = []
    images: list[str] = []
    yield containers, images
    for c in containers:
        docker("rm", "-f", c, check=False)
    for i in images:
        docker("rmi", "-f", i, check=False)


def test_commit_changes_and_config(
    docker: DockerCLI, busybox_image: str, leftovers: tuple[list[str], list[str]]
) -> None:
    containers, images = leftovers
    name, repo = _name(), _name()
    containers.append(name)
    images.append(f"{repo}:v1")
    docker("run", "--name", name, "-e", "FROM_RUN=1", "busybox", "sh", "-c",
           "echo changed > /etc/motd && mkdir -p /new/dir && rm /bin/vi && echo x > /new/dir/f")
    out = docker("commit", "-a", "Jane <j@example.com>", "-m", "my message",
                 "-c", 'CMD ["cat", "/etc/motd"]', "-c", "ENV COMMITTED=yes", "-c", "EXPOSE 80",
                 name, f"{repo}:v1").stdout.strip()
    assert out.startswith("sha256:")
    # The changes are in the image: the file, the new dir, and the deletion (an OCI whiteout).
    assert docker("run", "--rm", f"{repo}:v1").stdout == "changed\n"
    listing = docker("run", "--rm", f"{repo}:v1", "sh", "-c",
                     "cat /new/dir/f; ls /bin/vi 2>&1 || true").stdout
    assert listing.startswith("x\n") and "No such file" in listing
    info: dict[str, Any] = json.loads(docker("image", "inspect", f"{repo}:v1").stdout)[0]
    assert info["Author"] == "Jane <j@example.com>" and info["Comment"] == "my message"
    assert info["Config"]["Cmd"] == ["cat", "/etc/motd"]
    assert "COMMITTED=yes" in info["Config"]["Env"] and "FROM_RUN=1" in info["Config"]["Env"]
    assert info["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert len(info["RootFS"]["Layers"]) == 2
    hist = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", f"{repo}:v1").stdout
    assert hist.splitlines()[0].endswith("|my message")
    # The engine's bind-mount targets are not part of the diff.
    layer_files = docker("run", "--rm", f"{repo}:v1", "sh", "-c", "cat /etc/hostname").stdout
    assert layer_files.strip() != name


def test_commit_running_container_pauses_and_resumes(
    docker: DockerCLI, busybox_image: str, leftovers: tuple[list[str], list[str]]
) -> None:
    containers, images = leftovers
    name, repo = _name(), _name()
    containers.append(name)
    images.append(repo)
    since = str(int(time.time()) - 1)
    docker("run", "-d", "--name", name, "busybox", "sh", "-c", "echo live > /live; sleep 300")
    docker("commit", name, repo)
    state = json.loads(docker("inspect", name).stdout)[0]["State"]
    assert state["Running"] and not state["Paused"]
    assert docker("run", "--rm", repo, "cat", "/live").stdout == "live\n"
    # The commit event names the container and the new image.
    until = str(int(time.time()) + 1)
    ev = docker("events", "--since", since, "--until", until, "--filter", f"container={name}",
                "--filter", "event=commit", "--format", "{{.Action}} {{.Actor.Attributes.imageID}}").stdout
    assert ev.startswith("commit sha256:"), ev
    # --pause=false works on a running container too.
    docker("commit", "--pause=false", name, f"{repo}:nopause")
    images.append(f"{repo}:nopause")


def test_commit_errors(docker: DockerCLI, busybox_image: str, leftovers: tuple[list[str], list[str]]) -> None:
    containers, _ = leftovers
    name = _name()
    containers.append(name)
    docker("create", "--name", name, "busybox", "true")
    res = docker("commit", "nosuchcontainer-xyz", check=False)
    assert res.returncode != 0 and "No such container: nosuchcontainer-xyz" in res.stderr
    res = docker("commit", "-c", "RUN echo no", name, check=False)
    assert res.returncode != 0 and "RUN is not a valid change command" in res.stderr
    res = docker("commit", name, "Bad:Name:x", check=False)
    assert res.returncode != 0


def test_commit_dockerpy(dockerpy: Any, busybox_image: str, leftovers: tuple[list[str], list[str]]) -> None:
    containers, images = leftovers
    name, repo = _name(), _name()
    containers.append(name)
    images.append(f"{repo}:py")
    ctr = dockerpy.containers.run("busybox", ["sh", "-c", "echo py > /py"], name=name, detach=True)
    ctr.wait()
    img = ctr.commit(repository=repo, tag="py", message="from docker-py",
                     conf={"Cmd": ["cat", "/py"], "Labels": {"via": "py"}})
    assert img.labels == {"via": "py"}
    out = dockerpy.containers.run(img.id, remove=True)
    assert out == b"py\n"
