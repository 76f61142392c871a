"""Blocking netlink work with pyroute2: bridges, veth pairs, addresses, routes, network namespaces.

Every function here blocks; callers go through ``anyio.to_thread.run_sync``. A network namespace
berth makes is a bind mount of an nsfs file (``<exec-root>/netns/<container-id>``), so it lives on
while no process is in it and can be re-found after a daemon restart. Work inside a namespace
runs on the calling worker thread after ``setns`` (network namespaces are per thread) and the
thread is always switched back before returning.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

__all__ = [
    "NetnsError",
    "VethSpec",
    "attach_veth",
    "create_netns",
    "delete_link",
    "delete_links_with_alias",
    "enable_ip_forward",
    "ensure_bridge",
    "link_exists",
    "links_with_alias",
    "netns_is_mounted",
    "remove_netns",
    "routed_subnets",
    "routed_subnets6",
]

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
IFA_F_NODAD = 0x02


class NetnsError(OSError):
    """A namespace could not be made, entered or left."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise NetnsError(e, f"{what}: {os.strerror(e)}")


@contextlib.contextmanager
def _thread_in_netns(path: str) -> Iterator[None]:
    """Run the block on this thread inside the netns at ``path``; always switch back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(target, CLONE_NEWNET), f"setns {path}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            # A worker thread left in a container's netns would poison later work: die loudly.
            if _libc.setns(home, CLONE_NEWNET) != 0:
                os.abort()
    finally:
        os.close(home)


def _sysctl(path: str, value: str) -> None:
    with contextlib.suppress(OSError), open(path, "w") as f:
        f.write(value)


def create_netns(path: str) -> None:
    """Make a new network namespace pinned at ``path`` (a bind mount), with loopback up.

    Idempotent: an existing namespace at ``path`` is kept.
    """
    if netns_is_mounted(path):
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            with open(path, "w"):
                pass
            _check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), None, MS_BIND, None),
                   f"bind mount {path}")  # fmt: skip
            with IPRoute() as ipr:
                ipr.link("set", index=1, state="up")  # lo is always index 1 in a new netns
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                os.abort()
    finally:
        os.close(home)


def netns_is_mounted(path: str) -> bool:
    """Whether ``path`` is an nsfs bind mount (a pinned namespace)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if parts[4] == path and " - nsfs " in line:
                    return True
    except OSError:
        pass
    return False


def remove_netns(path: str) -> None:
    """Unpin and delete the namespace at ``path`` (the kernel frees it with its last user)."""
    if netns_is_mounted(path):
        _libc.umount2(path.encode(), MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _index(ipr: IPRoute, ifname: str) -> int | None:
    # One RTM_GETLINK by name: link_lookup would dump every interface of the host.
    try:
        msgs = ipr.link("get", ifname=ifname)
    except NetlinkError as e:
        if e.code in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
            return None
        raise
    return int(msgs[0]["index"]) if msgs else None


def link_exists(ifname: str) -> bool:
    with IPRoute() as ipr:
        return _index(ipr, ifname) is not None


def ensure_bridge(
    ifname: str,
    gateway: str,
    prefixlen: int,
    alias: str,
    *,
    set_address: bool = True,
    gateway6: str = "",
    prefixlen6: int = 0,
) -> None:
    """Create bridge ``ifname`` (if missing) with ``gateway/prefixlen``, up, marked with ``alias``.

    ``gateway6/prefixlen6`` (IPv6 networks) is added without duplicate address detection so it
    is usable at once; the bridge takes no router advertisements.

    route_localnet is set on it so DNAT of 127.0.0.1 to containers works (dockerd does the same
    on its own bridges when the userland proxy is off).
    """
    with IPRoute() as ipr:
        idx = _index(ipr, ifname)
        if idx is None:
            try:
                ipr.link("add", ifname=ifname, kind="bridge")
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise
            idx = _index(ipr, ifname)
            assert idx is not None
            ipr.link("set", index=idx, ifalias=alias)
        if set_address and gateway:
            have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)}
            if (gateway, prefixlen) not in have:
                try:
                    ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
                except NetlinkError as e:
                    if e.code != errno.EEXIST:
                        raise
        if set_address and gateway6:
            _sysctl(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "0")
            _sysctl(f"/proc/sys/net/ipv6/conf/{ifname}/accept_ra", "0")
            _add_addr(ipr, idx, gateway6, prefixlen6)
        ipr.link("set", index=idx, state="up")
    _sysctl(f"/proc/sys/net/ipv4/conf/{ifname}/route_localnet", "1")


def _add_addr(ipr: IPRoute, idx: int, address: str, prefixlen: int) -> None:
    """Add an address (EEXIST is fine); IPv6 ones skip DAD so they work at once."""
    flags = IFA_F_NODAD if ":" in address else 0
    try:
        ipr.addr("add", index=idx, address=address, prefixlen=prefixlen, flags=flags)
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise


