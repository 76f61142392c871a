"""docker stats: cgroup v1 files to Docker's JSON, precpu, zeros for stopped containers, streaming."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import errdefs
from containers_svc.api import ContainerRecord, ContainerState
from containers_svc.stats import (
    cgroup_dirs,
    cgroup_pids,
    compose,
    read_sample,
    stats_from_proto,
    stats_stream,
    stats_to_proto,
    zero_stats,
)

CID = "d" * 64


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _rec(running: bool = True, pid: int = 0, mode: str = "none") -> ContainerRecord:
    state = ContainerState(status="running" if running else "exited", running=running, pid=pid)
    return ContainerRecord(id=CID, name="/web", created="", path="sh", args=[], config={},
                           host_config={"NetworkMode": mode}, networking_config={}, image="busybox",
                           image_id="sha256:x", state=state)  # fmt: skip


def _cgroup(root: Path) -> dict[str, Path]:
    files = {
        "cpuacct/cpuacct.usage": "3000000000\n",
        "cpuacct/cpuacct.usage_percpu": "1000000000 2000000000 \n",
        "cpuacct/cpuacct.stat": "user 150\nsystem 50\n",
        "cpu/cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 12345\n",
        "memory/memory.usage_in_bytes": "10485760\n",
        "memory/memory.max_usage_in_bytes": "20971520\n",
        "memory/memory.limit_in_bytes": "67108864\n",
        "memory/memory.failcnt": "0\n",
        "memory/memory.stat": "cache 1048576\nrss 4096\ntotal_inactive_file 524288\n",
        "pids/pids.current": "3\n",
        "pids/pids.max": "max\n",
        "blkio/blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\nTotal 12288\n",
        "blkio/blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
    }
    dirs: dict[str, Path] = {}
    for rel, text in files.items():
        ctrl, name = rel.split("/")
        d = root / ctrl / "berth" / CID
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)
        dirs[ctrl] = d
    return dirs


def test_read_sample_from_cgroup_v1_files(tmp_path: Path) -> None:
    s = read_sample(_rec(), _cgroup(tmp_path))
    cpu = s["cpu_stats"]
    assert cpu["cpu_usage"]["total_usage"] == 3_000_000_000
    assert cpu["cpu_usage"]["percpu_usage"] == [1_000_000_000, 2_000_000_000]
    assert cpu["cpu_usage"]["usage_in_usermode"] == 1_500_000_000  # 150 ticks at USER_HZ 100
    assert cpu["cpu_usage"]["usage_in_kernelmode"] == 500_000_000
    assert cpu["throttling_data"] == {"periods": 10, "throttled_periods": 2, "throttled_time": 12345}
    assert cpu["system_cpu_usage"] > 0 and cpu["online_cpus"] >= 1
    mem = s["memory_stats"]
    assert (mem["usage"], mem["max_usage"], mem["limit"]) == (10485760, 20971520, 67108864)
    assert mem["stats"]["total_inactive_file"] == 524288 and "failcnt" not in mem
    assert s["pids_stats"] == {"current": 3}  # "max" -> no limit, omitted as Go's omitempty
    blk = s["blkio_stats"]["io_service_bytes_recursive"]
    assert blk == [{"major": 8, "minor": 0, "op": "Read", "value": 4096},
                   {"major": 8, "minor": 0, "op": "Write", "value": 8192}]  # fmt: skip
    assert "networks" not in s


def test_compose_fills_precpu_from_the_previous_sample(tmp_path: Path) -> None:
    dirs = _cgroup(tmp_path)
    rec = _rec()
    first = read_sample(rec, dirs)
    (dirs["cpuacct"] / "cpuacct.usage").write_text("4000000000\n")
    second = read_sample(rec, dirs)
    doc = compose(rec, second, first)
    assert doc["precpu_stats"]["cpu_usage"]["total_usage"] == 3_000_000_000
    assert doc["cpu_stats"]["cpu_usage"]["total_usage"] == 4_000_000_000
    assert doc["preread"] != "0001-01-01T00:00:00Z" and doc["read"] >= doc["preread"]
    assert (doc["name"], doc["id"], doc["num_procs"], doc["storage_stats"]) == ("/web", CID, 0, {})
    one = compose(rec, first, None)
    assert one["preread"] == "0001-01-01T00:00:00Z"
    assert one["precpu_stats"]["cpu_usage"]["total_usage"] == 0


def test_zero_stats_shape() -> None:
    z = zero_stats(_rec(running=False))
    assert z["read"] == "0001-01-01T00:00:00Z" and z["memory_stats"] == {} and z["pids_stats"] == {}
    assert z["cpu_stats"]["cpu_usage"] == {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}
    assert z["blkio_stats"]["io_service_bytes_recursive"] is None
    assert "networks" not in z and "system_cpu_usage" not in z["cpu_stats"]


def test_cgroup_dirs_fallback_and_pids(tmp_path: Path) -> None:
    dirs = _cgroup(tmp_path)
    found = cgroup_dirs(_rec(running=False), root=tmp_path)
    assert found["memory"] == dirs["memory"] and found["pids"] == dirs["pids"]
    (dirs["pids"] / "cgroup.procs").write_text("10\n11\n")
    sub = dirs["pids"] / "sub"
    sub.mkdir()
    (sub / "cgroup.procs").write_text("12\n")
    assert cgroup_pids(found) == {10, 11, 12}
    custom = _rec(running=False)
    custom.host_config["CgroupParent"] = "/other"
    assert cgroup_dirs(custom, root=tmp_path)["memory"] == tmp_path / "memory" / "other" / CID


def test_networks_of_the_own_netns() -> None:
    import os

    s = read_sample(_rec(pid=os.getpid(), mode="bridge"), {})
    assert "lo" not in s.get("networks", {})
    assert "networks" not in read_sample(_rec(pid=os.getpid(), mode="host"), {})


def test_proto_round_trip(tmp_path: Path) -> None:
    rec = _rec()
    doc = compose(rec, read_sample(rec, _cgroup(tmp_path)), None)
    doc["networks"] = {"eth0": {"rx_bytes": 1, "rx_packets": 2, "rx_errors": 0, "rx_dropped": 0,
                                "tx_bytes": 3, "tx_packets": 4, "tx_errors": 0, "tx_dropped": 0}}  # fmt: skip
    msg = stats_to_proto(doc)
    assert (msg.memory_usage, msg.blkio_read_bytes, msg.blkio_write_bytes, msg.pids_current) == (
        10485760, 4096, 8192, 3)
    assert msg.networks["eth0"].tx_bytes == 3
    assert stats_from_proto(msg) == doc


@pytest.mark.anyio
async def test_stream_of_a_stopped_container_gives_zeros_until_removed() -> None:
    rec = _rec(running=False)
    calls = 0

    def get() -> ContainerRecord:
        nonlocal calls
        calls += 1
        if calls > 3:
            raise errdefs.NotFound("No such container: web")
        return rec

    docs: list[dict[str, Any]] = [d async for d in stats_stream(get, True, False, interval=0.01)]
    assert len(docs) == 3 and all(d["read"] == "0001-01-01T00:00:00Z" for d in docs)
    one = [d async for d in stats_stream(lambda: rec, False, False, interval=0.01)]
    assert len(one) == 1 and one[0]["id"] == CID


@pytest.mark.anyio
async def test_no_stream_samples_twice_for_precpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from containers_svc import stats

    dirs = _cgroup(tmp_path)
    monkeypatch.setattr(stats, "cgroup_dirs", lambda rec, root=tmp_path: dirs)
    rec = _rec()
    [doc] = [d async for d in stats_stream(lambda: rec, False, False, interval=0.01)]
    assert doc["preread"] != "0001-01-01T00:00:00Z"
    assert doc["precpu_stats"]["system_cpu_usage"] > 0
    [shot] = [d async for d in stats_stream(lambda: rec, False, True, interval=0.01)]
    assert shot["preread"] == "0001-01-01T00:00:00Z"
