"""Pure address management: default IPv4 pools, subnet choice, per-network v4/v6 allocation.

Subnets come from ``default-address-pools`` (daemon.json) or Docker's defaults, skipping any
subnet that overlaps one already in use (other networks) or routed on the host. Within a network
the gateway, the aux addresses and every allocated address are taken; dynamic addresses come
from ``ip_range`` (the whole subnet by default), fixed ones (``--ip``) from anywhere in it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import errdefs
from networks_svc.model import IPAMPool

__all__ = [
    "DEFAULT_POOLS",
    "AddressPool",
    "Allocator",
    "overlaps_any",
    "parse_pools",
    "pick_subnet",
    "pick_subnet6",
    "pool_version",
    "validate_pool",
]


@dataclass(frozen=True, slots=True)
class AddressPool:
    """One default-address-pools entry: carve ``base`` into subnets of prefix ``size``."""

    base: IPv4Network
    size: int


# moby's local default pools (libnetwork/ipamutils): 172.17-172.31 as /16s, 192.168/16 as /20s.
DEFAULT_POOLS: tuple[AddressPool, ...] = (
    AddressPool(IPv4Network("172.17.0.0/16"), 16),
    AddressPool(IPv4Network("172.18.0.0/16"), 16),
    AddressPool(IPv4Network("172.19.0.0/16"), 16),
    AddressPool(IPv4Network("172.20.0.0/14"), 16),
    AddressPool(IPv4Network("172.24.0.0/14"), 16),
    AddressPool(IPv4Network("172.28.0.0/14"), 16),
    AddressPool(IPv4Network("192.168.0.0/16"), 20),
)

IPNet = IPv4Network | IPv6Network
IPAddr = IPv4Address | IPv6Address

NO_POOL = ("could not find an available, non-overlapping IPv4 address pool among the defaults "
           "to assign to the network")  # fmt: skip
OVERLAP = "Pool overlaps with other one on this address space"


def parse_pools(raw: Sequence[Mapping[str, Any]]) -> list[AddressPool]:
    """daemon.json ``default-address-pools`` ([{"base": "10.0.0.0/8", "size": 24}]).

    Raises:
        errdefs.InvalidArgument: a bad base or size.
    """
    out: list[AddressPool] = []
    for entry in raw:
        base_s, size = str(entry.get("base", "")), entry.get("size")
        try:
            base = IPv4Network(base_s)
        except ValueError:
            raise errdefs.InvalidArgument(f"invalid base pool {base_s!r}") from None
        if not isinstance(size, int) or not base.prefixlen <= size <= 30:
            raise errdefs.InvalidArgument(
                f"invalid pools size {size!r} for base {base_s}: must be >= {base.prefixlen} and <= 30"
            )
        out.append(AddressPool(base, size))
    return out


def overlaps_any(net: IPv4Network | IPv6Network, others: Iterable[IPv4Network | IPv6Network]) -> bool:
    return any(net.version == o.version and net.overlaps(o) for o in others)


def _candidates(pools: Iterable[AddressPool]) -> Iterator[IPv4Network]:
    for pool in pools:
        yield from pool.base.subnets(new_prefix=pool.size)


def pick_subnet(pools: Sequence[AddressPool], taken: Iterable[IPNet]) -> IPv4Network:
    """The first pool subnet overlapping nothing in ``taken`` (networks and host routes).

    Raises:
        errdefs.InvalidArgument: every candidate overlaps (moby's text).
    """
    busy = list(taken)
    for cand in _candidates(pools or DEFAULT_POOLS):
        if not overlaps_any(cand, busy):
            return cand
    raise errdefs.InvalidArgument(NO_POOL)


# --ipv6 without a subnet: a /64 out of the unique-local fd00::/8, as recent dockerd does.
DEFAULT_POOL6 = AddressPool(IPv6Network("fd00::/8"), 64)  # type: ignore[arg-type]


def pick_subnet6(taken: Iterable[IPNet]) -> IPAMPool:
    """The first free /64 of fd00::/8 as a pool with its gateway (the first address).

    Raises:
        errdefs.InvalidArgument: never in practice (2^56 candidates).
    """
    busy = [t for t in taken if t.version == 6]
    for cand in DEFAULT_POOL6.base.subnets(new_prefix=DEFAULT_POOL6.size):
        if not overlaps_any(cand, busy):
            return IPAMPool(str(cand), "", str(next(cand.hosts())))
    raise errdefs.InvalidArgument(NO_POOL.replace("IPv4", "IPv6"))


def _parse_net(value: str, what: str) -> IPNet:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid {what} {value}: invalid CIDR address: {value}") from None
    if "/" in value and ipaddress.ip_interface(value).ip != net.network_address:  # host bits set
        raise errdefs.InvalidArgument(f"invalid {what} {value}: it should be {net}")
    return net


def _parse_ip(value: str, what: str, version: int = 4) -> IPAddr:
    try:
        return IPv4Address(value) if version == 4 else IPv6Address(value)
    except ValueError:
        raise errdefs.InvalidArgument(
            f"invalid {what} address {value!r}: it is not an IPv{version} address"
        ) from None


def pool_version(pool: IPAMPool) -> int:
    """4 or 6: the family of a pool's subnet (4 for an unparsable one, which validation rejects)."""
    try:
        return ipaddress.ip_network(pool.subnet, strict=False).version
    except ValueError:
        return 4


def validate_pool(pool: IPAMPool, taken: Iterable[IPNet]) -> IPAMPool:
    """Check a user's --subnet/--ip-range/--gateway/--aux-address (v4 or v6); fill the gateway in.

    Only subnets of the same family in ``taken`` can overlap.

    Raises:
        errdefs.InvalidArgument: malformed values, a range or address outside the subnet.
        errdefs.PermissionDenied: the subnet overlaps ``taken`` ("Pool overlaps ...", as moby's 403).
    """
    subnet = _parse_net(pool.subnet, "subnet")
    if overlaps_any(subnet, taken):
        raise errdefs.PermissionDenied(OVERLAP)
    if pool.ip_range:
        rng = _parse_net(pool.ip_range, "ip-range")
        if rng.version != subnet.version or not rng.subnet_of(subnet):  # type: ignore[arg-type]
            raise errdefs.InvalidArgument(
                f"invalid ip-range {pool.ip_range}: it must be a subnet of {subnet}"
            )
    gw = str(next(subnet.hosts(), subnet.network_address))
    if pool.gateway:
        addr = _parse_ip(pool.gateway, "gateway", subnet.version)
        if addr not in subnet:
            raise errdefs.InvalidArgument(f"invalid gateway {pool.gateway}: it is not in subnet {subnet}")
        gw = str(addr)
    for name, value in pool.aux_addresses.items():
        addr = _parse_ip(value, f"auxiliary ({name})", subnet.version)
        if addr not in subnet:
            raise errdefs.InvalidArgument(
                f"invalid auxiliary address {name}={value}: it is not in subnet {subnet}"
            )
    return IPAMPool(str(subnet), pool.ip_range, gw, dict(pool.aux_addresses))


class Allocator:
    """Addresses of one network: the gateway, aux addresses and endpoints are taken.

    Dynamic allocation walks ``ip_range`` round-robin from the last address handed out (as
    libnetwork's bitmask does), so a just-released address is not reused at once.
    """

    def __init__(self, pool: IPAMPool) -> None:
        self.subnet: IPNet = ipaddress.ip_network(pool.subnet)
        self.version = self.subnet.version
        self.range: IPNet = ipaddress.ip_network(pool.ip_range) if pool.ip_range else self.subnet
        first: IPAddr = next(iter(self.subnet.hosts()))  # type: ignore[assignment]
        self.gateway: IPAddr = ipaddress.ip_address(pool.gateway) if pool.gateway else first
        self._reserved = {self.gateway, *(ipaddress.ip_address(a) for a in pool.aux_addresses.values())}
        self._used: set[IPAddr] = set()
        self._last = int(self.range.network_address)

    def mark(self, addr: str) -> None:
        """Record an address already in use (reconcile)."""
        self._used.add(ipaddress.ip_address(addr))

    def release(self, addr: str) -> None:
        self._used.discard(ipaddress.ip_address(addr))

    def _free(self, ip: IPAddr) -> bool:
        return (
            ip not in self._used
            and ip not in self._reserved
            and ip not in (self.subnet.network_address, self.subnet.broadcast_address)
        )

    def allocate(self, fixed: str = "") -> str:
        """Take ``fixed`` (--ip) or the next free address of the range.

        Raises:
            errdefs.InvalidArgument: ``fixed`` is malformed or outside the subnet.
            errdefs.Conflict: ``fixed`` is taken ("Address already in use").
            errdefs.Unavailable: the range is exhausted.
        """
        if fixed:
            ip = _parse_ip(fixed, "IP", self.version)
            if ip not in self.subnet:
                raise errdefs.InvalidArgument(
                    f"invalid address {fixed}: it does not belong to any of this network's subnets"
                )
            if not self._free(ip):
                raise errdefs.Conflict("Address already in use")
            self._used.add(ip)
            return str(ip)
        lo, hi = int(self.range.network_address), int(self.range.broadcast_address)
        span = hi - lo + 1
        start = self._last + 1
        for i in range(span):
            n = lo + (start - lo + i) % span
            cand: IPAddr = IPv4Address(n) if self.version == 4 else IPv6Address(n)
            if self._free(cand):
                self._used.add(cand)
                self._last = int(cand)
                return str(cand)
        raise errdefs.Unavailable(
            f"no available IPv{self.version} addresses on this network's address pools: {self.subnet}"
        )
