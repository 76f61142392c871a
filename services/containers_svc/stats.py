"""docker stats: Docker's stats JSON read from the container's cgroup v1 files and its netns.

Files per sample (``<c>`` = /sys/fs/cgroup/<controller>/<container's path>):
cpuacct.usage, cpuacct.usage_percpu, cpuacct.stat, cpu.stat (throttling), memory.usage_in_bytes,
memory.max_usage_in_bytes, memory.failcnt, memory.limit_in_bytes, memory.stat, pids.current,
pids.max, blkio.throttle.io_service{_bytes,d}_recursive, /proc/stat (host CPU time) and
/proc/<pid>/net/dev (the container's interfaces, loopback left out as Docker does).
The container's cgroup paths come from /proc/<init pid>/cgroup (host view), else from
``<CgroupParent or /berth>/<id>`` (ocirun's ``linux.cgroupsPath``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio

import errdefs
from berthapi.containers.v1 import containers_pb2 as pb
from containers_svc.api import ZERO_TIME, ContainerRecord
from containers_svc.logs import format_timestamp

__all__ = [
    "STATS_INTERVAL",
    "cgroup_dirs",
    "cgroup_pids",
    "compose",
    "read_sample",
    "stats_from_proto",
    "stats_stream",
    "stats_to_proto",
    "zero_stats",
]

STATS_INTERVAL = 1.0  # moby's collector interval
CGROUP_ROOT = Path("/sys/fs/cgroup")
_NS = 1_000_000_000
_BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
               "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
               "io_time_recursive", "sectors_recursive")  # fmt: skip


# ---- where the container's cgroup is ------------------------------------------------------------


def cgroup_dirs(rec: ContainerRecord, root: Path = CGROUP_ROOT) -> dict[str, Path]:
    """controller -> the container's cgroup v1 directory (blocking: reads /proc)."""
    out: dict[str, Path] = {}
    pid = rec.state.pid if rec.state.running else 0
    if pid:
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            text = ""
        for line in text.splitlines():
            _hier, ctrls, path = [*line.split(":", 2), "", ""][:3]
            for ctrl in filter(None, ctrls.split(",")):
                out[ctrl.removeprefix("name=")] = root / ctrl.removeprefix("name=") / path.lstrip("/")
    if not out:
        parent = str(rec.host_config.get("CgroupParent") or "/berth").strip("/")
        rel = f"{parent}/{rec.id}" if parent else rec.id
        try:
            names = [d.name for d in root.iterdir() if d.is_dir() and d.name != "unified"]
        except OSError:
            names = []
        for name in names:
            out[name] = root / name / rel
    return out


