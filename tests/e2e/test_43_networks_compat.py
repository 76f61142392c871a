"""Network details docker-py's own suite checks: IPv6, names, IPAM echo, links as DNS aliases, MACs."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import docker.errors
import docker.types
import pytest

from testkit.berthd import BerthdProcess
from testkit.netpeer import free_prefix

pytestmark = pytest.mark.needs_root


@pytest.fixture
def cleanup(dockerpy: Any) -> Iterator[list[Any]]:
    """Containers and networks the test made, removed afterwards (containers first)."""
    objs: list[Any] = []
    yield objs
    for o in reversed(objs):
        try:
            o.remove(force=True) if hasattr(o, "attrs") and "State" in o.attrs else o.remove()
        except docker.errors.APIError:
            pass


def _name() -> str:
    return f"c43-{uuid.uuid4().hex[:8]}"


def _ula() -> str:
    """A random unique-local /64 prefix ("fdxx:xxxx:xxxx:1"), so parallel daemons never collide."""
    h = secrets.token_hex(5)
    return f"fd{h[:2]}:{h[2:6]}:{h[6:10]}:1"


def test_names_with_spaces_are_accepted_blank_ones_are_not(dockerpy: Any, cleanup: list[Any]) -> None:
    name = f"test {uuid.uuid4().hex[:6]}"
    net = dockerpy.networks.create(name)
    cleanup.append(net)
    assert dockerpy.networks.get(name).id == net.id
    net.remove()
    cleanup.remove(net)
    with pytest.raises(docker.errors.APIError) as err:
        dockerpy.networks.create("   ")
    assert err.value.response.status_code == 400


def test_ipv6_network_addresses_routes_and_dns(dockerpy: Any, busybox_image: str, cleanup: list[Any]) -> None:
    name, p6 = _name(), _ula()
    pool = docker.types.IPAMPool(subnet=f"{p6}::/64", iprange=f"{p6}::0/96", gateway=f"{p6}::ffff")
    ipam = docker.types.IPAMConfig(pool_configs=[pool])
    net = dockerpy.networks.create(name, enable_ipv6=True, ipam=ipam)
    cleanup.append(net)
    attrs = dockerpy.networks.get(net.id).attrs
    assert attrs["EnableIPv6"] is True
    cfg = attrs["IPAM"]["Config"]
    assert cfg[0]["Subnet"].count(".") == 3  # an IPv4 pool is picked too, listed first
    assert cfg[1] == {"Subnet": f"{p6}::/64", "IPRange": f"{p6}::0/96", "Gateway": f"{p6}::ffff"}
    a = dockerpy.containers.run("busybox", ["sleep", "300"], detach=True, network=name, name=_name(),
                                networking_config={name: dockerpy.api.create_endpoint_config(
                                    ipv6_address=f"{p6}::f00d")})  # fmt: skip
    cleanup.append(a)
    b = dockerpy.containers.run("busybox", ["sleep", "300"], detach=True, network=name, name=_name())
    cleanup.append(b)
    a.reload()
    b.reload()
    ea, eb = a.attrs["NetworkSettings"]["Networks"][name], b.attrs["NetworkSettings"]["Networks"][name]
    assert ea["IPAMConfig"]["IPv6Address"] == f"{p6}::f00d"
    assert ea["GlobalIPv6Address"] == f"{p6}::f00d" and ea["GlobalIPv6PrefixLen"] == 64
    assert ea["IPv6Gateway"] == f"{p6}::ffff"
    assert eb["GlobalIPv6Address"].startswith(f"{p6}::") and eb["GlobalIPv6Address"] != f"{p6}::f00d"
    net.reload()
    assert net.attrs["Containers"][a.id]["IPv6Address"] == f"{p6}::f00d/64"
    code, out = a.exec_run(["ip", "-6", "-o", "addr", "show", "eth0"])
    assert code == 0 and f"{p6}::f00d/64".encode() in out
    code, out = a.exec_run(["ip", "-6", "route", "show", "default"])
    assert code == 0 and f"via {p6}::ffff".encode() in out
    code, out = b.exec_run(["ping", "-6", "-c", "1", "-W", "3", f"{p6}::f00d"])
    assert code == 0, out
    code, out = b.exec_run(["ping", "-6", "-c", "1", "-W", "3", f"{p6}::ffff"])  # the bridge
    assert code == 0, out
    code, out = b.exec_run(["nslookup", "-type=AAAA", a.name])
    assert code == 0 and f"{p6}::f00d".encode() in out, out


def test_ipv6_fixed_address_needs_a_user_ipv6_subnet(dockerpy: Any, busybox_image: str,
                                                     cleanup: list[Any]) -> None:  # fmt: skip
    net = dockerpy.networks.create(_name())
    cleanup.append(net)
    c = dockerpy.containers.create("busybox", ["sleep", "300"])
    cleanup.append(c)
    with pytest.raises(docker.errors.APIError) as err:
        net.connect(c, ipv6_address="fd00:1::5")
    assert err.value.response.status_code == 400


def test_explicit_ipam_is_echoed_and_options_follow_the_request(
    berthd: BerthdProcess, dockerpy: Any, cleanup: list[Any]
) -> None:
    p = free_prefix()
    pool = docker.types.IPAMPool(subnet=f"{p}.0/24", iprange=f"{p}.128/25", gateway=f"{p}.254",
                                 aux_addresses={"a": f"{p}.5", "b": f"{p}.6"})  # fmt: skip
    net = dockerpy.networks.create(_name(), ipam=docker.types.IPAMConfig(pool_configs=[pool]))
    cleanup.append(net)
    ipam = dockerpy.networks.get(net.id).attrs["IPAM"]
    assert ipam["Options"] is None  # docker-py sent no Options: dockerd echoes null
    assert ipam["Config"] == [{"Subnet": f"{p}.0/24", "IPRange": f"{p}.128/25", "Gateway": f"{p}.254",
                               "AuxiliaryAddresses": {"a": f"{p}.5", "b": f"{p}.6"}}]  # fmt: skip
    name = _name()
    berthd.docker("network", "create", name)  # the CLI sends "Options": {}
    try:
        assert dockerpy.networks.get(name).attrs["IPAM"]["Options"] == {}
    finally:
        berthd.docker("network", "rm", name, check=False)


def test_force_disconnect_of_a_container_not_connected_fails(
    dockerpy: Any, busybox_image: str, cleanup: list[Any]
) -> None:
    net = dockerpy.networks.create(_name())
    cleanup.append(net)
    c = dockerpy.containers.run("busybox", ["sleep", "300"], detach=True)
    cleanup.append(c)
    net.connect(c)
    net.disconnect(c, force=True)
    net.reload()
    assert not net.attrs.get("Containers")
    with pytest.raises(docker.errors.APIError) as err:
        net.disconnect(c, force=True)
    assert "is not connected to network" in str(err.value)


def test_link_on_a_user_network_is_a_dns_alias_of_the_linking_container(
    dockerpy: Any, busybox_image: str, cleanup: list[Any]
) -> None:
    name = _name()
    net = dockerpy.networks.create(name)
    cleanup.append(net)
    target = _name()
    a = dockerpy.containers.run("busybox", ["sleep", "300"], detach=True, network=name,
                                networking_config={name: dockerpy.api.create_endpoint_config(
                                    links=[(target, "bar")])})  # fmt: skip
    cleanup.append(a)
    a.reload()
    assert a.attrs["NetworkSettings"]["Networks"][name]["Links"] == [f"{target}:bar"]
    t = dockerpy.containers.run("busybox", ["sleep", "300"], detach=True, network=name, name=target)
    cleanup.append(t)
    other = dockerpy.containers.run("busybox", ["sleep", "300"], detach=True, network=name)
    cleanup.append(other)
    t.reload()
    ip = t.attrs["NetworkSettings"]["Networks"][name]["IPAddress"]
    code, out = a.exec_run(["nslookup", "bar"])
    assert code == 0 and ip.encode() in out, out
    code, out = other.exec_run(["nslookup", "bar"])  # the alias is the linking container's only
    assert code != 0, out


def test_connect_a_created_container_with_a_mac(
    dockerpy: Any, busybox_image: str, cleanup: list[Any]
) -> None:
    name = _name()
    net = dockerpy.networks.create(name)
    cleanup.append(net)
    c = dockerpy.containers.create("busybox", ["sleep", "300"])
    cleanup.append(c)
    dockerpy.api.connect_container_to_network(c.id, name, mac_address="02:42:ac:11:00:99")
    c.reload()
    nets = c.attrs["NetworkSettings"]["Networks"]
    assert nets[name]["MacAddress"] == "02:42:ac:11:00:99" and "bridge" in nets
    c.start()
    c.reload()
    assert c.attrs["NetworkSettings"]["Networks"][name]["MacAddress"] == "02:42:ac:11:00:99"
    code, out = c.exec_run(["cat", "/sys/class/net/eth1/address"])
    assert code == 0 and out.strip() == b"02:42:ac:11:00:99"
    net.disconnect(c)
    c.stop(timeout=0)
    c.reload()
    assert name not in c.attrs["NetworkSettings"]["Networks"]


def test_link_local_ips_are_echoed_and_configured(
    dockerpy: Any, busybox_image: str, cleanup: list[Any]
) -> None:
    cid = dockerpy.api.create_container(
        "busybox", ["sleep", "300"],
        networking_config=dockerpy.api.create_networking_config(
            {"bridge": dockerpy.api.create_endpoint_config(link_local_ips=["169.254.8.8"])}),
        host_config=dockerpy.api.create_host_config(network_mode="bridge"))["Id"]  # fmt: skip
    c = dockerpy.containers.get(cid)
    cleanup.append(c)
    c.start()
    c.reload()
    assert c.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAMConfig"]["LinkLocalIPs"] == ["169.254.8.8"]
    code, out = c.exec_run(["ip", "-4", "-o", "addr", "show", "eth0"])
    assert code == 0 and b"169.254.8.8/16" in out


def test_aliases_at_1_41_are_the_submitted_ones_until_start(
    berthd: BerthdProcess, dockerpy: Any, busybox_image: str, cleanup: list[Any]
) -> None:
    client = berthd.api_client(version="1.41")
    try:
        name = _name()
        net = client.networks.create(name)
        cleanup.append(dockerpy.networks.get(net.id))
        cfg = {name: client.api.create_endpoint_config(aliases=["hello"])}
        c = client.containers.create("busybox", ["sleep", "300"], network=name, networking_config=cfg)
        cleanup.append(dockerpy.containers.get(c.id))
        assert c.attrs["NetworkSettings"]["Networks"][name]["Aliases"] == ["hello"]
        c.start()
        c.reload()
        assert c.attrs["NetworkSettings"]["Networks"][name]["Aliases"][:2] == ["hello", c.id[:12]]
    finally:
        client.close()


def test_cli_ipv6_network_with_a_default_ula_subnet_and_ip6(
    berthd: BerthdProcess, busybox_image: str
) -> None:
    auto, fixed, p6 = _name(), _name(), _ula()
    try:
        berthd.docker("network", "create", "--ipv6", auto)
        subnet6 = berthd.docker("network", "inspect", "-f", "{{(index .IPAM.Config 1).Subnet}}", auto).stdout
        assert subnet6.startswith("fd") and subnet6.strip().endswith("/64")
        out = berthd.docker(
            "run", "--rm", "--network", auto, "busybox", "ip", "-6", "-o", "addr", "show", "eth0"
        )
        assert subnet6.split("::")[0] in out.stdout
        berthd.docker("network", "create", "--ipv6", "--subnet", f"{p6}::/64", fixed)
        out = berthd.docker("run", "--rm", "--network", fixed, "--ip6", f"{p6}::42", "busybox",
                            "ip", "-6", "-o", "addr", "show", "eth0")  # fmt: skip
        assert f"{p6}::42/64" in out.stdout
    finally:
        berthd.docker("network", "rm", auto, fixed, check=False)


def test_removed_and_pruned_networks_give_their_subnets_back(dockerpy: Any) -> None:
    # The test daemon's pool is a /20 in /24s: 16 subnets. 40 networks made and removed (or
    # pruned) one after another only fit if every removal returns its subnet.
    label = f"c43-{uuid.uuid4().hex[:6]}"
    subnets = set()
    for i in range(40):
        net = dockerpy.networks.create(_name(), labels={label: "1"})
        subnets.add(net.attrs["IPAM"]["Config"][0]["Subnet"])
        if i % 2:
            net.remove()
        else:
            assert dockerpy.networks.prune(filters={"label": label})["NetworksDeleted"] == [net.name]
    assert len(subnets) <= 16
