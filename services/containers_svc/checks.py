"""Create-time checks dockerd makes that the generic HostConfig validation does not: JSON types,
capability names, cpuset ranges (all 400s with moby's texts, before anything is allocated)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import errdefs
from ocirun import CAPABILITIES

__all__ = ["check_create", "parse_uint_list"]

_INT64 = ("Memory", "MemorySwap", "MemoryReservation", "KernelMemory", "KernelMemoryTCP", "NanoCpus",
          "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpuShares", "PidsLimit",
          "ShmSize", "CpuCount", "CpuPercent", "MemorySwappiness", "IOMaximumIOps",
          "IOMaximumBandwidth")  # fmt: skip
_INT = {"BlkioWeight": "uint16", "OomScoreAdj": "int"}
_BOOL = ("Privileged", "ReadonlyRootfs", "AutoRemove", "PublishAllPorts", "OomKillDisable", "Init")
_STR = ("NetworkMode", "IpcMode", "PidMode", "UTSMode", "UsernsMode", "CgroupnsMode", "CgroupParent",
        "CpusetCpus", "CpusetMems", "Runtime", "VolumeDriver", "ContainerIDFile", "Cgroup",
        "Isolation")  # fmt: skip
_STR_LIST = ("Binds", "CapAdd", "CapDrop", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd",
             "Links", "SecurityOpt", "VolumesFrom", "DeviceCgroupRules", "MaskedPaths",
             "ReadonlyPaths")  # fmt: skip
_OBJECT = ("RestartPolicy", "LogConfig", "PortBindings", "Tmpfs", "Sysctls", "StorageOpt", "Annotations")
_LIST = ("Devices", "Ulimits", "Mounts", "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps",
         "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "DeviceRequests", "ConsoleSize")  # fmt: skip


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return f"number {json.dumps(v)}"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _type_error(field: str, value: Any, go_type: str) -> errdefs.InvalidArgument:
    # Go's encoding/json UnmarshalTypeError, as moby returns it for a create body
    kind = _json_kind(value)
    if kind.startswith("number") and not go_type.startswith(("int", "uint")):
        kind = "number"
    return errdefs.InvalidArgument(
        f"json: cannot unmarshal {kind} into Go struct field HostConfig.HostConfig.{field} of type {go_type}"
    )


def _check_types(hc: Mapping[str, Any]) -> None:
    for key, go_type in [*((k, "int64") for k in _INT64), *_INT.items()]:
        v = hc.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise _type_error(key, v, go_type)
    for key in _BOOL:
        v = hc.get(key)
        if v is not None and not isinstance(v, bool):
            raise _type_error(key, v, "bool")
    for key in _STR:
        v = hc.get(key)
        if v is not None and not isinstance(v, str):
            raise _type_error(key, v, "string")
    for key in _STR_LIST:
        v = hc.get(key)
        if v is None:
            continue
        if not isinstance(v, list):
            raise _type_error(key, v, "[]string")
        for item in v:
            if not isinstance(item, str):
                raise _type_error(key, item, "string")
    for key in _OBJECT:
        v = hc.get(key)
        if v is not None and not isinstance(v, dict):
            raise _type_error(key, v, f"container.{key}" if key in ("RestartPolicy", "LogConfig")
                              else "map[string]string")  # fmt: skip
    for key in _LIST:
        v = hc.get(key)
        if v is not None and not isinstance(v, list):
            raise _type_error(key, v, "[]" + key.removesuffix("s"))


def _check_caps(hc: Mapping[str, Any]) -> None:
    # moby validateCapabilities: NormalizeLegacyCapabilities, wrapped
    for key in ("CapAdd", "CapDrop"):
        for raw in hc.get(key) or []:
            c = raw.upper()
            if c == "ALL":
                continue
            if not c.startswith("CAP_"):
                c = "CAP_" + c
            if c not in CAPABILITIES:
                raise errdefs.InvalidArgument(f"invalid {key}: unknown capability: {json.dumps(c)}")


def parse_uint_list(text: str) -> set[int]:
    """moby parsers.ParseUintList: ``0-2,4``; ValueError ``invalid format: <text>``."""
    out: set[int] = set()
    if text == "":
        return out
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"invalid format: {text}")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"invalid range format: {part}")
        out.update(range(a, b + 1))
    return out


def _online(path: str, default: str) -> str:
    try:
        return Path(path).read_text().strip() or default
    except OSError:
        return default


def _check_cpuset(hc: Mapping[str, Any]) -> None:
    for key, what, sysfile, label in (
        ("CpusetCpus", "cpus", "/sys/fs/cgroup/cpuset/cpuset.cpus", "CPUs"),
        ("CpusetMems", "mems", "/sys/fs/cgroup/cpuset/cpuset.mems", "memory nodes"),
    ):
        want = hc.get(key) or ""
        if not want:
            continue
        try:
            asked = parse_uint_list(want)
        except ValueError as e:
            raise errdefs.InvalidArgument(f"Invalid value {want} for cpuset {what}: {e}") from None
        fallback = "/sys/devices/system/cpu/online" if what == "cpus" else "/sys/devices/system/node/online"
        have_text = _online(sysfile, "") or _online(fallback, "0")
        try:
            have = parse_uint_list(have_text)
        except ValueError:
            continue
        if not asked <= have:
            raise errdefs.InvalidArgument(
                f"Requested {label} are not available - requested {want}, available: {have_text}")


def check_create(hc: Mapping[str, Any]) -> None:
    """Raise errdefs.InvalidArgument (moby's text) for a HostConfig dockerd refuses at create."""
    _check_types(hc)
    _check_caps(hc)
    _check_cpuset(hc)