def delete_link(ifname: str) -> None:
    """Delete interface ``ifname`` if it exists."""
    with IPRoute() as ipr:
        idx = _index(ipr, ifname)
        if idx is not None:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=idx)


def links_with_alias(alias: str) -> list[str]:
    """Names of the interfaces of this netns whose ifalias is ``alias`` (berth's marker)."""
    with IPRoute() as ipr:
        return [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()
                if link.get_attr("IFLA_IFALIAS") == alias]  # fmt: skip


def delete_links_with_alias(alias: str) -> list[str]:
    names = links_with_alias(alias)
    for n in names:
        delete_link(n)
    return names


@dataclass(frozen=True, slots=True)
class VethSpec:
    """One endpoint to plug into a container's netns."""

    host_ifname: str  # "vethXXXXXXX" on the host, enslaved to ``bridge``
    bridge: str
    ifname: str  # inside the container: eth0, eth1 ...
    address: str
    prefixlen: int
    gateway: str  # "" = no default route (internal networks, secondary endpoints)
    mac: str
    alias: str
    address6: str = ""  # IPv6 networks: the container's address, prefix and gateway
    prefixlen6: int = 0
    gateway6: str = ""
    link_local: tuple[str, ...] = ()  # IPAMConfig.LinkLocalIPs


def attach_veth(netns_path: str, spec: VethSpec) -> None:
    """Create the veth pair, enslave the host end, configure the container end inside the netns.

    A half-made pair is deleted on failure.
    """
    peer_tmp = "p" + spec.host_ifname[1:]
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with IPRoute() as ipr:
            br = _index(ipr, spec.bridge)
            if br is None:
                raise NetnsError(errno.ENODEV, f"bridge {spec.bridge} does not exist")
            ipr.link("add", ifname=spec.host_ifname, kind="veth",
                     peer={"ifname": peer_tmp, "net_ns_fd": fd})  # fmt: skip
            try:
                idx = _index(ipr, spec.host_ifname)
                assert idx is not None
                ipr.link("set", index=idx, master=br, ifalias=spec.alias)
                ipr.link("set", index=idx, state="up")
                with contextlib.suppress(NetlinkError):
                    ipr.brport("set", index=idx, hairpin_mode=1)
            except BaseException:
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", ifname=spec.host_ifname)
                raise
    finally:
        os.close(fd)
    try:
        with _thread_in_netns(netns_path), IPRoute() as ns:
            pidx = _index(ns, peer_tmp)
            assert pidx is not None
            ns.link("set", index=pidx, ifname=spec.ifname, address=spec.mac)
            ns.addr("add", index=pidx, address=spec.address, prefixlen=spec.prefixlen)
            if spec.address6:
                _sysctl(f"/proc/sys/net/ipv6/conf/{spec.ifname}/disable_ipv6", "0")
                _sysctl(f"/proc/sys/net/ipv6/conf/{spec.ifname}/accept_ra", "0")
                _add_addr(ns, pidx, spec.address6, spec.prefixlen6)
            for ll in spec.link_local:
                _add_addr(ns, pidx, ll, 64 if ":" in ll else 16)
            ns.link("set", index=pidx, state="up")
            if spec.gateway:
                ns.route("add", dst="0.0.0.0/0", gateway=spec.gateway, oif=pidx)
            if spec.gateway6:
                ns.route("add", dst="::/0", gateway=spec.gateway6, oif=pidx, family=10)
    except BaseException:
        delete_link(spec.host_ifname)
        raise


def enable_ip_forward() -> None:
    """Turn on IPv4 forwarding, as dockerd does at start (containers need it to reach out)."""
    _sysctl("/proc/sys/net/ipv4/ip_forward", "1")


def routed_subnets() -> list[ipaddress.IPv4Network]:
    """Destinations of the host's IPv4 routes (main table), default route excluded."""
    out: list[ipaddress.IPv4Network] = []
    with IPRoute() as ipr:
        for r in ipr.get_routes(family=2, table=254):
            dst = r.get_attr("RTA_DST")
            if dst and r["dst_len"]:
                out.append(ipaddress.IPv4Network(f"{dst}/{r['dst_len']}", strict=False))
    return out


def routed_subnets6() -> list[ipaddress.IPv6Network]:
    """Destinations of the host's IPv6 routes (main table): default, link-local and multicast excluded."""
    out: list[ipaddress.IPv6Network] = []
    with IPRoute() as ipr:
        for r in ipr.get_routes(family=10, table=254):
            dst = r.get_attr("RTA_DST")
            if dst and r["dst_len"]:
                net = ipaddress.IPv6Network(f"{dst}/{r['dst_len']}", strict=False)
                if not (net.is_link_local or net.is_multicast):
                    out.append(net)
    return out
