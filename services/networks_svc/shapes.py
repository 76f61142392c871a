"""Pure glue for the containers service: attach requests from records, Docker's NetworkSettings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from networks_svc.model import (
    AttachRequest,
    AttachResult,
    EndpointConfig,
    EndpointSettings,
    NetworkAttachment,
    PortBinding,
)

__all__ = [
    "attach_request",
    "endpoint_json",
    "endpoints_config",
    "etc_hosts_entries",
    "host_gateway",
    "network_settings",
]


def endpoint_json(ep: EndpointSettings) -> dict[str, Any]:
    """One NetworkSettings.Networks entry (swagger EndpointSettings)."""
    c = ep.config
    ipam: dict[str, Any] | None = None
    if c.ipv4_address or c.ipv6_address or c.link_local_ips:
        ipam = {"IPv4Address": c.ipv4_address, "IPv6Address": c.ipv6_address}
        if c.link_local_ips:
            ipam["LinkLocalIPs"] = list(c.link_local_ips)
    return {
        "IPAMConfig": ipam, "Links": list(c.links) or None, "Aliases": list(c.aliases) or None,
        "MacAddress": ep.mac_address, "DriverOpts": dict(c.driver_opts) or None, "GwPriority": 0,
        "NetworkID": ep.network_id, "EndpointID": ep.endpoint_id, "Gateway": ep.gateway,
        "IPAddress": ep.ip_address, "IPPrefixLen": ep.ip_prefix_len, "IPv6Gateway": ep.ipv6_gateway,
        "GlobalIPv6Address": ep.global_ipv6_address, "GlobalIPv6PrefixLen": ep.global_ipv6_prefix_len,
        "DNSNames": list(ep.dns_names) or None,
    }  # fmt: skip


def endpoints_config(res: AttachResult) -> dict[str, Any]:
    """NetworkingConfig.EndpointsConfig of a container not running (after connect/disconnect)."""
    out: dict[str, Any] = {}
    for name, ep in res.endpoints.items():
        if name in ("host", "none"):
            continue
        full = endpoint_json(ep)
        out[name] = {k: full[k] for k in ("IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts")}
        out[name]["MacAddress"] = ep.config.mac_address or ep.mac_address
        out[name]["NetworkID"] = ep.network_id
    return out


def network_settings(res: AttachResult, exposed: Iterable[str]) -> dict[str, Any]:
    """NetworkSettings of a running container: Networks, Ports, SandboxKey and the legacy fields."""
    ports: dict[str, Any] = {key: None for key in exposed}
    for key in res.exposed:
        ports.setdefault(key, None)
    for p in res.ports:
        key = f"{p.private_port}/{p.protocol}"
        binds = ports.get(key) or []
        binds.append({"HostIp": p.host_ip, "HostPort": str(p.public_port)})
        ports[key] = binds
    nets = {name: endpoint_json(ep) for name, ep in res.endpoints.items()}
    out: dict[str, Any] = {
        "Bridge": "", "SandboxID": "", "SandboxKey": res.netns_path, "Ports": ports, "HairpinMode": False,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
        "Networks": nets,
    }  # fmt: skip
    bridge = nets.get("bridge")
    if bridge:  # the legacy top-level fields mirror the default bridge endpoint
        for key in (
            "EndpointID",
            "Gateway",
            "IPAddress",
            "IPPrefixLen",
            "MacAddress",
            "IPv6Gateway",
            "GlobalIPv6Address",
            "GlobalIPv6PrefixLen",
        ):
            out[key] = bridge[key]
    return out


def attach_request(
    container_id: str,
    name: str,
    config: Mapping[str, Any],
    host_config: Mapping[str, Any],
    networking_config: Mapping[str, Any],
    network_mode: str = "",
) -> AttachRequest:
    """The AttachRequest for a container record (Docker's Config, HostConfig, NetworkingConfig).

    ``network_mode`` overrides HostConfig.NetworkMode (``container:<full id>`` once resolved).
    """
    mode = network_mode or str(host_config.get("NetworkMode") or "bridge")
    if mode == "default":
        mode = "bridge"
    nets: list[NetworkAttachment] = []
    primary: EndpointConfig | None = None
    for key, ep in ((networking_config or {}).get("EndpointsConfig") or {}).items():
        ep = ep or {}
        ipam = ep.get("IPAMConfig") or {}
        cfg = EndpointConfig(
            ipv4_address=str(ipam.get("IPv4Address") or ""),
            ipv6_address=str(ipam.get("IPv6Address") or ""),
            aliases=list(ep.get("Aliases") or []),
            links=list(ep.get("Links") or []),
            mac_address=str(ep.get("MacAddress") or ""),
            driver_opts=dict(ep.get("DriverOpts") or {}),
            link_local_ips=[str(x) for x in ipam.get("LinkLocalIPs") or []],
        )
        net = mode if key in ("default", mode) else key
        if net == mode:
            primary = cfg
        nets.append(NetworkAttachment(net, cfg))
    if primary is None and mode not in ("host", "none") and not mode.startswith("container:"):
        primary = EndpointConfig()
        nets.insert(0, NetworkAttachment(mode, primary))
    if primary is not None:
        for link in host_config.get("Links") or []:
            if link not in primary.links:
                primary.links.append(link)
        if not primary.mac_address and config.get("MacAddress"):
            primary.mac_address = str(config["MacAddress"])
    binds = {str(k): [PortBinding(str(b.get("HostIp") or ""), str(b.get("HostPort") or "")) for b in v or []]
             for k, v in (host_config.get("PortBindings") or {}).items()}  # fmt: skip
    exposed = list(config.get("ExposedPorts") or {})
    exposed += [k for k in binds if k not in exposed]
    return AttachRequest(
        container_id=container_id, container_name=name.removeprefix("/"), network_mode=mode, networks=nets,
        hostname=str(config.get("Hostname") or ""), domainname=str(config.get("Domainname") or ""),
        port_bindings=binds, publish_all_ports=bool(host_config.get("PublishAllPorts")),
        exposed_ports=exposed)  # fmt: skip


def etc_hosts_entries(res: AttachResult, hostname: str, domainname: str) -> tuple[str, list[str]]:
    """(own address line, extra lines) for /etc/hosts; own address is 127.0.0.1 without one."""
    ip = next((ep.ip_address for ep in res.endpoints.values() if ep.ip_address), "")
    fqdn = f"{hostname}.{domainname}" if domainname else hostname
    own = f"{ip or '127.0.0.1'}\t{fqdn}" + (f" {hostname}" if fqdn != hostname else "")
    return own, list(res.hosts_entries)


def host_gateway(res: AttachResult) -> str:
    """The address --add-host name:host-gateway stands for: the host's side of the first network."""
    return next((ep.gateway for ep in res.endpoints.values() if ep.gateway), "")
