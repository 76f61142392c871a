"""IPAM: default pools, subnet choice around routes and networks, address allocation, Docker's errors."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

import errdefs
from networks_svc import ipam
from networks_svc.model import IPAMPool


def test_defaults_are_dockers_172_17_first() -> None:
    assert ipam.pick_subnet([], []) == IPv4Network("172.17.0.0/16")


def test_pick_skips_routed_and_taken_subnets() -> None:
    taken = [IPv4Network("172.17.0.0/16"), IPv4Network("172.18.5.0/24")]
    assert ipam.pick_subnet([], taken) == IPv4Network("172.19.0.0/16")


def test_configured_pools_are_carved_by_size() -> None:
    pools = ipam.parse_pools([{"base": "10.201.0.0/20", "size": 24}])
    taken = [IPv4Network("10.201.0.0/24"), IPv4Network("10.201.1.128/25")]
    assert ipam.pick_subnet(pools, taken) == IPv4Network("10.201.2.0/24")


def test_exhausted_pools_give_mobys_text() -> None:
    pools = ipam.parse_pools([{"base": "10.201.0.0/24", "size": 24}])
    with pytest.raises(errdefs.InvalidArgument, match="could not find an available, non-overlapping IPv4"):
        ipam.pick_subnet(pools, [IPv4Network("10.0.0.0/8")])


@pytest.mark.parametrize("raw", [[{"base": "nope", "size": 24}], [{"base": "10.0.0.0/16", "size": 8}],
                                 [{"base": "10.0.0.0/16"}]])  # fmt: skip
def test_bad_pools_are_refused(raw: list[dict[str, object]]) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        ipam.parse_pools(raw)


def test_user_pool_gets_first_host_as_gateway() -> None:
    pool = ipam.validate_pool(IPAMPool("10.9.0.0/24"), [])
    assert pool.gateway == "10.9.0.1"


def test_overlapping_subnet_is_mobys_403() -> None:
    with pytest.raises(errdefs.PermissionDenied, match="Pool overlaps with other one on this address space"):
        ipam.validate_pool(IPAMPool("10.9.0.0/16"), [IPv4Network("10.9.3.0/24")])


@pytest.mark.parametrize("pool, text", [
    (IPAMPool("10.9.0.0/33"), "invalid subnet 10.9.0.0/33"),
    (IPAMPool("bogus"), "invalid subnet bogus"),
    (IPAMPool("10.9.0.7/24"), "it should be 10.9.0.0/24"),
    (IPAMPool("10.9.0.0/24", gateway="10.8.0.1"), "not in subnet"),
    (IPAMPool("10.9.0.0/24", ip_range="10.9.1.0/25"), "must be a subnet of"),
    (IPAMPool("10.9.0.0/24", aux_addresses={"h": "10.10.0.1"}), "auxiliary"),
])  # fmt: skip
def test_invalid_user_pools(pool: IPAMPool, text: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=text):
        ipam.validate_pool(pool, [])


def test_allocation_skips_gateway_aux_and_walks_the_range() -> None:
    a = ipam.Allocator(IPAMPool("10.9.0.0/24", "10.9.0.0/29", "10.9.0.1", {"h": "10.9.0.2"}))
    assert [a.allocate() for _ in range(5)] == ["10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6", "10.9.0.7"]
    with pytest.raises(errdefs.Unavailable):
        a.allocate()
    a.release("10.9.0.4")
    assert a.allocate() == "10.9.0.4"


def test_fixed_address_outside_range_but_inside_subnet() -> None:
    a = ipam.Allocator(IPAMPool("10.9.0.0/24", "10.9.0.0/28", "10.9.0.1"))
    assert a.allocate("10.9.0.200") == "10.9.0.200"
    with pytest.raises(errdefs.Conflict, match="Address already in use"):
        a.allocate("10.9.0.200")
    with pytest.raises(errdefs.Conflict):
        a.allocate("10.9.0.1")  # the gateway
    with pytest.raises(errdefs.InvalidArgument):
        a.allocate("10.10.0.5")


def test_released_address_is_not_reused_at_once() -> None:
    a = ipam.Allocator(IPAMPool("10.9.0.0/24", "", "10.9.0.1"))
    first = a.allocate()
    a.release(first)
    assert a.allocate() != first
