"""docker network create/ls/inspect/rm/prune/connect/disconnect and traffic, through the real CLI.

Traffic stays on this machine: containers talk to each other over berth's bridges and to an
echo server in a namespace the test makes beside the host (testkit.netpeer).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from testkit.berthd import BerthdProcess, DockerCLI
from testkit.netpeer import OutsidePeer, free_prefix

pytestmark = pytest.mark.needs_root


@pytest.fixture
def nets(docker: DockerCLI) -> Iterator[list[str]]:
    """Networks the test creates; containers on them and the networks go afterwards."""
    names: list[str] = []
    yield names
    for n in names:
        ids = docker("ps", "-aq", "--filter", f"label=e2e-net={n}", check=False).stdout.split()
        if ids:
            docker("rm", "-f", *ids, check=False)
    if names:
        docker("network", "rm", *names, check=False)


@pytest.fixture
def peer() -> Iterator[OutsidePeer]:
    with OutsidePeer() as p:
        p.serve()
        yield p


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _inspect(docker: DockerCLI, kind: str, ref: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(docker(kind, "inspect", ref).stdout)[0]
    return doc


def _run(docker: DockerCLI, net: str, *args: str, name: str = "", check: bool = True) -> str:
    extra = ["--name", name] if name else []
    return str(docker("run", "-d", "--label", f"e2e-net={net}", "--network", net, *extra, *args,
                      check=check).stdout.strip())  # fmt: skip


def test_builtin_networks_and_default_bridge(
    docker: DockerCLI, berthd: BerthdProcess, busybox_image: str
) -> None:
    ls = docker("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").stdout.splitlines()
    assert {"bridge bridge local", "host host local", "none null local"} <= set(ls)
    bridge = _inspect(docker, "network", "bridge")
    assert bridge["Options"]["com.docker.network.bridge.name"] == berthd.bridge
    assert bridge["IPAM"]["Config"][0]["Subnet"] == berthd.bip.replace(".1/", ".0/")
    out = docker(
        "run", "--rm", "busybox", "sh", "-c", "ip -4 addr show eth0; ip route; cat /etc/hosts"
    ).stdout
    assert "default via " + berthd.bip.split("/")[0] in out
    assert "10.200." in out
    err = docker("network", "rm", "bridge", check=False)
    assert err.returncode != 0 and "bridge is a pre-defined network and cannot be removed" in err.stderr


def test_create_ls_inspect_filters_rm(docker: DockerCLI, nets: list[str]) -> None:
    a, b = _name("e2e-na"), _name("e2e-nb")
    p, q = free_prefix(), free_prefix()
    nets += [a, b]
    aid = docker("network", "create", "--label", "tier=front", a).stdout.strip()
    docker(
        "network",
        "create",
        "--internal",
        "--subnet",
        f"{p}.0/24",
        "--gateway",
        f"{p}.254",
        "--ip-range",
        f"{p}.128/25",
        "--aux-address",
        f"router={p}.2",
        b,
    )
    doc = _inspect(docker, "network", a)
    assert doc["Id"] == aid and doc["Driver"] == "bridge" and doc["Scope"] == "local"
    assert doc["Labels"] == {"tier": "front"} and doc["Internal"] is False and doc["Containers"] == {}
    assert doc["IPAM"]["Driver"] == "default" and len(doc["IPAM"]["Config"]) == 1
    cfg = _inspect(docker, "network", b)["IPAM"]["Config"][0]
    assert cfg == {
        "Subnet": f"{p}.0/24",
        "IPRange": f"{p}.128/25",
        "Gateway": f"{p}.254",
        "AuxiliaryAddresses": {"router": f"{p}.2"},
    }
    assert _inspect(docker, "network", b)["Internal"] is True
    assert _inspect(docker, "network", aid[:12])["Name"] == a

    def names(*f: str) -> set[str]:
        return set(docker("network", "ls", "--format", "{{.Name}}", *f).stdout.split())

    assert names("--filter", "label=tier=front") == {a}
    assert names("--filter", f"name={b}") == {b}
    assert names("--filter", f"id={aid[:10]}") == {a}
    assert {a, b} <= names("--filter", "type=custom") and "bridge" not in names("--filter", "type=custom")
    assert names("--filter", "type=builtin") >= {"bridge", "host", "none"}
    assert {a, b} <= names("--filter", "dangling=true")
    assert names("--filter", "driver=null") == {"none"}
    bad = docker("network", "ls", "--filter", "colour=red", check=False)
    assert bad.returncode != 0 and "invalid filter 'colour'" in bad.stderr

    dup = docker("network", "create", a, check=False)
    assert dup.returncode != 0 and f"network with name {a} already exists" in dup.stderr
    over = docker("network", "create", "--subnet", f"{p}.0/25", _name("e2e-nc"), check=False)
    assert over.returncode != 0 and "Pool overlaps with other one on this address space" in over.stderr
    bad_cidr = docker("network", "create", "--subnet", f"{q}.0/33", _name("e2e-nd"), check=False)
    assert bad_cidr.returncode != 0 and "invalid" in bad_cidr.stderr.lower()

    assert docker("network", "rm", a).stdout.strip() == a
    missing = docker("network", "inspect", a, check=False)
    assert missing.returncode != 0 and f"network {a} not found" in missing.stderr
    assert docker("network", "prune", "-f", "--filter", "label=none-such").stdout.strip() == ""
    pruned = docker("network", "prune", "-f").stdout
    assert b in pruned and "bridge" not in pruned


def test_containers_on_a_network_reach_each_other_and_not_others(docker: DockerCLI, nets: list[str],
                                                                 busybox_image: str) -> None:  # fmt: skip
    front, back = _name("e2e-front"), _name("e2e-back")
    p = free_prefix()
    nets += [front, back]
    docker("network", "create", front)
    docker("network", "create", "--subnet", f"{p}.0/24", back)
    srv = _run(docker, front, "busybox", "sleep", "300", name=_name("srv"))
    fixed = _run(docker, back, "--ip", f"{p}.77", "busybox", "sleep", "300")
    doc = _inspect(docker, "container", srv)
    ep = doc["NetworkSettings"]["Networks"][front]
    ip = ep["IPAddress"]
    assert ip and ep["Gateway"] and ep["IPPrefixLen"] == 24 and len(ep["EndpointID"]) == 64
    assert ep["MacAddress"].startswith("02:42:") and doc["NetworkSettings"]["SandboxKey"]
    assert _inspect(docker, "container", fixed)["NetworkSettings"]["Networks"][back]["IPAddress"] == f"{p}.77"
    members = _inspect(docker, "network", front)["Containers"]
    assert members[srv]["IPv4Address"] == f"{ip}/24"

    ok = docker(
        "run",
        "--rm",
        "--label",
        f"e2e-net={front}",
        "--network",
        front,
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "3",
        ip,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Another network, and the default bridge, cannot reach it.
    for net in (back, "bridge"):
        res = docker(
            "run",
            "--rm",
            "--label",
            f"e2e-net={back}",
            "--network",
            net,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            ip,
            check=False,
        )
        assert res.returncode != 0, f"{net} reached {front}"
    # rm of a network in use is refused; --ip without a user subnet too.
    busy = docker("network", "rm", front, check=False)
    assert busy.returncode != 0 and "has active endpoints" in busy.stderr
    res = docker("run", "--rm", "--network", front, "--ip", "10.1.2.3", "busybox", "true", check=False)
    assert res.returncode != 0 and "user configured subnets" in res.stderr


def test_connect_disconnect_running_container(docker: DockerCLI, nets: list[str], busybox_image: str) -> None:
    one, two = _name("e2e-one"), _name("e2e-two")
    nets += [one, two]
    docker("network", "create", one)
    docker("network", "create", two)
    cid = _run(docker, one, "busybox", "sleep", "300")
    peer = _run(docker, two, "busybox", "sleep", "300")
    peer_ip = _inspect(docker, "container", peer)["NetworkSettings"]["Networks"][two]["IPAddress"]
    assert docker("exec", cid, "ping", "-c", "1", "-W", "2", peer_ip, check=False).returncode != 0
    docker("network", "connect", "--alias", "extra", two, cid)
    nets_now = _inspect(docker, "container", cid)["NetworkSettings"]["Networks"]
    assert set(nets_now) == {one, two} and nets_now[two]["Aliases"] == ["extra"]
    assert "eth1" in docker("exec", cid, "ip", "-o", "link").stdout
    res = docker("exec", cid, "ping", "-c", "1", "-W", "3", peer_ip, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    again = docker("network", "connect", two, cid, check=False)
    assert again.returncode != 0 and "already exists in network" in again.stderr
    assert cid in _inspect(docker, "network", two)["Containers"]

    docker("network", "disconnect", two, cid)
    assert set(_inspect(docker, "container", cid)["NetworkSettings"]["Networks"]) == {one}
    assert "eth1" not in docker("exec", cid, "ip", "-o", "link").stdout
    assert cid not in _inspect(docker, "network", two)["Containers"]
    twice = docker("network", "disconnect", two, cid, check=False)
    assert twice.returncode != 0 and "is not connected to network" in twice.stderr


def test_outbound_masquerade_and_internal(docker: DockerCLI, nets: list[str], peer: OutsidePeer,
                                          busybox_image: str) -> None:  # fmt: skip
    inner = _name("e2e-int")
    nets.append(inner)
    docker("network", "create", "--internal", inner)
    url = f"http://{peer.addr}:{peer.port}/"
    # The default bridge reaches the outside server; the server sees the host's address (NAT).
    # NOTE: busybox 1.35's wget -q segfaults here; its progress goes to stderr anyway.
    seen = docker("run", "--rm", "busybox", "timeout", "10", "wget", "-O", "-", url)
    assert seen.stdout.strip() == peer.host_addr
    # An --internal network has no way out.
    res = docker(
        "run",
        "--rm",
        "--label",
        f"e2e-net={inner}",
        "--network",
        inner,
        "busybox",
        "timeout",
        "5",
        "wget",
        "-O",
        "-",
        url,
        check=False,
    )
    assert res.returncode != 0
    out = docker(
        "run", "--rm", "--label", f"e2e-net={inner}", "--network", inner, "busybox", "ip", "route"
    ).stdout
    assert "default" not in out


def test_none_host_and_etc_files(docker: DockerCLI, busybox_image: str) -> None:
    out = docker("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout
    assert "lo" in out and "eth0" not in out
    hosts = docker(
        "run",
        "--rm",
        "--hostname",
        "hh",
        "--add-host",
        "gw:host-gateway",
        "--add-host",
        "static:10.1.1.1",
        "--dns",
        "10.9.9.9",
        "--dns-search",
        "corp.example",
        "--dns-option",
        "ndots:3",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts /etc/resolv.conf /etc/hostname",
    ).stdout
    assert "10.1.1.1\tstatic" in hosts and "\tgw\n" in hosts and "hh\n" in hosts
    assert "nameserver 10.9.9.9" in hosts and "search corp.example" in hosts and "options ndots:3" in hosts
    mac = docker(
        "run", "--rm", "--mac-address", "02:42:de:ad:be:ef", "busybox", "cat", "/sys/class/net/eth0/address"
    ).stdout.strip()
    assert mac == "02:42:de:ad:be:ef"
    host = docker("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link").stdout
    assert "lo" in host and host.count("\n") > 1


def test_names_resolve_on_user_networks_only(docker: DockerCLI, nets: list[str], busybox_image: str) -> None:
    net = _name("e2e-dns")
    nets.append(net)
    docker("network", "create", net)
    srv = _name("srv")
    _run(docker, net, "--network-alias", "db", "busybox", "sleep", "300", name=srv)
    ip = _inspect(docker, "container", srv)["NetworkSettings"]["Networks"][net]["IPAddress"]

    def lookup(name: str, network: str = net) -> tuple[int, str]:
        res = docker("run", "--rm", "--label", f"e2e-net={net}", "--network", network, "busybox",
                     "nslookup", name, check=False)  # fmt: skip
        return res.returncode, res.stdout

    conf = docker("run", "--rm", "--network", net, "busybox", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 127.0.0.11" in conf
    for name in (srv, "db", _inspect(docker, "container", srv)["Id"][:12]):
        code, out = lookup(name)
        assert code == 0 and f"Address: {ip}" in out, (name, out)
    # The default bridge has no names (as Docker); --link is how it gets one.
    assert lookup(srv, "bridge")[0] != 0
    docker("stop", "-t", "0", srv)
    assert lookup(srv)[0] != 0


def _footprint(berthd: BerthdProcess) -> tuple[int, int, int]:
    """(our interfaces, netns mounts under the exec root, rules in our nft table)."""
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    links = json.loads(out)
    ours = sum(1 for link in links if link.get("ifalias") == f"berth:{berthd.nft_table}")
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        mounts = sum(1 for line in f if str(berthd.exec_root / "netns") in line)
    table = subprocess.run(["nft", "list", "table", "ip", berthd.nft_table], capture_output=True, text=True,
                           check=True).stdout  # fmt: skip
    return ours, mounts, sum(1 for line in table.splitlines() if "dnat to" in line or "masquerade" in line)


def test_run_rm_cycles_leak_nothing(docker: DockerCLI, berthd: BerthdProcess, nets: list[str],
                                    busybox_image: str) -> None:  # fmt: skip
    net = _name("e2e-leak")
    nets.append(net)
    docker("network", "create", net)
    before = _footprint(berthd)
    for i in range(12):
        args = ["-p", "127.0.0.1::80"] if i % 2 else ["--network", net, "-p", "127.0.0.1::81/udp"]
        docker("run", "--rm", *args, "busybox", "true")
    # The kernel frees a netns (and its veth pair) just after its last user: allow a moment.
    deadline = time.monotonic() + 5
    while _footprint(berthd) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _footprint(berthd) == before


def test_link_on_the_default_bridge(docker: DockerCLI, busybox_image: str) -> None:
    srv = _name("lnk")
    cid = docker("run", "-d", "--name", srv, "busybox", "sleep", "300").stdout.strip()
    try:
        ip = _inspect(docker, "container", cid)["NetworkSettings"]["IPAddress"]
        assert ip.startswith("10.200.")
        out = docker("run", "--rm", "--link", f"{srv}:db", "busybox", "sh", "-c",
                     "cat /etc/hosts && ping -c 1 -W 3 db").stdout  # fmt: skip
        assert f"{ip}\tdb " in out and "1 packets received" in out
    finally:
        docker("rm", "-f", cid, check=False)
