"""Docker Engine API JSON shapes built from berth's records (swagger field names and defaults)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dockerapi.reference import parse_reference
from dockerapi.timefmt import rfc3339_seconds
from dockerapi.versions import at_least
from images_svc.model import DeleteItem, HistoryItem, ImageRecord
from system_svc.service import InfoReport, VersionReport

__all__ = [
    "delete_items", "history", "image_inspect", "image_summary", "info", "unix_seconds", "version",
]

_ZERO_TIME = "0001-01-01T00:00:00Z"
_CONTAINER_ONLY = {  # container-config keys that image inspect carried before API 1.50
    "Hostname": "", "Domainname": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Image": "",
}
_IMAGE_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Volumes",
                      "WorkingDir", "Entrypoint", "OnBuild", "Labels", "StopSignal", "Shell")


def unix_seconds(rfc3339: str) -> int:
    """Whole unix seconds of an RFC 3339 time; 0 if it does not parse."""
    return int(rfc3339_seconds(rfc3339))


def _familiar(refs: list[str]) -> list[str]:
    return [parse_reference(r).familiar_string() for r in refs]


def _config(rec: ImageRecord) -> dict[str, Any]:
    try:
        cfg = json.loads(rec.config_json)
    except ValueError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def image_summary(rec: ImageRecord, api_version: str) -> dict[str, Any]:
    """One entry of GET /images/json."""
    cfg = _config(rec)
    labels = (cfg.get("config") or {}).get("Labels") or {}
    out: dict[str, Any] = {
        "Containers": -1,
        "Created": unix_seconds(rec.created),
        "Id": rec.id,
        "Labels": labels,
        "ParentId": rec.parent,
        "RepoDigests": _familiar(rec.repo_digests),
        "RepoTags": _familiar(rec.repo_tags),
        "SharedSize": -1,
        "Size": rec.size,
    }
    if not at_least(api_version, "1.44"):
        out["VirtualSize"] = rec.size
    return out


def image_inspect(rec: ImageRecord, api_version: str, data_root: Path) -> dict[str, Any]:
    """GET /images/{name}/json."""
    cfg = _config(rec)
    inner = cfg.get("config") or {}
    config: dict[str, Any] = {}
    if not at_least(api_version, "1.50"):
        config.update(_CONTAINER_ONLY)
    for key in _IMAGE_CONFIG_KEYS:
        if key in inner:
            config[key] = inner[key]
        elif not at_least(api_version, "1.50") and key in ("Env", "Cmd", "Volumes", "Entrypoint",
                                                            "OnBuild", "Labels", "WorkingDir", "User"):
            config[key] = "" if key in ("WorkingDir", "User") else None
    dirs = [str(data_root / "layers" / c.removeprefix("sha256:") / "diff") for c in rec.chain_ids]
    graph: dict[str, Any] = {"Name": "overlay2", "Data": None}
    if dirs:
        data = {"MergedDir": "", "UpperDir": dirs[-1], "WorkDir": ""}
        if len(dirs) > 1:
            data["LowerDir"] = ":".join(reversed(dirs[:-1]))
        graph["Data"] = data
    out: dict[str, Any] = {
        "Id": rec.id,
        "RepoTags": _familiar(rec.repo_tags),
        "RepoDigests": _familiar(rec.repo_digests),
        "Parent": rec.parent,
        "Comment": str(cfg.get("comment", "")),
        "Created": rec.created or None,
        "DockerVersion": str(cfg.get("docker_version", "")),
        "Author": str(cfg.get("author", "")),
        "Config": config,
        "Architecture": str(cfg.get("architecture", "")),
        "Os": str(cfg.get("os", "")),
        "Size": rec.size,
        "GraphDriver": graph,
        "RootFS": {"Type": "layers", "Layers": list((cfg.get("rootfs") or {}).get("diff_ids") or [])},
        "Metadata": {"LastTagTime": _ZERO_TIME},
    }
    if cfg.get("variant"):
        out["Variant"] = cfg["variant"]
    if cfg.get("os.version"):
        out["OsVersion"] = cfg["os.version"]
    if not at_least(api_version, "1.44"):
        out["VirtualSize"] = rec.size
    if not at_least(api_version, "1.45"):
        out["Container"] = str(cfg.get("container", ""))
        out["ContainerConfig"] = cfg.get("container_config") or {**_CONTAINER_ONLY, "Cmd": None,
                                                                   "Env": None, "Labels": None}
    if at_least(api_version, "1.48") and rec.manifest_digest:
        out["Descriptor"] = {"mediaType": rec.manifest_media_type, "digest": rec.manifest_digest,
                             "size": rec.manifest_size}
    return out


def history(items: list[HistoryItem]) -> list[dict[str, Any]]:
    """GET /images/{name}/history."""
    return [{"Id": h.id, "Created": h.created, "CreatedBy": h.created_by, "Tags": h.tags or None,
             "Size": h.size, "Comment": h.comment} for h in items]


def delete_items(items: list[DeleteItem]) -> list[dict[str, str]]:
    """DELETE /images/{name} and the ImagesDeleted of prune."""
    return [{"Untagged": i.untagged} if i.untagged else {"Deleted": i.deleted} for i in items]


def version(v: VersionReport) -> dict[str, Any]:
    """GET /version."""
    details = {
        "ApiVersion": v.api_version, "Arch": v.arch, "BuildTime": "", "Experimental": "false",
        "GitCommit": v.git_commit, "GoVersion": v.runtime_version, "KernelVersion": v.kernel_version,
        "MinAPIVersion": v.min_api_version, "Os": v.os,
    }
    return {
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": v.version, "Details": details}],
        "Version": v.version,
        "ApiVersion": v.api_version,
        "MinAPIVersion": v.min_api_version,
        "GitCommit": v.git_commit,
        "GoVersion": v.runtime_version,
        "Os": v.os,
        "Arch": v.arch,
        "KernelVersion": v.kernel_version,
        "BuildTime": "",
    }


def info(i: InfoReport, api_version: str) -> dict[str, Any]:
    """GET /info."""
    insecure = ["127.0.0.0/8", *[r for r in i.insecure_registries if "/" in r]]
    out: dict[str, Any] = {
        "ID": i.node_id,
        "Containers": i.containers,
        "ContainersRunning": i.containers_running,
        "ContainersPaused": i.containers_paused,
        "ContainersStopped": i.containers_stopped,
        "Images": i.images,
        "Driver": i.driver,
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"],
                         ["Using metacopy", "false"], ["Native Overlay Diff", "true"],
                         ["userxattr", "false"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none", "null"],
                    "Authorization": None, "Log": ["json-file", "local", "none"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "CPUSet": True, "PidsLimit": True, "OomKillDisable": True,
        "IPv4Forwarding": True, "Debug": False, "NFd": 0, "NGoroutines": 0,
        "SystemTime": i.system_time,
        "LoggingDriver": i.logging_driver,
        "CgroupDriver": i.cgroup_driver,
        "CgroupVersion": i.cgroup_version,
        "NEventsListener": 0,
        "KernelVersion": i.kernel_version,
        "OperatingSystem": i.operating_system,
        "OSVersion": "",
        "OSType": i.os_type,
        "Architecture": i.architecture,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": None,
            "AllowNondistributableArtifactsHostnames": None,
            "InsecureRegistryCIDRs": insecure,
            "IndexConfigs": {
                "docker.io": {"Name": "docker.io", "Mirrors": i.registry_mirrors, "Secure": True,
                              "Official": True},
                **{r: {"Name": r, "Mirrors": [], "Secure": False, "Official": False}
                   for r in i.insecure_registries if "/" not in r},
            },
            "Mirrors": i.registry_mirrors,
        },
        "NCPU": i.ncpu,
        "MemTotal": i.mem_total,
        "GenericResources": None,
        "DockerRootDir": i.data_root,
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Name": i.name,
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": i.server_version,
        "Runtimes": {r: {"path": r} for r in i.runtimes},
        "DefaultRuntime": i.default_runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "catatonit",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": i.warnings or None,
    }
    if at_least(api_version, "1.44"):
        out["CDISpecDirs"] = []
    if at_least(api_version, "1.49"):  # deprecated fields, omitted from 1.49 on
        for key in ("AllowNondistributableArtifactsCIDRs", "AllowNondistributableArtifactsHostnames"):
            del out["RegistryConfig"][key]
        for key in ("ContainerdCommit", "RuncCommit", "InitCommit"):
            del out[key]["Expected"]
    if not at_least(api_version, "1.50"):
        out["BridgeNfIptables"] = True
        out["BridgeNfIp6tables"] = True
    return out
