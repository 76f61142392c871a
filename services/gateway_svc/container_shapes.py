"""Container JSON as dockerd sends it: inspect, ps summaries, Status strings, version gates."""

from __future__ import annotations

import copy
import json
import time
from typing import Any, Final

from containers_svc.api import ZERO_TIME, ContainerRecord, ContainerState, WaitEvent
from dockerapi.humanize import human_duration
from dockerapi.timefmt import rfc3339_seconds
from dockerapi.versions import at_least

__all__ = [
    "command_text",
    "container_inspect",
    "container_summary",
    "human_duration",
    "status_text",
    "wait_result",
]

# What dockerd (28.x, Linux) fills in for a Config the client left sparse.
_CONFIG_DEFAULTS: Final[dict[str, Any]] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": {},
}

# HostConfig as dockerd returns it for `docker create busybox` (empty-but-present values kept).
_HOST_CONFIG_DEFAULTS: Final[dict[str, Any]] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "bridge", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0],
    "CapAdd": None, "CapDrop": None, "CgroupnsMode": "host", "Dns": [], "DnsOptions": [],
    "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private", "Cgroup": "",
    "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
    "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
    "ShmSize": 67108864, "Runtime": "runc", "Isolation": "", "CpuShares": 0, "Memory": 0,
    "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
    "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
    "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
    "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
    "MemorySwappiness": None, "OomKillDisable": None, "PidsLimit": None, "Ulimits": [],
    "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    "MaskedPaths": None, "ReadonlyPaths": None,
}

# Keys a client may send as null that dockerd always answers with a value.
_NEVER_NULL: Final[dict[str, Any]] = {
    "LogConfig": {"Type": "json-file", "Config": {}}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "PortBindings": {}, "ConsoleSize": [0, 0], "Dns": [], "DnsOptions": [], "DnsSearch": [],
    "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
    "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "Devices": [], "Ulimits": [],
}

# EndpointSettings with every field dockerd sends (addresses empty until connected).
_ENDPOINT_DEFAULTS: Final[dict[str, Any]] = {
    "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
    "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
    "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
    "DNSNames": None,
}

# Top-level NetworkSettings fields; the deprecated ones are still sent by 1.50 (dropped in 1.52).
_NETWORK_SETTINGS_DEFAULTS: Final[dict[str, Any]] = {
    "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
    "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
    "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
    "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
}


def _since(rfc3339: str, now: float) -> str:
    return human_duration(max(0.0, now - rfc3339_seconds(rfc3339)))


def _is_zero(t: str) -> bool:
    return not t or t == ZERO_TIME or rfc3339_seconds(t) <= 0


def _health_suffix(health: dict[str, Any] | None) -> str:
    status = (health or {}).get("Status") or "none"
    if status == "none":
        return ""
    return " (health: starting)" if status == "starting" else f" ({status})"


def status_text(state: ContainerState, now: float | None = None) -> str:
    """The ps ``Status`` column (moby ``State.String``): ``Up 5 seconds``, ``Exited (0) 3 seconds ago``."""
    now = time.time() if now is None else now
    if state.running or state.status in ("running", "paused", "restarting"):
        if state.paused or state.status == "paused":
            return f"Up {_since(state.started_at, now)} (Paused)"
        if state.restarting or state.status == "restarting":
            return f"Restarting ({state.exit_code}) {_since(state.finished_at, now)} ago"
        return f"Up {_since(state.started_at, now)}{_health_suffix(state.health)}"
    if state.status == "removing":
        return "Removal In Progress"
    if state.dead or state.status == "dead":
        return "Dead"
    if _is_zero(state.started_at):
        return "Created"
    if _is_zero(state.finished_at):
        return ""
    return f"Exited ({state.exit_code}) {_since(state.finished_at, now)} ago"


def command_text(path: str, args: list[str]) -> str:
    """ps ``Command``: path and args joined, args with spaces in single quotes (as moby)."""
    if not args:
        return path
    quoted = [f"'{a}'" if " " in a else a for a in args]
    return f"{path} {' '.join(quoted)}"


def _plain_copy(v: Any) -> Any:
    """deepcopy for JSON-shaped values, several times faster (ps copies this per row)."""
    if isinstance(v, dict):
        return {k: _plain_copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain_copy(x) for x in v]
    return v


