"""docker update: moby's validation and merge of an UpdateConfig into HostConfig, and the OCI
``linux.resources`` that ``crun update`` applies to a running container."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import errdefs
from berthapi.containers.v1 import containers_pb2 as pb
from containers_svc.config import MIN_MEMORY, restart_policy

__all__ = [
    "UPDATE_FIELDS",
    "apply_update",
    "blkio_weight_supported",
    "lift_pids_limit",
    "oci_resources",
    "parse_cpuset",
    "update_from_proto",
    "update_to_proto",
    "verify_update",
]

# Docker UpdateConfig key -> berthapi Resources field (update_mask path "resources.<field>").
UPDATE_FIELDS: dict[str, str] = {
    "CpuShares": "cpu_shares", "Memory": "memory", "NanoCpus": "nano_cpus", "CgroupParent": "cgroup_parent",
    "BlkioWeight": "blkio_weight", "CpuPeriod": "cpu_period", "CpuQuota": "cpu_quota",
    "CpuRealtimePeriod": "cpu_realtime_period", "CpuRealtimeRuntime": "cpu_realtime_runtime",
    "CpusetCpus": "cpuset_cpus", "CpusetMems": "cpuset_mems", "MemoryReservation": "memory_reservation",
    "MemorySwap": "memory_swap", "MemorySwappiness": "memory_swappiness",
    "OomKillDisable": "oom_kill_disable", "PidsLimit": "pids_limit",
}  # fmt: skip
# Fields moby copies when non-zero (container.UpdateContainer).
_COPY_IF_SET = ("BlkioWeight", "CpuShares", "NanoCpus", "CpuPeriod", "CpuQuota", "CpusetCpus", "CpusetMems",
                "MemorySwap", "MemoryReservation", "CpuRealtimePeriod", "CpuRealtimeRuntime")  # fmt: skip


def _i(m: Mapping[str, Any], key: str) -> int:
    try:
        return int(m.get(key) or 0)
    except (TypeError, ValueError):
        raise errdefs.InvalidArgument(f"invalid value for {key}: {m.get(key)!r}") from None


def parse_cpuset(text: str) -> set[int]:
    """"0-2,4" -> {0, 1, 2, 4}. Raises ValueError on bad syntax."""
    out: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(text)
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(text)
        out.update(range(a, b + 1))
    return out


def _available(name: str) -> str:
    try:
        return Path("/sys/fs/cgroup/cpuset", name).read_text().strip()
    except OSError:
        return ""


def blkio_weight_supported() -> bool:
    """Whether the blkio controller has a weight file (CFQ or BFQ) (blocking)."""
    base = Path("/sys/fs/cgroup/blkio")
    return (base / "blkio.weight").exists() or (base / "blkio.bfq.weight").exists()


def verify_update(upd: Mapping[str, Any], ncpu: int | None = None) -> list[str]:
    """moby verifyContainerSettings(update=true) on the update's resources; returns warnings.

    Raises:
        errdefs.InvalidArgument: with moby's texts.
    """
    warnings: list[str] = []
    memory, swap, reservation = _i(upd, "Memory"), _i(upd, "MemorySwap"), _i(upd, "MemoryReservation")
    if memory != 0 and memory < MIN_MEMORY:
        raise errdefs.InvalidArgument("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap > 0 and swap < memory:
        raise errdefs.InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if reservation != 0 and reservation < MIN_MEMORY:
        raise errdefs.InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise errdefs.InvalidArgument(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    if _i(upd, "CpuShares") < 0:
        raise errdefs.InvalidArgument("invalid CPU shares: must be a positive value")
    nano = _i(upd, "NanoCpus")
    cpus = ncpu if ncpu is not None else (os.cpu_count() or 1)
    if nano and (nano < 0 or nano > cpus * 1_000_000_000):
        raise errdefs.InvalidArgument(
            f"Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
        )
    if nano and _i(upd, "CpuPeriod"):
        raise errdefs.InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano and _i(upd, "CpuQuota"):
        raise errdefs.InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    period = _i(upd, "CpuPeriod")
    if period and not 1000 <= period <= 1_000_000:
        raise errdefs.InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s")
    quota = _i(upd, "CpuQuota")
    if 0 < quota < 1000:
        raise errdefs.InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    weight = _i(upd, "BlkioWeight")
    if weight and not 10 <= weight <= 1000:
        raise errdefs.InvalidArgument("Range of blkio weight is from 10 to 1000")
    cpusets = (("CpusetCpus", "cpus", "cpuset.cpus"), ("CpusetMems", "mems", "cpuset.mems"))
    for key, label, avail_file in cpusets:
        value = str(upd.get(key) or "")
        if not value:
            continue
        try:
            wanted = parse_cpuset(value)
        except ValueError:
            raise errdefs.InvalidArgument(f"Invalid value {value} for cpuset {label}") from None
        avail = _available(avail_file)
        if avail and not wanted <= parse_cpuset(avail):
            noun = "CPUs" if label == "cpus" else "memory nodes"
            raise errdefs.InvalidArgument(
                f"Requested {noun} are not available - requested {value}, available: {avail}"
            )
    swappiness = upd.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= int(swappiness) <= 100:
        raise errdefs.InvalidArgument(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    if (upd.get("RestartPolicy") or {}).get("Name"):
        restart_policy({"RestartPolicy": upd["RestartPolicy"]})
    return warnings


def _conflict(cid: str, why: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"Cannot update container {cid}: {why}")


def apply_update(cid: str, hc: Mapping[str, Any], upd: Mapping[str, Any]) -> dict[str, Any]:
    """moby container.UpdateContainer: the new HostConfig; zero values leave fields alone.

    Raises:
        errdefs.InvalidArgument: ``Cannot update container <id>: <why>`` for conflicting options.
    """
    out: dict[str, Any] = dict(hc)
    cur_memory, cur_swap = _i(out, "Memory"), _i(out, "MemorySwap")
    if cur_memory > 0 and cur_swap == 0:
        cur_swap = out["MemorySwap"] = 2 * cur_memory  # what the runtime got at start (Docker's default)
    nano, period, quota = _i(upd, "NanoCpus"), _i(upd, "CpuPeriod"), _i(upd, "CpuQuota")
    already = "Conflicting options: {} cannot be updated as {} has already been set"
    if nano > 0 and _i(out, "CpuPeriod") > 0:
        raise _conflict(cid, already.format("Nano CPUs", "CPU Period"))
    if nano > 0 and _i(out, "CpuQuota") > 0:
        raise _conflict(cid, already.format("Nano CPUs", "CPU Quota"))
    if period > 0 and _i(out, "NanoCpus") > 0:
        raise _conflict(cid, already.format("CPU Period", "NanoCPUs"))
    if quota > 0 and _i(out, "NanoCpus") > 0:
        raise _conflict(cid, already.format("CPU Quota", "NanoCPUs"))
    for key in _COPY_IF_SET:
        if upd.get(key):
            out[key] = upd[key]
    memory, swap = _i(upd, "Memory"), _i(upd, "MemorySwap")
    if memory != 0:
        if memory > cur_swap and swap == 0 and cur_swap != -1:
            raise _conflict(cid, "Memory limit should be smaller than already set memoryswap limit, "
                                 "update the memoryswap at the same time")  # fmt: skip
        out["Memory"] = memory
    if "PidsLimit" in upd and upd["PidsLimit"] is not None:
        limit = int(upd["PidsLimit"])
        out["PidsLimit"] = limit if limit > 0 else None  # 0 and negatives mean unlimited
    pol = upd.get("RestartPolicy") or {}
    if pol.get("Name"):
        if pol["Name"] != "no" and out.get("AutoRemove"):
            raise _conflict(
                cid, "Restart policy cannot be updated because AutoRemove is enabled for the container"
            )
        p = restart_policy({"RestartPolicy": pol})
        out["RestartPolicy"] = {"Name": p.name, "MaximumRetryCount": p.maximum_retry_count}
    return out


def oci_resources(hc: Mapping[str, Any]) -> dict[str, Any]:
    """OCI ``linux.resources`` (memory, cpu, pids, blockIO) for ``crun update`` from a HostConfig.

    No pids limit gives no ``pids`` entry: crun 1.8 writes -1 verbatim to pids.max (EINVAL), so
    lifting a limit is :func:`lift_pids_limit`'s job.
    """
    out: dict[str, Any] = {}
    mem: dict[str, Any] = {}
    memory, swap = _i(hc, "Memory"), _i(hc, "MemorySwap")
    if memory > 0:
        mem["limit"] = memory
        mem["swap"] = swap if swap else 2 * memory
    elif swap:
        mem["swap"] = swap
    if _i(hc, "MemoryReservation"):
        mem["reservation"] = _i(hc, "MemoryReservation")
    if mem:
        out["memory"] = mem
    cpu: dict[str, Any] = {}
    if _i(hc, "CpuShares"):
        cpu["shares"] = _i(hc, "CpuShares")
    if _i(hc, "NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = _i(hc, "NanoCpus") * 100000 // 1_000_000_000
    if _i(hc, "CpuPeriod"):
        cpu["period"] = _i(hc, "CpuPeriod")
    if _i(hc, "CpuQuota"):
        cpu["quota"] = _i(hc, "CpuQuota")
    if hc.get("CpusetCpus"):
        cpu["cpus"] = str(hc["CpusetCpus"])
    if hc.get("CpusetMems"):
        cpu["mems"] = str(hc["CpusetMems"])
    if cpu:
        out["cpu"] = cpu
    limit = hc.get("PidsLimit")
    if limit is not None and int(limit) > 0:
        out["pids"] = {"limit": int(limit)}
    if _i(hc, "BlkioWeight"):
        out["blockIO"] = {"weight": _i(hc, "BlkioWeight")}
    return out


def lift_pids_limit(pids_dir: Path) -> None:
    """Write "max" to the container's pids.max (blocking); a missing cgroup is left alone."""
    path = pids_dir / "pids.max"
    if path.exists():
        path.write_text("max")


