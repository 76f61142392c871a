"""docker top, docker stats and docker update through the real CLI and docker-py, checked against
the container's cgroup v1 files."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.berthd import DockerCLI

MB = 1024 * 1024
CG = Path("/sys/fs/cgroup")


def _name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _cg(cid: str, controller: str, name: str) -> str:
    return (CG / controller / "berth" / cid / name).read_text().strip()


def _cid(docker: DockerCLI, name: str) -> str:
    return docker("inspect", "-f", "{{.Id}}", name).stdout.strip()


@pytest.fixture
def names(docker: DockerCLI) -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    for n in created:
        docker("rm", "-f", n, check=False)


@pytest.fixture
def sleeper(docker: DockerCLI, busybox_image: str, names: list[str]) -> str:
    """A container with a memory and pids limit running a shell and two sleeps."""
    name = _name()
    names.append(name)
    docker("run", "-d", "--name", name, "-m", "64m", "--pids-limit", "50", "busybox",
           "sh", "-c", "sleep 1001 & sleep 1002 & wait")
    return name


def _events(docker: DockerCLI, since: str, name: str, event: str) -> list[dict[str, Any]]:
    until = str(int(time.time()) + 1)
    out = docker("events", "--since", since, "--until", until, "--format", "{{json .}}",
                 "--filter", f"container={name}", "--filter", f"event={event}").stdout
    return [json.loads(line) for line in out.splitlines()]


# ---- top ------------------------------------------------------------------------------------------


def test_top_lists_the_cgroup_processes(docker: DockerCLI, sleeper: str) -> None:
    cid = _cid(docker, sleeper)
    deadline = time.monotonic() + 10
    while len(_cg(cid, "pids", "cgroup.procs").split()) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    lines = docker("top", sleeper).stdout.splitlines()
    titles = lines[0].split()
    assert titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]
    pids = {int(r[1]) for r in rows}
    assert pids == {int(p) for p in _cg(cid, "pids", "cgroup.procs").split()}
    cmds = sorted(r[-1] for r in rows)
    assert cmds == ["sh -c sleep 1001 & sleep 1002 & wait", "sleep 1001", "sleep 1002"]
    out = docker("top", sleeper, "-o", "pid,comm").stdout.splitlines()
    assert out[0].split() == ["PID", "COMMAND"] and sorted(line.split()[1] for line in out[1:]) == [
        "sh", "sleep", "sleep"]


def test_top_errors(docker: DockerCLI, sleeper: str) -> None:
    res = docker("top", sleeper, "-o", "user=PID", check=False)
    assert res.returncode == 1 and 'specifying "user=PID" is not allowed' in res.stderr
    res = docker("top", sleeper, "--no-such-ps-option", check=False)
    assert res.returncode == 1 and "ps: " in res.stderr
    docker("kill", sleeper)
    res = docker("top", sleeper, check=False)
    assert res.returncode == 1
    assert f"Container {_cid(docker, sleeper)} is not running" in res.stderr
    res = docker("top", "no-such-ctr-x", check=False)
    assert "No such container: no-such-ctr-x" in res.stderr


def test_top_dockerpy(dockerpy: Any, sleeper: str) -> None:
    top = dockerpy.containers.get(sleeper).top(ps_args="aux")
    assert top["Titles"][:2] == ["USER", "PID"] and top["Titles"][-1] == "COMMAND"
    assert len(top["Processes"]) == 3 and all(len(p) == len(top["Titles"]) for p in top["Processes"])


# ---- stats ----------------------------------------------------------------------------------------


def _parse_size(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)([KMG]i)?B", text.strip())
    assert m, text
    return float(m.group(1)) * {None: 1, "Ki": 1024, "Mi": MB, "Gi": 1024 * MB}[m.group(2)]


def test_stats_no_stream_cli(docker: DockerCLI, busybox_image: str, names: list[str]) -> None:
    name = _name()
    names.append(name)
    docker("run", "-d", "--name", name, "-m", "64m", "--cpus", "0.5", "--network", "none", "busybox",
           "sh", "-c", "head -c 20000000 /dev/zero > /dev/shm/fill; while :; do :; done")
    time.sleep(1.5)
    t0 = time.monotonic()
    out = docker("stats", "--no-stream", "--format", "{{json .}}", name).stdout
    took = time.monotonic() - t0
    row = json.loads(out)
    cpu = float(row["CPUPerc"].rstrip("%"))
    assert 10.0 < cpu <= 70.0, row  # a busy loop held to half a CPU
    used, limit = (_parse_size(x) for x in row["MemUsage"].split(" / "))
    assert limit == 64 * MB and 19 * MB < used < 64 * MB, row
    assert row["PIDs"] == "1" and row["NetIO"] == "0B / 0B"  # --network none: loopback only
    assert 0.9 < took < 10  # two samples a second apart, as dockerd


def test_stats_dockerpy_stream_and_one_shot(dockerpy: Any, docker: DockerCLI, sleeper: str) -> None:
    ctr = dockerpy.containers.get(sleeper)
    it = ctr.stats(stream=True, decode=True)
    first, second = next(it), next(it)
    it.close()
    assert first["preread"] == "0001-01-01T00:00:00Z"
    assert second["precpu_stats"]["cpu_usage"] == first["cpu_stats"]["cpu_usage"]
    assert second["precpu_stats"]["system_cpu_usage"] == first["cpu_stats"]["system_cpu_usage"]
    cpu = second["cpu_stats"]
    assert cpu["online_cpus"] >= 1 and cpu["system_cpu_usage"] > 0
    assert len(cpu["cpu_usage"]["percpu_usage"]) >= 1
    assert set(cpu["throttling_data"]) == {"periods", "throttled_periods", "throttled_time"}
    mem = second["memory_stats"]
    assert mem["limit"] == 64 * MB and mem["usage"] > 0 and "cache" in mem["stats"]
    assert second["pids_stats"] == {"current": 3, "limit": 50}
    assert set(second["blkio_stats"]) >= {"io_service_bytes_recursive", "io_serviced_recursive"}
    assert second["name"] == f"/{sleeper}" and second["id"] == ctr.id
    mode = docker("inspect", "-f", "{{.HostConfig.NetworkMode}}", sleeper).stdout.strip()
    if mode == "none":
        assert "networks" not in second  # no interface but loopback
    for iface, counters in (second.get("networks") or {}).items():
        assert iface != "lo" and set(counters) == {f"{d}_{k}" for d in ("rx", "tx")
                                                   for k in ("bytes", "packets", "errors", "dropped")}
    one = ctr.stats(stream=False)
    assert one["preread"] != "0001-01-01T00:00:00Z" and one["precpu_stats"]["system_cpu_usage"] > 0
    shot = dockerpy.api.stats(ctr.id, stream=False, one_shot=True)
    assert shot["preread"] == "0001-01-01T00:00:00Z" and shot["cpu_stats"]["cpu_usage"]["total_usage"] > 0


def test_stats_of_a_stopped_container_are_zero(dockerpy: Any, docker: DockerCLI, sleeper: str) -> None:
    docker("kill", sleeper)
    doc = dockerpy.api.stats(sleeper, stream=False)
    assert doc["read"] == "0001-01-01T00:00:00Z" and doc["memory_stats"] == {} and doc["pids_stats"] == {}
    assert doc["cpu_stats"]["cpu_usage"]["total_usage"] == 0
    row = json.loads(docker("stats", "--no-stream", "--format", "{{json .}}", sleeper).stdout)
    assert (row["CPUPerc"], row["MemUsage"], row["PIDs"]) == ("0.00%", "0B / 0B", "0")


def test_stats_overhead(docker: DockerCLI, sleeper: str) -> None:
    """One sample (cgroup files + /proc) must stay cheap: measure it through the API."""
    t0 = time.monotonic()
    for _ in range(5):
        docker("stats", "--no-stream", "--format", "{{.CPUPerc}}", sleeper)
    per_call = (time.monotonic() - t0) / 5
    assert per_call < 5


# ---- update ---------------------------------------------------------------------------------------


def test_update_live_and_persisted(docker: DockerCLI, sleeper: str) -> None:
    cid = _cid(docker, sleeper)
    since = str(int(time.time()) - 1)
    docker("update", "-m", "100m", "--memory-swap", "200m", "--cpus", "0.5", "--pids-limit", "20",
           "--cpu-shares", "512", "--memory-reservation", "32m", "--restart", "on-failure:3", sleeper)
    assert int(_cg(cid, "memory", "memory.limit_in_bytes")) == 100 * MB
    assert int(_cg(cid, "memory", "memory.memsw.limit_in_bytes")) == 200 * MB
    assert int(_cg(cid, "memory", "memory.soft_limit_in_bytes")) == 32 * MB
    assert (_cg(cid, "cpu", "cpu.cfs_quota_us"), _cg(cid, "cpu", "cpu.cfs_period_us")) == ("50000", "100000")
    assert _cg(cid, "cpu", "cpu.shares") == "512"
    assert _cg(cid, "pids", "pids.max") == "20"
    hc = json.loads(docker("inspect", "-f", "{{json .HostConfig}}", sleeper).stdout)
    assert (hc["Memory"], hc["MemorySwap"], hc["NanoCpus"], hc["PidsLimit"], hc["CpuShares"]) == (
        100 * MB, 200 * MB, 500_000_000, 20, 512)
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    # -1 lifts the pids limit; memory alone fits under the swap limit now
    docker("update", "--pids-limit", "-1", "-m", "150m", sleeper)
    assert _cg(cid, "pids", "pids.max") == "max"
    assert int(_cg(cid, "memory", "memory.limit_in_bytes")) == 150 * MB
    assert [e["Action"] for e in _events(docker, since, sleeper, "update")] == ["update", "update"]


def test_update_errors_as_docker(docker: DockerCLI, busybox_image: str, names: list[str]) -> None:
    name = _name()
    names.append(name)
    docker("run", "-d", "--name", name, "busybox", "sleep", "1000")
    cid = _cid(docker, name)
    res = docker("update", "-m", "100m", name, check=False)
    assert res.returncode == 1
    assert (f"Cannot update container {cid}: Memory limit should be smaller than already set memoryswap "
            "limit, update the memoryswap at the same time") in res.stderr
    res = docker("update", "-m", "1m", "--memory-swap", "2m", name, check=False)
    assert "Minimum memory limit allowed is 6MB" in res.stderr
    res = docker("update", "--cpus", "0.5", "--cpu-quota", "50000", name, check=False)
    assert res.returncode != 0 and "Conflicting options" in res.stderr
    res = docker("update", "--cpuset-cpus", "63", name, check=False)
    assert "Requested CPUs are not available - requested 63" in res.stderr
    res = docker("update", "--restart", "sometimes", name, check=False)
    assert res.returncode != 0
    assert json.loads(docker("inspect", "-f", "{{json .HostConfig.Memory}}", name).stdout) == 0


def test_update_below_current_usage_fails_and_keeps_the_config(
    docker: DockerCLI, busybox_image: str, names: list[str]
) -> None:
    name = _name()
    names.append(name)
    docker("run", "-d", "--name", name, "-m", "64m", "busybox", "sh", "-c",
           "head -c 30000000 /dev/zero > /dev/shm/fill; touch /tmp/ready; sleep 1000")
    deadline = time.monotonic() + 10
    while docker("exec", name, "test", "-f", "/tmp/ready", check=False).returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cid = _cid(docker, name)
    res = docker("update", "-m", "10m", "--memory-swap", "10m", name, check=False)
    assert res.returncode == 1 and f"Cannot update container {cid}: " in res.stderr
    assert "resource busy" in res.stderr.lower()
    assert int(_cg(cid, "memory", "memory.limit_in_bytes")) == 64 * MB
    hc = json.loads(docker("inspect", "-f", "{{json .HostConfig}}", name).stdout)
    assert hc["Memory"] == 64 * MB


def test_update_stopped_container_applies_at_start(
    docker: DockerCLI, dockerpy: Any, busybox_image: str, names: list[str]
) -> None:
    name = _name()
    names.append(name)
    docker("create", "--name", name, "busybox", "sleep", "1000")
    ctr = dockerpy.containers.get(name)
    res = ctr.update(mem_limit="48m", memswap_limit="96m", cpu_period=50000, cpu_quota=25000,
                     restart_policy={"Name": "unless-stopped"})
    assert res == {"Warnings": []}
    docker("update", "--pids-limit", "30", name)
    docker("start", name)
    cid = ctr.id
    assert int(_cg(cid, "memory", "memory.limit_in_bytes")) == 48 * MB
    assert (_cg(cid, "cpu", "cpu.cfs_quota_us"), _cg(cid, "cpu", "cpu.cfs_period_us")) == ("25000", "50000")
    assert _cg(cid, "pids", "pids.max") == "30"
    ctr.reload()
    assert ctr.attrs["HostConfig"]["CpuQuota"] == 25000
    assert ctr.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
