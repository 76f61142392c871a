"""docker events across a container's whole lifecycle: every action, with dockerd's Actor attributes."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from testkit.berthd import BerthdProcess, DockerCLI


class _Listener:
    """``docker events --format '{{json .}}'`` for one label, read after the fact."""

    def __init__(self, berthd: BerthdProcess, label: str) -> None:
        self.proc = subprocess.Popen(
            ["docker", "events", "--format", "{{json .}}", "--filter", "type=container",
             "--filter", f"label={label}"],
            env=berthd.docker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(0.5)

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(0.5)
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def label(docker: DockerCLI) -> Iterator[str]:
    value = uuid.uuid4().hex[:10]
    yield value
    ids = docker("ps", "-aq", "--filter", f"label=evtest={value}").stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)


def _wait_health(docker: DockerCLI, name: str) -> None:
    deadline = time.monotonic() + 20
    while docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip() != "healthy":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_lifecycle_events(berthd: BerthdProcess, docker: DockerCLI, dockerpy: Any, busybox_image: str,
                          label: str, tmp_path: Any) -> None:  # fmt: skip
    events = _Listener(berthd, f"evtest={label}")
    try:
        cid = docker("run", "-d", "-it", "--name", f"ev1-{label}", "--label", f"evtest={label}",
                     "--health-cmd", "true", "--health-interval", "1s", "busybox", "sh", "-c",
                     "trap 'exit 3' TERM; while true; do sleep 0.1; done").stdout.strip()  # fmt: skip
        _wait_health(docker, cid)
        docker("top", cid)
        dockerpy.api.resize(cid, 30, 100)
        docker("exec", cid, "true")
        docker("pause", cid)
        docker("unpause", cid)
        docker("rename", f"ev1-{label}", f"ev2-{label}")
        docker("update", "--cpu-shares", "512", cid)
        docker("cp", f"{cid}:/etc/hostname", str(tmp_path / "h"))
        docker("cp", str(tmp_path / "h"), f"{cid}:/tmp/h")
        image = docker("commit", "-m", "evmsg", cid, f"evimg-{label}:1").stdout.strip()
        docker("export", "-o", str(tmp_path / "x.tar"), cid)
        # attach, then the detach keys
        sock = dockerpy.api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stream": 1,
                                                       "detachKeys": "ctrl-p,ctrl-q"})  # fmt: skip
        raw = getattr(sock, "_sock", sock)
        time.sleep(0.5)  # keys typed at once can beat the backend's attach: no detach event then
        raw.sendall(b"\x10\x11")
        raw.settimeout(10)
        while raw.recv(4096):
            pass
        raw.close()
        docker("restart", "-t", "5", cid)
        docker("kill", cid)
        docker("rm", cid)
    finally:
        got = events.stop()
        docker("rmi", f"evimg-{label}:1", check=False)
    name1, name2 = f"ev1-{label}", f"ev2-{label}"
    # the healthcheck runs as execs, with their events as dockerd has them
    health = {"exec_create: /bin/sh -c true", "exec_start: /bin/sh -c true"}
    probe_ids = {e["Actor"]["Attributes"]["execID"] for e in got if e["Action"] in health}
    assert probe_ids
    got = [e for e in got if e["Action"] not in health
           and not (e["Action"] == "exec_die" and e["Actor"]["Attributes"]["execID"] in probe_ids)]
    actions = [e["Action"] for e in got if not e["Action"].startswith("health_status")]
    assert actions == [
        "create", "start", "top", "resize", "exec_create: true", "exec_start: true", "exec_die",
        "pause", "unpause", "rename", "update", "archive-path", "extract-to-dir",
        "pause", "commit", "unpause", "export",  # commit pauses the container, as dockerd
        "attach", "detach", "kill", "die", "stop", "start", "restart", "kill", "die", "destroy",
    ], json.dumps(actions)
    assert any(e["Action"] == "health_status: healthy" for e in got)
    for e in got:
        attrs = e["Actor"]["Attributes"]
        assert e["Type"] == "container" and e["scope"] == "local" and e["Actor"]["ID"] == cid
        assert attrs["image"] == "busybox" and attrs["evtest"] == label, e
        assert e["id"] == cid and e["from"] == "busybox" and e["status"] == e["Action"]
    by: dict[str, list[dict[str, str]]] = {}
    for e in got:
        by.setdefault(e["Action"], []).append(e["Actor"]["Attributes"])
    assert by["create"][0]["name"] == name1
    assert by["rename"][0]["name"] == name2 and by["rename"][0]["oldName"] == "/" + name1
    assert by["destroy"][0]["name"] == name2
    assert (by["resize"][0]["height"], by["resize"][0]["width"]) == ("30", "100")
    assert [a["signal"] for a in by["kill"]] == ["15", "9"]
    assert [a["exitCode"] for a in by["die"]] == ["3", "137"]
    assert all("execDuration" in a for a in by["die"])
    assert by["exec_die"][0]["exitCode"] == "0" and by["exec_die"][0]["execID"]
    assert by["exec_create: true"][0]["execID"] == by["exec_die"][0]["execID"]
    assert by["commit"][0]["comment"] == "evmsg" and by["commit"][0]["imageID"] == image


def test_oom_and_prune_events(berthd: BerthdProcess, docker: DockerCLI, busybox_image: str,
                              label: str) -> None:  # fmt: skip
    events = _Listener(berthd, f"evtest={label}")
    since = time.time()
    try:
        res = docker("run", "--name", f"oom-{label}", "--label", f"evtest={label}", "-m", "8m",
                     "--memory-swap", "8m", "busybox", "sh", "-c",
                     "x=a; while true; do x=$x$x; done", check=False)  # fmt: skip
        assert res.returncode == 137, res
        assert docker("inspect", "-f", "{{.State.OOMKilled}}", f"oom-{label}").stdout.strip() == "true"
        docker("container", "prune", "-f", "--filter", f"label=evtest={label}")
    finally:
        got = events.stop()
    actions = [e["Action"] for e in got]
    assert actions[:2] == ["create", "attach"] or actions[:2] == ["create", "start"], actions
    tail = [a for a in actions if a in ("oom", "die", "destroy")]
    assert tail == ["oom", "die", "destroy"], actions
    die = next(e for e in got if e["Action"] == "die")
    assert die["Actor"]["Attributes"]["exitCode"] == "137"
    out = docker("events", "--since", f"{since:.3f}", "--until", f"{time.time() + 1:.3f}", "--format",
                 "{{json .}}", "--filter", "event=prune", "--filter", "type=container").stdout  # fmt: skip
    prunes = [json.loads(line) for line in out.splitlines()]
    assert prunes and prunes[-1]["Actor"]["ID"] == "" and "reclaimed" in prunes[-1]["Actor"]["Attributes"]
