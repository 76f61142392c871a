"""IPAM for IPv6 pools: validation beside IPv4, per-family overlaps, allocation, the ULA default."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

import pytest

import errdefs
from networks_svc import ipam
from networks_svc.model import IPAMPool


def test_v6_pool_gets_its_gateway_and_keeps_the_range_text() -> None:
    got = ipam.validate_pool(IPAMPool("2001:389::/64", "2001:389::0/96"), [IPv4Network("172.18.0.0/16")])
    assert got == IPAMPool("2001:389::/64", "2001:389::0/96", "2001:389::1", {})
    assert ipam.pool_version(got) == 6


def test_overlaps_count_only_within_a_family() -> None:
    taken = [IPv4Network("172.28.0.0/16"), IPv6Network("2001:389::/64")]
    with pytest.raises(errdefs.PermissionDenied, match="Pool overlaps"):
        ipam.validate_pool(IPAMPool("2001:389::/48"), taken)
    assert ipam.validate_pool(IPAMPool("2001:38a::/64"), taken).gateway == "2001:38a::1"


def test_v6_gateway_and_aux_must_be_v6_in_the_subnet() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="not an IPv6 address"):
        ipam.validate_pool(IPAMPool("2001:389::/64", gateway="10.0.0.1"), [])
    with pytest.raises(errdefs.InvalidArgument, match="not in subnet"):
        ipam.validate_pool(IPAMPool("2001:389::/64", gateway="2001:390::1"), [])
    with pytest.raises(errdefs.InvalidArgument, match="must be a subnet"):
        ipam.validate_pool(IPAMPool("2001:389::/64", ip_range="10.0.0.0/24"), [])


def test_host_bits_in_a_cidr_are_refused_but_spelling_is_free() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="it should be 2001:389::/64"):
        ipam.validate_pool(IPAMPool("2001:389::5/64"), [])
    assert ipam.validate_pool(IPAMPool("10.9.0.0/16", ip_range="10.9.5.0/24"), []).subnet == "10.9.0.0/16"


def test_v6_allocator_skips_the_gateway_and_takes_fixed_addresses() -> None:
    a = ipam.Allocator(IPAMPool("2001:389::/64", "2001:389::0/96", "2001:389::ffff"))
    assert a.version == 6 and str(a.gateway) == "2001:389::ffff"
    assert a.allocate() == "2001:389::1"
    assert a.allocate("2001:389::f00d") == "2001:389::f00d"
    with pytest.raises(errdefs.Conflict):
        a.allocate("2001:389::ffff")
    with pytest.raises(errdefs.InvalidArgument):
        a.allocate("10.0.0.5")
    a.release("2001:389::1")
    assert a.allocate() == "2001:389::2"


def test_default_v6_subnet_is_the_first_free_ula_64() -> None:
    assert ipam.pick_subnet6([]) == IPAMPool("fd00::/64", "", "fd00::1")
    taken = [IPv6Network("fd00::/64"), IPv4Network("10.0.0.0/8")]
    assert ipam.pick_subnet6(taken).subnet == "fd00:0:0:1::/64"