def cgroup_pids(dirs: Mapping[str, Path]) -> set[int]:
    """Every process in the container's cgroup, sub-cgroups included (blocking)."""
    base = next((dirs[c] for c in ("pids", "freezer", "memory", "cpu", "systemd") if c in dirs), None)
    pids: set[int] = set()
    if base is None:
        return pids
    for dirpath, _dirs, files in os.walk(base):
        if "cgroup.procs" in files:
            try:
                pids.update(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                continue
    return pids


# ---- one sample -----------------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _int(path: Path) -> int:
    text = _read(path).strip()
    try:
        return int(text)
    except ValueError:
        return 0


def _kv(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _system_cpu_ns(clk_tck: int) -> int:
    """moby getSystemCPUUsage: the first 7 fields of /proc/stat's cpu line, in nanoseconds."""
    for line in _read(Path("/proc/stat")).splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu" and len(parts) >= 8:
            return sum(int(p) for p in parts[1:8]) * _NS // clk_tck
    return 0


def _blkio(d: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {k: None for k in _BLKIO_KEYS}
    if d is None:
        return out
    # containerd: the CFQ files when the kernel has them, else the throttle policy's.
    cfq = (d / "blkio.io_serviced_recursive").exists()
    names = {"io_service_bytes_recursive": "io_service_bytes_recursive", "io_serviced_recursive":
             "io_serviced_recursive"}  # fmt: skip
    for key, fname in names.items():
        path = d / (f"blkio.{fname}" if cfq else f"blkio.throttle.{fname}")
        entries: list[dict[str, Any]] = []
        for line in _read(path).splitlines():
            parts = line.split()
            if len(parts) != 3 or ":" not in parts[0]:
                continue  # "Total N"
            major, _, minor = parts[0].partition(":")
            try:
                entries.append({"major": int(major), "minor": int(minor), "op": parts[1],
                                "value": int(parts[2])})  # fmt: skip
            except ValueError:
                continue
        out[key] = entries
    return out


def _networks(pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in _read(Path(f"/proc/{pid}/net/dev")).splitlines()[2:]:
        name, _, rest = line.partition(":")
        name = name.strip()
        f = rest.split()
        if name == "lo" or len(f) < 16:
            continue
        n = [int(x) for x in f]
        out[name] = {
            "rx_bytes": n[0], "rx_packets": n[1], "rx_errors": n[2], "rx_dropped": n[3],
            "tx_bytes": n[8], "tx_packets": n[9], "tx_errors": n[10], "tx_dropped": n[11],
        }  # fmt: skip
    return out


def _machine_memory() -> int:
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def read_sample(rec: ContainerRecord, dirs: Mapping[str, Path] | None = None) -> dict[str, Any]:
    """One raw sample of a running container: cpu_stats, memory_stats, pids_stats, blkio_stats,
    networks (when it has its own netns) and ``read`` (unix ns). Blocking."""
    dirs = cgroup_dirs(rec) if dirs is None else dirs
    clk_tck = os.sysconf("SC_CLK_TCK") or 100
    now = time.time_ns()
    cpuacct, cpu, mem = dirs.get("cpuacct"), dirs.get("cpu"), dirs.get("memory")
    usage: dict[str, Any] = {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}
    throttling = {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
    if cpuacct is not None:
        usage["total_usage"] = _int(cpuacct / "cpuacct.usage")
        percpu = [int(x) for x in _read(cpuacct / "cpuacct.usage_percpu").split() if x.isdigit()]
        if percpu:
            usage["percpu_usage"] = percpu
        ticks = _kv(_read(cpuacct / "cpuacct.stat"))
        usage["usage_in_kernelmode"] = ticks.get("system", 0) * _NS // clk_tck
        usage["usage_in_usermode"] = ticks.get("user", 0) * _NS // clk_tck
    if cpu is not None:
        st = _kv(_read(cpu / "cpu.stat"))
        throttling = {"periods": st.get("nr_periods", 0), "throttled_periods": st.get("nr_throttled", 0),
                      "throttled_time": st.get("throttled_time", 0)}  # fmt: skip
    cpu_stats: dict[str, Any] = {"cpu_usage": usage, "system_cpu_usage": _system_cpu_ns(clk_tck),
                                 "online_cpus": os.sysconf("SC_NPROCESSORS_ONLN") or 1,
                                 "throttling_data": throttling}  # fmt: skip
    memory: dict[str, Any] = {}
    if mem is not None:
        machine = _machine_memory()
        limit = _int(mem / "memory.limit_in_bytes")
        if machine and limit > machine:
            limit = machine  # no limit set: moby reports the machine's memory
        memory = {"usage": _int(mem / "memory.usage_in_bytes"),
                  "max_usage": _int(mem / "memory.max_usage_in_bytes"),
                  "stats": _kv(_read(mem / "memory.stat")), "failcnt": _int(mem / "memory.failcnt"),
                  "limit": limit}  # fmt: skip
        memory = {k: v for k, v in memory.items() if v}  # Go omitempty
    pids: dict[str, Any] = {}
    if (pd := dirs.get("pids")) is not None:
        pids = {"current": _int(pd / "pids.current"), "limit": _int(pd / "pids.max")}  # "max" -> 0
        pids = {k: v for k, v in pids.items() if v}
    out: dict[str, Any] = {"read": now, "cpu_stats": cpu_stats, "memory_stats": memory,
                           "pids_stats": pids, "blkio_stats": _blkio(dirs.get("blkio"))}  # fmt: skip
    if str(rec.host_config.get("NetworkMode") or "") != "host" and rec.state.pid:
        nets = _networks(rec.state.pid)
        if nets:
            out["networks"] = nets
    return out


# ---- Docker's JSON --------------------------------------------------------------------------------


def _zero_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}  # fmt: skip


def zero_stats(rec: ContainerRecord) -> dict[str, Any]:
    """What moby sends for a container that is not running: zero values, name and id only."""
    return {
        "read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {},
        "blkio_stats": {k: None for k in _BLKIO_KEYS}, "num_procs": 0, "storage_stats": {},
        "cpu_stats": _zero_cpu(), "precpu_stats": _zero_cpu(), "memory_stats": {},
        "name": rec.name, "id": rec.id,
    }  # fmt: skip


def compose(rec: ContainerRecord, cur: Mapping[str, Any], pre: Mapping[str, Any] | None) -> dict[str, Any]:
    """Docker's StatsJSON from a sample and the previous one (None: precpu all zero)."""
    out: dict[str, Any] = {
        "read": format_timestamp(int(cur["read"])),
        "preread": format_timestamp(int(pre["read"])) if pre else ZERO_TIME,
        "pids_stats": dict(cur["pids_stats"]), "blkio_stats": dict(cur["blkio_stats"]),
        "num_procs": 0, "storage_stats": {}, "cpu_stats": dict(cur["cpu_stats"]),
        "precpu_stats": dict(pre["cpu_stats"]) if pre else _zero_cpu(),
        "memory_stats": dict(cur["memory_stats"]), "name": rec.name, "id": rec.id,
    }  # fmt: skip
    if "networks" in cur:
        out["networks"] = dict(cur["networks"])
    return out


async def stats_stream(
    get: Callable[[], ContainerRecord], stream: bool, one_shot: bool, interval: float = STATS_INTERVAL
) -> AsyncIterator[dict[str, Any]]:
    """Stats documents of the container ``get()`` returns (it raises errdefs.NotFound once the
    container is gone, which ends a stream).

    Not streaming: one document; without ``one_shot`` it is the second of two samples taken
    ``interval`` apart so precpu_stats is filled (moby primes the first frame the same way).
    """

    def active(r: ContainerRecord) -> bool:
        return r.state.running and not r.state.restarting

    async def sample(r: ContainerRecord) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(read_sample, r)

    rec = get()
    if not stream:
        if not active(rec):
            yield zero_stats(rec)
            return
        first = await sample(rec)
        if one_shot:
            yield compose(rec, first, None)
            return
        await anyio.sleep(interval)
        rec = get()
        if not active(rec):
            yield zero_stats(rec)
            return
        yield compose(rec, await sample(rec), first)
        return
    prev: dict[str, Any] | None = None
    next_at = time.monotonic()
    while True:
        if active(rec):
            cur = await sample(rec)
            yield compose(rec, cur, prev)
            prev = cur
        else:
            prev = None
            yield zero_stats(rec)
        next_at += interval
        await anyio.sleep(max(0.0, next_at - time.monotonic()))
        try:
            rec = get()
        except errdefs.NotFound:
            return


# ---- gRPC -----------------------------------------------------------------------------------------


def stats_to_proto(doc: Mapping[str, Any]) -> pb.ContainerStatsResponse:
    cpu = doc.get("cpu_stats") or {}
    total = int((cpu.get("cpu_usage") or {}).get("total_usage", 0))
    mem = doc.get("memory_stats") or {}
    blk_read = blk_write = 0
    for e in (doc.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(e.get("op", "")).lower()
        if op == "read":
            blk_read += int(e.get("value", 0))
        elif op == "write":
            blk_write += int(e.get("value", 0))
    nets = {name: pb.NetworkStats(**{k: int(v) for k, v in n.items()})
            for name, n in (doc.get("networks") or {}).items()}  # fmt: skip
    return pb.ContainerStatsResponse(
        read=str(doc.get("read", "")), cpu_total_usage=total,
        system_cpu_usage=int(cpu.get("system_cpu_usage", 0)), online_cpus=int(cpu.get("online_cpus", 0)),
        memory_usage=int(mem.get("usage", 0)), memory_limit=int(mem.get("limit", 0)),
        blkio_read_bytes=blk_read, blkio_write_bytes=blk_write,
        pids_current=int((doc.get("pids_stats") or {}).get("current", 0)), networks=nets,
        stats_json=json.dumps(doc).encode(),
    )  # fmt: skip


def stats_from_proto(m: pb.ContainerStatsResponse) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(m.stats_json or b"{}")
    return doc
