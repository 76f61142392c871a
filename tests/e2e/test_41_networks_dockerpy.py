"""Networks through docker-py 7.1: create with IPAM, list/get/filters, connect with aliases, prune."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker.errors
import docker.types
import pytest

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


def test_create_with_ipam_get_list_remove(dockerpy: Any, cleanup: list[Any]) -> None:
    name = f"py-{uuid.uuid4().hex[:8]}"
    p = free_prefix()
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=f"{p}.0/24", gateway=f"{p}.1")])
    net = dockerpy.networks.create(
        name,
        driver="bridge",
        ipam=ipam,
        labels={"suite": "py"},
        options={"com.docker.network.bridge.name": "bt" + name[3:11]},
    )
    cleanup.append(net)
    got = dockerpy.networks.get(net.id)
    assert got.name == name and got.attrs["Driver"] == "bridge" and got.attrs["Labels"] == {"suite": "py"}
    assert got.attrs["IPAM"]["Config"] == [{"Subnet": f"{p}.0/24", "Gateway": f"{p}.1"}]
    assert got.attrs["Options"]["com.docker.network.bridge.name"] == "bt" + name[3:11]
    assert [n.name for n in dockerpy.networks.list(filters={"label": "suite=py"})] == [name]
    assert name in [n.name for n in dockerpy.networks.list(names=[name])]
    with pytest.raises(docker.errors.APIError) as err:
        dockerpy.networks.create(name)
    assert err.value.response.status_code == 409
    net.remove()
    cleanup.remove(net)
    with pytest.raises(docker.errors.NotFound):
        dockerpy.networks.get(name)


def test_connect_with_alias_and_fixed_ip(dockerpy: Any, busybox_image: str, cleanup: list[Any]) -> None:
    name = f"py-{uuid.uuid4().hex[:8]}"
    p = free_prefix()
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=f"{p}.0/24")])
    net = dockerpy.networks.create(name, ipam=ipam)
    cleanup.append(net)
    c = dockerpy.containers.run("busybox", ["sleep", "300"], detach=True)
    cleanup.append(c)
    net.connect(c, aliases=["db"], ipv4_address=f"{p}.50")
    c.reload()
    ep = c.attrs["NetworkSettings"]["Networks"][name]
    assert ep["IPAddress"] == f"{p}.50" and ep["Aliases"] == ["db"]
    assert ep["IPAMConfig"] == {"IPv4Address": f"{p}.50", "IPv6Address": ""}
    assert "bridge" in c.attrs["NetworkSettings"]["Networks"]
    net.reload()
    assert [x.id for x in net.containers] == [c.id]
    code, out = c.exec_run(["ip", "-4", "-o", "addr", "show", "eth1"])
    assert code == 0 and f"{p}.50/24".encode() in out
    with pytest.raises(docker.errors.APIError) as err:
        net.remove()
    assert err.value.response.status_code == 403
    net.disconnect(c)
    c.reload()
    assert name not in c.attrs["NetworkSettings"]["Networks"]


def test_run_on_network_and_prune(dockerpy: Any, busybox_image: str, cleanup: list[Any]) -> None:
    name = f"py-{uuid.uuid4().hex[:8]}"
    net = dockerpy.networks.create(name, labels={"prune": "me"})
    cleanup.append(net)
    out = dockerpy.containers.run(
        "busybox", ["ip", "-4", "-o", "addr", "show", "eth0"], network=name, remove=True
    )
    subnet = net.attrs["IPAM"]["Config"][0]["Subnet"]
    assert subnet.rsplit(".", 1)[0] in out.decode()
    since = time.time() - 1
    res = dockerpy.networks.prune(filters={"label": "prune=me"})
    assert res["NetworksDeleted"] == [name]
    cleanup.remove(net)
    events = dockerpy.events(since=since, until=time.time() + 1, decode=True,
                             filters={"type": "network", "event": ["destroy", "prune"]})
    actions = [(e["Action"], e["Actor"]["Attributes"].get("name")) for e in events]
    assert ("destroy", name) in actions and ("prune", None) in actions