# ---- gRPC -----------------------------------------------------------------------------------------


def update_to_proto(ref: str, upd: Mapping[str, Any]) -> pb.UpdateContainerRequest:
    req = pb.UpdateContainerRequest(ref=ref)
    for key, fname in UPDATE_FIELDS.items():
        value = upd.get(key)
        if value is None:
            continue
        setattr(req.resources, fname, type(getattr(req.resources, fname))(value))
        req.update_mask.paths.append(f"resources.{fname}")
    pol = upd.get("RestartPolicy")
    if isinstance(pol, Mapping):
        req.restart_policy.name = str(pol.get("Name") or "")
        req.restart_policy.maximum_retry_count = int(pol.get("MaximumRetryCount") or 0)
        req.update_mask.paths.append("restart_policy")
    return req


def update_from_proto(m: pb.UpdateContainerRequest) -> dict[str, Any]:
    paths = set(m.update_mask.paths)
    out: dict[str, Any] = {}
    for key, fname in UPDATE_FIELDS.items():
        if f"resources.{fname}" in paths:
            out[key] = getattr(m.resources, fname)
    if "restart_policy" in paths:
        out["RestartPolicy"] = {"Name": m.restart_policy.name,
                                "MaximumRetryCount": m.restart_policy.maximum_retry_count}  # fmt: skip
    return out
