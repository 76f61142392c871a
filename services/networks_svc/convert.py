"""Pure conversions between the networks service's records and berthapi.networks.v1 messages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from berthapi.networks.v1 import networks_pb2 as pb
from grpckit.types import filters_from_proto, filters_to_proto
from networks_svc.model import (
    AttachRequest,
    AttachResult,
    EndpointConfig,
    EndpointResource,
    EndpointSettings,
    IPAMConfig,
    IPAMPool,
    Network,
    NetworkAttachment,
    NetworkCreate,
    PortBinding,
    PortMapping,
)
from networks_svc.shapes import endpoint_json

__all__ = [
    "attach_request_from_proto", "attach_request_to_proto", "attach_result_from_proto",
    "attach_result_to_proto", "create_from_proto", "create_to_proto", "endpoint_config_from_proto",
    "endpoint_config_to_proto", "filters_from_proto", "filters_to_proto", "network_from_proto",
    "network_to_proto", "settings_json_from_proto", "settings_json_to_proto",
]  # fmt: skip


def _ipam_to(i: IPAMConfig) -> pb.IPAM:
    return pb.IPAM(driver=i.driver, options=i.options, options_given=i.options_given, config=[
        pb.IPAMPool(subnet=p.subnet, ip_range=p.ip_range, gateway=p.gateway, aux_addresses=p.aux_addresses)
        for p in i.config])  # fmt: skip


def _ipam_from(m: pb.IPAM) -> IPAMConfig:
    return IPAMConfig(driver=m.driver or "default", options=dict(m.options), config=[
        IPAMPool(p.subnet, p.ip_range, p.gateway, dict(p.aux_addresses)) for p in m.config],
        options_given=m.options_given)  # fmt: skip


def network_to_proto(n: Network) -> pb.Network:
    return pb.Network(
        id=n.id, name=n.name, created=n.created, scope=n.scope, driver=n.driver, enable_ipv6=n.enable_ipv6,
        ipam=_ipam_to(n.ipam), internal=n.internal, attachable=n.attachable, ingress=n.ingress,
        config_only=n.config_only, config_from=n.config_from, options=n.options, labels=n.labels,
        containers={k: pb.EndpointResource(name=e.name, endpoint_id=e.endpoint_id, mac_address=e.mac_address,
                                           ipv4_address=e.ipv4_address, ipv6_address=e.ipv6_address)
                    for k, e in n.containers.items()},
        node_id=n.node_id, user_subnet=n.user_subnet, user_subnet6=n.user_subnet6)  # fmt: skip


def network_from_proto(m: pb.Network) -> Network:
    return Network(
        id=m.id, name=m.name, created=m.created, driver=m.driver, scope=m.scope, enable_ipv6=m.enable_ipv6,
        ipam=_ipam_from(m.ipam), internal=m.internal, attachable=m.attachable, ingress=m.ingress,
        config_only=m.config_only, config_from=m.config_from, options=dict(m.options), labels=dict(m.labels),
        containers={k: EndpointResource(e.name, e.endpoint_id, e.mac_address, e.ipv4_address, e.ipv6_address)
                    for k, e in m.containers.items()},
        node_id=m.node_id, user_subnet=m.user_subnet, user_subnet6=m.user_subnet6)  # fmt: skip


def create_to_proto(r: NetworkCreate) -> pb.CreateNetworkRequest:
    return pb.CreateNetworkRequest(
        name=r.name,
        driver=r.driver,
        internal=r.internal,
        attachable=r.attachable,
        ingress=r.ingress,
        enable_ipv6=r.enable_ipv6,
        ipam=_ipam_to(r.ipam),
        options=r.options,
        labels=r.labels,
        check_duplicate=r.check_duplicate,
        scope=r.scope,
        config_only=r.config_only,
        config_from=r.config_from,
    )


def create_from_proto(m: pb.CreateNetworkRequest) -> NetworkCreate:
    return NetworkCreate(
        name=m.name, driver=m.driver or "bridge", internal=m.internal, attachable=m.attachable,
        ingress=m.ingress, enable_ipv6=m.enable_ipv6, ipam=_ipam_from(m.ipam), options=dict(m.options),
        labels=dict(m.labels), check_duplicate=m.check_duplicate, scope=m.scope, config_only=m.config_only,
        config_from=m.config_from)  # fmt: skip


def endpoint_config_to_proto(c: EndpointConfig) -> pb.EndpointSettings:
    return pb.EndpointSettings(
        ipam_config=pb.EndpointIPAMConfig(
            ipv4_address=c.ipv4_address, ipv6_address=c.ipv6_address, link_local_ips=c.link_local_ips
        ),
        aliases=c.aliases,
        links=c.links,
        mac_address=c.mac_address,
        driver_opts=c.driver_opts,
    )


def endpoint_config_from_proto(m: pb.EndpointSettings) -> EndpointConfig:
    return EndpointConfig(
        ipv4_address=m.ipam_config.ipv4_address,
        ipv6_address=m.ipam_config.ipv6_address,
        aliases=list(m.aliases),
        links=list(m.links),
        mac_address=m.mac_address,
        driver_opts=dict(m.driver_opts),
        link_local_ips=list(m.ipam_config.link_local_ips),
    )


def _settings_to(s: EndpointSettings) -> pb.EndpointSettings:
    msg = endpoint_config_to_proto(s.config)
    msg.network_id, msg.endpoint_id, msg.gateway = s.network_id, s.endpoint_id, s.gateway
    msg.ip_address, msg.ip_prefix_len = s.ip_address, s.ip_prefix_len
    msg.mac_address = s.mac_address
    msg.dns_names.extend(s.dns_names)
    msg.ipv6_gateway, msg.global_ipv6_address = s.ipv6_gateway, s.global_ipv6_address
    msg.global_ipv6_prefix_len = s.global_ipv6_prefix_len
    return msg


def _settings_from(m: pb.EndpointSettings) -> EndpointSettings:
    cfg = endpoint_config_from_proto(m)
    return EndpointSettings(
        network_id=m.network_id,
        endpoint_id=m.endpoint_id,
        config=cfg,
        gateway=m.gateway,
        ip_address=m.ip_address,
        ip_prefix_len=m.ip_prefix_len,
        mac_address=m.mac_address,
        dns_names=list(m.dns_names),
        ipv6_gateway=m.ipv6_gateway,
        global_ipv6_address=m.global_ipv6_address,
        global_ipv6_prefix_len=m.global_ipv6_prefix_len,
    )


def attach_request_to_proto(r: AttachRequest) -> pb.AttachEndpointsRequest:
    return pb.AttachEndpointsRequest(
        container_id=r.container_id, container_name=r.container_name, network_mode=r.network_mode,
        networks=[pb.NetworkAttachment(network=a.network, endpoint_config=endpoint_config_to_proto(a.config))
                  for a in r.networks],
        hostname=r.hostname, domainname=r.domainname,
        port_bindings={k: pb.PortBindings(bindings=[pb.PortBinding(host_ip=b.host_ip, host_port=b.host_port)
                                                    for b in v]) for k, v in r.port_bindings.items()},
        publish_all_ports=r.publish_all_ports, exposed_ports=r.exposed_ports,
        join_netns_path=r.join_netns_path)  # fmt: skip


def attach_request_from_proto(m: pb.AttachEndpointsRequest) -> AttachRequest:
    return AttachRequest(
        container_id=m.container_id, container_name=m.container_name, network_mode=m.network_mode,
        networks=[NetworkAttachment(a.network, endpoint_config_from_proto(a.endpoint_config))
                  for a in m.networks],
        hostname=m.hostname, domainname=m.domainname,
        port_bindings={k: [PortBinding(b.host_ip, b.host_port) for b in v.bindings]
                       for k, v in m.port_bindings.items()},
        publish_all_ports=m.publish_all_ports, exposed_ports=list(m.exposed_ports),
        join_netns_path=m.join_netns_path)  # fmt: skip


def attach_result_to_proto(r: AttachResult) -> pb.AttachEndpointsResponse:
    return pb.AttachEndpointsResponse(
        netns_path=r.netns_path, endpoints={k: _settings_to(v) for k, v in r.endpoints.items()},
        ports=[pb.PortMapping(private_port=p.private_port, public_port=p.public_port, protocol=p.protocol,
                              host_ip=p.host_ip) for p in r.ports],
        dns_servers=r.dns_servers, dns_search=r.dns_search, dns_options=r.dns_options,
        hosts_entries=r.hosts_entries, exposed_ports=r.exposed)  # fmt: skip


def attach_result_from_proto(m: pb.AttachEndpointsResponse) -> AttachResult:
    return AttachResult(
        netns_path=m.netns_path, endpoints={k: _settings_from(v) for k, v in m.endpoints.items()},
        ports=[PortMapping(p.private_port, p.public_port, p.protocol, p.host_ip) for p in m.ports],
        dns_servers=list(m.dns_servers), dns_search=list(m.dns_search), dns_options=list(m.dns_options),
        hosts_entries=list(m.hosts_entries), exposed=list(m.exposed_ports))  # fmt: skip


def settings_json_to_proto(
    ns: dict[str, Any],
) -> tuple[dict[str, pb.PortBindings], dict[str, pb.EndpointSettings]]:
    """Docker NetworkSettings (Ports, Networks) -> the maps of containers.v1 NetworkSettings."""
    ports = {
        k: pb.PortBindings(bindings=[pb.PortBinding(host_ip=str(b.get("HostIp") or ""),
                                                    host_port=str(b.get("HostPort") or "")) for b in v or []])
        for k, v in (ns.get("Ports") or {}).items()
    }  # fmt: skip
    nets: dict[str, pb.EndpointSettings] = {}
    for name, ep in (ns.get("Networks") or {}).items():
        ep = ep or {}
        ipam = ep.get("IPAMConfig") or {}
        nets[name] = pb.EndpointSettings(
            ipam_config=pb.EndpointIPAMConfig(ipv4_address=str(ipam.get("IPv4Address") or ""),
                                              ipv6_address=str(ipam.get("IPv6Address") or ""),
                                              link_local_ips=ipam.get("LinkLocalIPs") or []),
            links=ep.get("Links") or [], aliases=ep.get("Aliases") or [],
            network_id=str(ep.get("NetworkID") or ""), endpoint_id=str(ep.get("EndpointID") or ""),
            gateway=str(ep.get("Gateway") or ""), ip_address=str(ep.get("IPAddress") or ""),
            ip_prefix_len=int(ep.get("IPPrefixLen") or 0), mac_address=str(ep.get("MacAddress") or ""),
            driver_opts=ep.get("DriverOpts") or {}, dns_names=ep.get("DNSNames") or [],
            ipv6_gateway=str(ep.get("IPv6Gateway") or ""),
            global_ipv6_address=str(ep.get("GlobalIPv6Address") or ""),
            global_ipv6_prefix_len=int(ep.get("GlobalIPv6PrefixLen") or 0))  # fmt: skip
    return ports, nets


def settings_json_from_proto(
    ports: Mapping[str, pb.PortBindings], nets: Mapping[str, pb.EndpointSettings], exposed: Iterable[str]
) -> dict[str, Any]:
    """The Ports and Networks of Docker's NetworkSettings back from the proto maps."""
    out_ports: dict[str, Any] = {k: None for k in exposed}
    for k, v in ports.items():
        out_ports[k] = [{"HostIp": b.host_ip, "HostPort": b.host_port} for b in v.bindings] or None
    out_nets = {name: endpoint_json(_settings_from(m)) for name, m in nets.items()}
    return {"Ports": out_ports, "Networks": out_nets}
