"""NetworkSettings glue for IPv6, link-local IPs and the endpoints of a container not running."""

from __future__ import annotations

from berthapi.networks.v1 import networks_pb2 as pb
from networks_svc import convert
from networks_svc.model import AttachResult, EndpointConfig, EndpointSettings, IPAMConfig, IPAMPool, Network
from networks_svc.shapes import attach_request, endpoint_json, endpoints_config, network_settings

CID = "c" * 64


def _v6_endpoint() -> EndpointSettings:
    cfg = EndpointConfig(ipv6_address="2001:389::f00d", link_local_ips=["169.254.8.8"], aliases=["db"])
    return EndpointSettings(network_id="n" * 64, endpoint_id="e" * 64, config=cfg, gateway="10.1.0.1",
                            ip_address="10.1.0.2", ip_prefix_len=24, mac_address="02:42:0a:01:00:02",
                            ipv6_gateway="2001:389::1", global_ipv6_address="2001:389::f00d",
                            global_ipv6_prefix_len=64)  # fmt: skip


def test_endpoint_json_carries_ipv6_and_link_local_ips() -> None:
    ep = endpoint_json(_v6_endpoint())
    ll = ["169.254.8.8"]
    assert ep["IPAMConfig"] == {"IPv4Address": "", "IPv6Address": "2001:389::f00d", "LinkLocalIPs": ll}
    assert ep["GlobalIPv6Address"] == "2001:389::f00d" and ep["GlobalIPv6PrefixLen"] == 64
    assert ep["IPv6Gateway"] == "2001:389::1"


def test_link_local_ips_are_read_from_the_request() -> None:
    eps = {"bridge": {"IPAMConfig": {"LinkLocalIPs": ["169.254.8.8"]}}}
    req = attach_request(CID, "/a", {}, {"NetworkMode": "bridge"}, {"EndpointsConfig": eps})
    assert req.networks[0].config.link_local_ips == ["169.254.8.8"]


def test_settings_survive_the_proto_round_trip() -> None:
    res = AttachResult(netns_path="/x", endpoints={"v6net": _v6_endpoint()})
    back = convert.attach_result_from_proto(convert.attach_result_to_proto(res))
    got = back.endpoints["v6net"]
    assert (got.ipv6_gateway, got.global_ipv6_address, got.global_ipv6_prefix_len) == (
        "2001:389::1",
        "2001:389::f00d",
        64,
    )
    assert got.config.ipv6_address == "2001:389::f00d" and got.config.link_local_ips == ["169.254.8.8"]
    _ports, nets = convert.settings_json_to_proto(network_settings(res, []))
    assert nets["v6net"].global_ipv6_address == "2001:389::f00d"
    assert list(nets["v6net"].ipam_config.link_local_ips) == ["169.254.8.8"]


def test_network_keeps_ipv6_pool_and_options_given() -> None:
    net = Network(id="n" * 64, name="v6", created="2026-01-01T00:00:00Z", driver="bridge", enable_ipv6=True,
                  ipam=IPAMConfig(config=[IPAMPool("10.1.0.0/24", "", "10.1.0.1"),
                                          IPAMPool("2001:389::/64", "", "2001:389::1")], options_given=True),
                  user_subnet6=True)  # fmt: skip
    wire = convert.network_to_proto(net).SerializeToString()
    back = convert.network_from_proto(pb.Network.FromString(wire))
    assert back == net


def test_endpoints_config_of_a_container_not_running() -> None:
    ep = EndpointSettings(network_id="n" * 64, config=EndpointConfig(mac_address="02:42:ac:11:00:02"))
    res = AttachResult(netns_path="", endpoints={"mynet": ep, "none": EndpointSettings(network_id="x")})
    assert endpoints_config(res) == {"mynet": {
        "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "02:42:ac:11:00:02",
        "DriverOpts": None, "NetworkID": "n" * 64}}  # fmt: skip