def _with_defaults(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = {**defaults, **given}
    for k, v in out.items():  # only nested values need copying (callers mutate those)
        if isinstance(v, dict | list):
            out[k] = _plain_copy(v)
    return out


def _host_config(rec: ContainerRecord, api_version: str) -> dict[str, Any]:
    hc = _with_defaults(_HOST_CONFIG_DEFAULTS, rec.host_config)
    for key, value in _NEVER_NULL.items():
        if hc.get(key) is None:
            hc[key] = copy.deepcopy(value)
    if not hc.get("NetworkMode"):
        hc["NetworkMode"] = "bridge"
    log = hc["LogConfig"]
    if isinstance(log, dict) and log.get("Config") is None:
        log["Config"] = {}
    rp = hc["RestartPolicy"]
    if isinstance(rp, dict) and not rp.get("Name"):
        rp["Name"] = "no"
    # The CLI sends -1 and "" for "unset": dockerd answers null and the mode in effect (berth
    # never unshares the cgroup namespace).
    if hc.get("MemorySwappiness") == -1:
        hc["MemorySwappiness"] = None
    if not hc.get("CgroupnsMode"):
        hc["CgroupnsMode"] = "host"
    if not at_least(api_version, "1.46"):
        hc.pop("Annotations", None)  # 1.46+
    return hc


def _config(rec: ContainerRecord, api_version: str) -> dict[str, Any]:
    cfg = _with_defaults(_CONFIG_DEFAULTS, rec.config)
    if cfg.get("Labels") is None:
        cfg["Labels"] = {}
    if at_least(api_version, "1.44"):
        cfg.pop("MacAddress", None)  # 1.44+: per-endpoint only
    return cfg


def _endpoint_names(rec: ContainerRecord) -> list[str]:
    endpoints = (rec.networking_config or {}).get("EndpointsConfig") or {}
    if endpoints:
        return list(endpoints)
    mode = str(rec.host_config.get("NetworkMode") or "bridge")
    if mode == "default":
        mode = "bridge"
    if mode.startswith("container:"):
        return []  # shares another container's stack: no endpoints of its own
    return [mode]


def _short_id_aliases(rec: ContainerRecord, network: str, aliases: Any, api_version: str) -> Any:
    # moby >= 25 adds the short ID (and hostname) to user-defined networks for requests < 1.45.
    if at_least(api_version, "1.45") or network in ("bridge", "host", "none", "default"):
        return aliases
    extra = [rec.id[:12], str(rec.config.get("Hostname") or "")]
    out = list(aliases or [])
    for a in extra:
        if a and a not in out:
            out.append(a)
    return out


def _live_network(rec: ContainerRecord) -> dict[str, Any] | None:
    """NetworkSettings the networks service realised, while the container runs."""
    ns = rec.network_settings or {}
    nets = ns.get("Networks") or {}
    if rec.state.running and any((ep or {}).get("NetworkID") for ep in nets.values()):
        return ns
    return None


def _networks(rec: ContainerRecord, api_version: str, *, inspect: bool) -> dict[str, Any]:
    endpoints = (rec.networking_config or {}).get("EndpointsConfig") or {}
    live = _live_network(rec)
    names = _endpoint_names(rec)
    if live is not None:
        endpoints = live["Networks"]
        names = list(endpoints)
    out: dict[str, Any] = {}
    for name in names:
        ep = _with_defaults(_ENDPOINT_DEFAULTS, endpoints.get(name) or {})
        if inspect and (live is not None or at_least(api_version, "1.44")):
            # Below 1.44 as dockerd 24 (which docker-py's suite pins): the short id joins the
            # aliases when the endpoint connects at start; created containers show them as given.
            ep["Aliases"] = _short_id_aliases(rec, name, ep.get("Aliases"), api_version)
        if not at_least(api_version, "1.44"):
            ep.pop("DNSNames", None)  # 1.44+
        if not at_least(api_version, "1.48"):
            ep.pop("GwPriority", None)  # 1.48+
        # The CLI names the default network "default" in EndpointsConfig; dockerd shows "bridge".
        out["bridge" if name == "default" else name] = ep
    return out


def _port_map(rec: ContainerRecord) -> dict[str, Any]:
    """NetworkSettings.Ports: published bindings while running, else ``{}``."""
    if not rec.state.running:
        return {}
    live = _live_network(rec)
    if live is not None:
        return copy.deepcopy(live.get("Ports") or {})
    exposed = rec.config.get("ExposedPorts") or {}
    bindings = rec.host_config.get("PortBindings") or {}
    out: dict[str, Any] = {}
    for port in [*exposed, *(p for p in bindings if p not in exposed)]:
        binds = bindings.get(port) or []
        if not binds:
            out[port] = None
            continue
        expanded: list[dict[str, str]] = []
        for b in binds:
            ip = str(b.get("HostIp") or "")
            host_port = str(b.get("HostPort") or "")
            for addr in ([ip] if ip else ["0.0.0.0", "::"]):
                expanded.append({"HostIp": addr, "HostPort": host_port})
        out[port] = expanded
    return out


def _summary_ports(ports: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for port, binds in ports.items():
        number, _, proto = port.partition("/")
        try:
            private = int(number.split("-")[0])
        except ValueError:
            continue
        if not binds:
            out.append({"PrivatePort": private, "Type": proto or "tcp"})
            continue
        for b in binds:
            entry: dict[str, Any] = {"IP": b["HostIp"], "PrivatePort": private, "Type": proto or "tcp"}
            if b["HostPort"].isdigit():
                entry["PublicPort"] = int(b["HostPort"])
            out.append(entry)
    return out


def _network_settings(rec: ContainerRecord, api_version: str) -> dict[str, Any]:
    ns = copy.deepcopy(_NETWORK_SETTINGS_DEFAULTS)
    ns["Ports"] = _port_map(rec)
    ns["Networks"] = _networks(rec, api_version, inspect=True)
    live = _live_network(rec)
    if live is not None:
        ns["SandboxKey"] = live.get("SandboxKey", "")
    # The legacy top-level address fields mirror the default bridge endpoint.
    bridge = ns["Networks"].get("bridge")
    if bridge:
        for key in ("EndpointID", "Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen",
                    "IPAddress", "IPPrefixLen", "IPv6Gateway", "MacAddress"):
            ns[key] = bridge.get(key, ns[key])
    return ns


def _state(state: ContainerState) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Status": state.status, "Running": state.running, "Paused": state.paused,
        "Restarting": state.restarting, "OOMKilled": state.oom_killed, "Dead": state.dead,
        "Pid": state.pid, "ExitCode": state.exit_code, "Error": state.error,
        "StartedAt": state.started_at or ZERO_TIME, "FinishedAt": state.finished_at or ZERO_TIME,
    }
    if state.health is not None:
        out["Health"] = state.health
    return out


def container_inspect(rec: ContainerRecord, api_version: str) -> dict[str, Any]:
    """GET /containers/{id}/json (swagger ContainerInspectResponse)."""
    out: dict[str, Any] = {
        "Id": rec.id,
        "Created": rec.created,
        "Path": rec.path,
        "Args": list(rec.args),
        "State": _state(rec.state),
        "Image": rec.image_id,
        "ResolvConfPath": rec.resolv_conf_path,
        "HostnamePath": rec.hostname_path,
        "HostsPath": rec.hosts_path,
        "LogPath": rec.log_path,
        "Name": rec.name if rec.name.startswith("/") else f"/{rec.name}",
        "RestartCount": rec.restart_count,
        "Driver": rec.driver,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": list(rec.exec_ids) or None,
        "HostConfig": _host_config(rec, api_version),
        "GraphDriver": {"Data": dict(rec.graph_driver) or None, "Name": rec.driver},
        "Mounts": copy.deepcopy(rec.mounts),
        "Config": _config(rec, api_version),
        "NetworkSettings": _network_settings(rec, api_version),
    }
    if rec.size_rw is not None:
        out["SizeRw"] = rec.size_rw
    if rec.size_root_fs is not None:
        out["SizeRootFs"] = rec.size_root_fs
    if not at_least(api_version, "1.44"):
        # < 1.44: Config.MacAddress mirrored the default endpoint's address.
        nets = out["NetworkSettings"]["Networks"]
        first = next(iter(nets.values()), None)
        out["Config"].setdefault("MacAddress", first["MacAddress"] if first else "")
    return out


def container_summary(rec: ContainerRecord, api_version: str, now: float | None = None) -> dict[str, Any]:
    """One entry of GET /containers/json (swagger ContainerSummary)."""
    networks = _networks(rec, api_version, inspect=False)
    host_config: dict[str, Any] = {"NetworkMode": str(rec.host_config.get("NetworkMode") or "bridge")}
    annotations = rec.host_config.get("Annotations")
    if annotations and at_least(api_version, "1.46"):
        host_config["Annotations"] = dict(annotations)
    out: dict[str, Any] = {
        "Id": rec.id,
        "Names": [rec.name if rec.name.startswith("/") else f"/{rec.name}"],
        "Image": rec.image,
        "ImageID": rec.image_id,
        "Command": command_text(rec.path, rec.args),
        "Created": int(rfc3339_seconds(rec.created)),
        "Ports": _summary_ports(_port_map(rec)),
        "Labels": dict(rec.config.get("Labels") or {}),
        "State": rec.state.status,
        "Status": status_text(rec.state, now),
        "HostConfig": host_config,
        "NetworkSettings": {"Networks": networks},
        "Mounts": _plain_copy(rec.mounts),
    }
    if rec.size_rw is not None:
        out["SizeRw"] = rec.size_rw
    if rec.size_root_fs is not None:
        out["SizeRootFs"] = rec.size_root_fs
    return out


def wait_result(ev: WaitEvent) -> bytes:
    """The body of POST /containers/{id}/wait once the condition is met."""
    error = {"Message": ev.error} if ev.error else None
    doc = {"StatusCode": ev.status_code, "Error": error}
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"
