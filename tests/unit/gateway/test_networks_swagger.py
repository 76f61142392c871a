"""Network inspect/list JSON and container NetworkSettings checked against the Engine API 1.50 swagger."""

from __future__ import annotations

from gateway_svc.routes.networks import network_json
from networks_svc.model import (
    AttachResult,
    EndpointConfig,
    EndpointResource,
    EndpointSettings,
    IPAMConfig,
    IPAMPool,
    Network,
    PortMapping,
)
from networks_svc.shapes import network_settings

from .test_containers_swagger import definitions, missing, validate

NET = Network(
    id="7" * 64, name="front", created="2026-12-01T10:00:00.123456789Z", driver="bridge",
    ipam=IPAMConfig(config=[IPAMPool("10.9.0.0/24", "10.9.0.128/25", "10.9.0.1", {"r": "10.9.0.2"})]),
    labels={"a": "b"}, options={"com.docker.network.bridge.name": "br0"},
    containers={"c" * 64: EndpointResource("web", "e" * 64, "02:42:0a:09:00:03", "10.9.0.3/24")},
)  # fmt: skip


def test_network_inspect_matches_swagger() -> None:
    doc = network_json(NET, "1.50")
    assert validate(doc, definitions()["Network"]) == []
    assert missing(doc, "Network", {"Peers", "Services", "Status"}) == set()
    assert doc["IPAM"]["Config"][0] == {
        "Subnet": "10.9.0.0/24",
        "IPRange": "10.9.0.128/25",
        "Gateway": "10.9.0.1",
        "AuxiliaryAddresses": {"r": "10.9.0.2"},
    }
    assert "EnableIPv4" not in network_json(NET, "1.46")


def test_container_endpoints_match_swagger() -> None:
    ep = EndpointSettings("7" * 64, "e" * 64, EndpointConfig(aliases=["w"]), "10.9.0.1", "10.9.0.3", 24,
                          "02:42:0a:09:00:03", ["web", "w"])  # fmt: skip
    res = AttachResult("/run/b/netns/x", {"front": ep}, [PortMapping(80, 8080, "tcp", "0.0.0.0")])
    ns = network_settings(res, {"80/tcp": {}})
    for name, value in ns["Networks"].items():
        assert validate(value, definitions()["EndpointSettings"], f"$.{name}") == []
    assert validate(ns["Ports"], definitions()["PortMap"]) == []
