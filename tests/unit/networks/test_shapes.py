"""Attach requests from container records, NetworkSettings and /etc/hosts glue, port parsing."""

from __future__ import annotations

import pytest

import errdefs
from networks_svc import ports
from networks_svc.model import AttachResult, EndpointConfig, EndpointSettings, PortMapping
from networks_svc.service import host_resolvers
from networks_svc.shapes import attach_request, etc_hosts_entries, host_gateway, network_settings

CID = "c" * 64


def test_default_mode_joins_the_bridge_with_links_and_mac() -> None:
    req = attach_request(CID, "/web", {"MacAddress": "02:42:00:00:00:09", "ExposedPorts": {"80/tcp": {}}},
                         {"NetworkMode": "default", "Links": ["db:db"],
                          "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}},
                         {})  # fmt: skip
    assert req.network_mode == "bridge" and req.container_name == "web"
    assert [a.network for a in req.networks] == ["bridge"]
    assert req.networks[0].config.links == ["db:db"]
    assert req.networks[0].config.mac_address == "02:42:00:00:00:09"
    assert req.port_bindings["80/tcp"][0].host_ip == "127.0.0.1"
    assert req.exposed_ports == ["80/tcp"]


def test_user_network_endpoint_config() -> None:
    req = attach_request(
        CID,
        "web",
        {},
        {"NetworkMode": "front"},
        {
            "EndpointsConfig": {
                "front": {"IPAMConfig": {"IPv4Address": "10.9.0.9"}, "Aliases": ["w"]},
                "back": {},
            }
        },
    )
    assert [a.network for a in req.networks] == ["front", "back"]
    assert req.networks[0].config == EndpointConfig(ipv4_address="10.9.0.9", aliases=["w"])


@pytest.mark.parametrize("mode", ["host", "none", "container:" + "d" * 64])
def test_modes_without_endpoints(mode: str) -> None:
    assert attach_request(CID, "web", {}, {"NetworkMode": mode}, {}).networks == []


def _result() -> AttachResult:
    ep = EndpointSettings(
        "n" * 64, "e" * 64, EndpointConfig(), "10.9.0.1", "10.9.0.2", 24, "02:42:0a:09:00:02"
    )
    return AttachResult("/run/x/netns/c", {"bridge": ep}, [PortMapping(80, 32768, "tcp", "127.0.0.1")],
                        hosts_entries=["10.9.0.3\tdb"], exposed=["80/tcp", "443/tcp"])  # fmt: skip


def test_network_settings_shape() -> None:
    ns = network_settings(_result(), {"80/tcp": {}})
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}], "443/tcp": None}
    assert ns["IPAddress"] == "10.9.0.2" and ns["Gateway"] == "10.9.0.1" and ns["IPPrefixLen"] == 24
    assert ns["Networks"]["bridge"]["EndpointID"] == "e" * 64
    assert ns["SandboxKey"] == "/run/x/netns/c"


def test_hosts_lines_and_host_gateway() -> None:
    own, extra = etc_hosts_entries(_result(), "abc", "example.org")
    assert own == "10.9.0.2\tabc.example.org abc"
    assert extra == ["10.9.0.3\tdb"]
    assert host_gateway(_result()) == "10.9.0.1"


def test_host_resolvers_drop_loopback() -> None:
    text = "# c\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch a b\noptions ndots:2\n"
    assert host_resolvers(text) == (["10.0.0.2"], ["a", "b"], ["ndots:2"])


@pytest.mark.parametrize(
    "key, want", [("80/tcp", (80, "tcp")), ("53/UDP", (53, "udp")), ("8080", (8080, "tcp"))]
)
def test_port_keys(key: str, want: tuple[int, str]) -> None:
    assert ports.parse_port_key(key) == want


@pytest.mark.parametrize("key", ["0/tcp", "x/tcp", "80/icmp", "70000"])
def test_bad_port_keys(key: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        ports.parse_port_key(key)


def test_host_ranges() -> None:
    assert ports.parse_host_range("") == (0, 0)
    assert ports.parse_host_range("8000-8010") == (8000, 8010)
    with pytest.raises(errdefs.InvalidArgument):
        ports.parse_host_range("9-1")


def test_network_settings_survive_the_containers_proto() -> None:
    from networks_svc.convert import settings_json_from_proto, settings_json_to_proto

    ns = network_settings(_result(), {"80/tcp": {}})
    ports, nets = settings_json_to_proto(ns)
    back = settings_json_from_proto(ports, nets, ["80/tcp", "443/tcp"])
    assert back["Networks"] == ns["Networks"]
    assert back["Ports"] == ns["Ports"]
