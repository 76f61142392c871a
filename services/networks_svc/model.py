"""Plain records the networks service keeps; transport-free, shared by store, service and convert."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "BRIDGE_NAME_OPTION",
    "BUILTIN_NETWORKS",
    "AttachRequest",
    "AttachResult",
    "EndpointConfig",
    "EndpointRecord",
    "EndpointResource",
    "EndpointSettings",
    "IPAMConfig",
    "IPAMPool",
    "Network",
    "NetworkAttachment",
    "NetworkCreate",
    "PortBinding",
    "PortMapping",
    "SandboxRecord",
]

BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
BUILTIN_NETWORKS = ("bridge", "host", "none")


@dataclass(frozen=True, slots=True)
class IPAMPool:
    """One subnet a network hands addresses from (Docker's IPAM.Config entry)."""

    subnet: str
    ip_range: str = ""
    gateway: str = ""
    aux_addresses: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IPAMConfig:
    """Docker's IPAM object."""

    driver: str = "default"
    options: dict[str, str] = field(default_factory=dict)
    config: list[IPAMPool] = field(default_factory=list)  # the IPv4 pool first, then any IPv6 one
    options_given: bool = False  # Options was sent on create: inspect shows {} rather than null


@dataclass(frozen=True, slots=True)
class EndpointResource:
    """One container on a network, as network inspect lists it."""

    name: str
    endpoint_id: str
    mac_address: str
    ipv4_address: str  # "a.b.c.d/nn"
    ipv6_address: str = ""


@dataclass(frozen=True, slots=True)
class Network:
    """One network record (docker network inspect); ``containers`` filled on reads."""

    id: str
    name: str
    created: str
    driver: str
    scope: str = "local"
    enable_ipv6: bool = False
    ipam: IPAMConfig = field(default_factory=IPAMConfig)
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    config_only: bool = False
    config_from: str = ""
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    containers: dict[str, EndpointResource] = field(default_factory=dict)
    node_id: str = ""
    user_subnet: bool = False  # --subnet given: fixed addresses (--ip) allowed
    user_subnet6: bool = False  # an IPv6 --subnet given: fixed addresses (--ip6) allowed

    @property
    def bridge(self) -> str:
        """The Linux bridge of a bridge network ("" for others)."""
        return self.options.get(BRIDGE_NAME_OPTION, "") if self.driver == "bridge" else ""


@dataclass(frozen=True, slots=True)
class NetworkCreate:
    """POST /networks/create, decoded."""

    name: str
    driver: str = "bridge"
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    enable_ipv6: bool = False
    ipam: IPAMConfig = field(default_factory=IPAMConfig)
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    check_duplicate: bool = True
    scope: str = ""
    config_only: bool = False
    config_from: str = ""


@dataclass(slots=True)
class EndpointConfig:
    """What a container asked for on one network (EndpointSettings as submitted)."""

    ipv4_address: str = ""  # IPAMConfig.IPv4Address (--ip)
    ipv6_address: str = ""
    aliases: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    mac_address: str = ""
    driver_opts: dict[str, str] = field(default_factory=dict)
    link_local_ips: list[str] = field(default_factory=list)  # IPAMConfig.LinkLocalIPs


@dataclass(slots=True)
class EndpointSettings:
    """One container's membership of one network, realised (inspect NetworkSettings.Networks)."""

    network_id: str
    endpoint_id: str = ""
    config: EndpointConfig = field(default_factory=EndpointConfig)
    gateway: str = ""
    ip_address: str = ""
    ip_prefix_len: int = 0
    mac_address: str = ""
    dns_names: list[str] = field(default_factory=list)
    ipv6_gateway: str = ""
    global_ipv6_address: str = ""
    global_ipv6_prefix_len: int = 0


@dataclass(frozen=True, slots=True)
class PortBinding:
    """One HostConfig.PortBindings entry of a container port."""

    host_ip: str = ""
    host_port: str = ""  # "8080", "8000-8010" or "" (ephemeral)


@dataclass(frozen=True, slots=True)
class PortMapping:
    """One published port as bound."""

    private_port: int
    public_port: int
    protocol: str  # tcp | udp | sctp
    host_ip: str  # "0.0.0.0" for all


@dataclass(slots=True)
class NetworkAttachment:
    """A network a container joins, with its requested settings."""

    network: str  # name or id
    config: EndpointConfig = field(default_factory=EndpointConfig)


@dataclass(slots=True)
class AttachRequest:
    """What the containers service hands over on create (reserve) and start (attach)."""

    container_id: str
    container_name: str  # without "/"
    network_mode: str  # bridge | none | host | container:<id> | <network name or id>
    networks: list[NetworkAttachment] = field(default_factory=list)
    hostname: str = ""
    domainname: str = ""
    port_bindings: dict[str, list[PortBinding]] = field(default_factory=dict)  # "80/tcp" -> binds
    publish_all_ports: bool = False
    exposed_ports: list[str] = field(default_factory=list)
    join_netns_path: str = ""  # container:<id> mode: the other container's netns


@dataclass(slots=True)
class AttachResult:
    """The realised networking of a running container."""

    netns_path: str  # "" in host mode
    endpoints: dict[str, EndpointSettings] = field(default_factory=dict)  # by network name
    ports: list[PortMapping] = field(default_factory=list)
    dns_servers: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    hosts_entries: list[str] = field(default_factory=list)
    # "80/tcp" -> exposed or published (Docker's NetworkSettings.Ports keys)
    exposed: list[str] = field(default_factory=list)


@dataclass(slots=True)
class EndpointRecord:
    """A stored endpoint: (network, container) with the request and, while attached, addresses."""

    network_id: str
    container_id: str
    container_name: str
    endpoint_id: str
    config: EndpointConfig
    ip_address: str = ""  # "" while not attached
    mac_address: str = ""
    veth: str = ""  # host-side veth while attached
    ipv6_address: str = ""  # on networks with an IPv6 pool, while attached


@dataclass(slots=True)
class SandboxRecord:
    """A container's network sandbox: its request and, while attached, its netns and ports."""

    container_id: str
    request: AttachRequest
    netns_path: str = ""  # "" while not attached (or host mode)
    ports: list[PortMapping] = field(default_factory=list)
    attached: bool = False
