"""NetworksService: networks, IPAM, endpoints, netns, published ports and berth's nft table.

Every record of the node is kept in memory (the service is the only writer of ``net_*``) and
written through the store. Mutations run under one lock: they are short, and the data plane
(netlink in worker threads, one ``nft -f -`` per ruleset change) must see a consistent state.
``reconcile()`` at start re-creates the bridges and the nft table, keeps the netns of
containers that are still attached and removes what a crash left half-made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import logging
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio

import errdefs
from dockerapi import filters as dfilters
from dockerapi.timefmt import now_rfc3339
from events_svc.bus import EventsAPI
from events_svc.model import Event
from networks_svc import ipam, netlink, nft, ports
from networks_svc.api import ChangeListener, DnsHook
from networks_svc.model import (
    BRIDGE_NAME_OPTION,
    BUILTIN_NETWORKS,
    AttachRequest,
    AttachResult,
    EndpointConfig,
    EndpointRecord,
    EndpointResource,
    EndpointSettings,
    IPAMConfig,
    IPAMPool,
    Network,
    NetworkAttachment,
    NetworkCreate,
    PortBinding,
    PortMapping,
    SandboxRecord,
)
from networks_svc.store import NetworkStore

__all__ = ["NetworkConfig", "NetworksService", "host_resolvers"]

log = logging.getLogger(__name__)

LIST_FILTERS = {"dangling", "driver", "id", "label", "name", "scope", "type"}
PRUNE_FILTERS = {"until", "label", "label!"}
DNS_ADDRESS = "127.0.0.11"
_DEFAULT_BRIDGE_OPTIONS = {
    "com.docker.network.bridge.default_bridge": "true",
    "com.docker.network.bridge.enable_icc": "true",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
    "com.docker.network.driver.mtu": "1500",
}


@dataclass(slots=True)
class NetworkConfig:
    """Daemon settings of the networks service."""

    exec_root: Path
    default_bridge: str = "berth0"  # Linux bridge of the "bridge" network (not docker0)
    bip: str = ""  # "10.200.5.1/24": the default bridge's gateway and subnet; "" = from the pools
    address_pools: list[ipam.AddressPool] = field(default_factory=list)
    resolv_conf: str = "/etc/resolv.conf"

    @property
    def table(self) -> str:
        return nft.table_name_for(self.default_bridge)

    @property
    def alias(self) -> str:
        """ifalias marking the interfaces this instance made (tests clean up by it)."""
        return f"berth:{self.table}"


def host_resolvers(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search, options) of a resolv.conf, loopback nameservers dropped."""
    ns: list[str] = []
    search: list[str] = []
    opts: list[str] = []
    for line in text.splitlines():
        w = line.split()
        if len(w) < 2 or w[0].startswith(("#", ";")):
            continue
        if w[0] == "nameserver" and not (w[1].startswith("127.") or w[1] == "::1"):
            ns.append(w[1])
        elif w[0] in ("search", "domain"):
            search = w[1:]
        elif w[0] == "options":
            opts += w[1:]
    return ns, search, opts


def _mac_for(ip: str) -> str:
    b = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


def _regex_any(patterns: list[str], value: str) -> bool:
    for p in patterns:
        with contextlib.suppress(re.error):
            if re.search(p, value):
                return True
    return False


class NetworksService:
    """Implements NetworksAPI on this node.

    Resource handling: ``await reconcile()`` once before serving; nothing runs in the background.
    """

    def __init__(
        self,
        config: NetworkConfig,
        store: NetworkStore,
        node_id: str,
        events: EventsAPI | None = None,
        dns: DnsHook | None = None,
    ) -> None:
        self._cfg = config
        self._store = store
        self._node = node_id
        self._events = events
        self.dns = dns  # the embedded DNS server; user-defined networks use 127.0.0.11 when set
        self._nets: dict[str, Network] = {}
        self._alloc: dict[str, ipam.Allocator] = {}
        self._alloc6: dict[str, ipam.Allocator] = {}  # networks with an IPv6 pool
        self._eps: dict[tuple[str, str], EndpointRecord] = {}
        self._sbs: dict[str, SandboxRecord] = {}
        self._held: dict[str, list[ports.Reservation]] = {}  # container id -> reserved host ports
        self._lock = anyio.Lock()
        self._listeners: list[ChangeListener] = []
        self._upstreams: tuple[list[str], list[str], list[str]] = ([], [], [])

    # ---- wiring --------------------------------------------------------------------------------

    def add_listener(self, fn: ChangeListener) -> None:
        """Be told when connect/disconnect changes a container's endpoints (embedded mode)."""
        self._listeners.append(fn)

    def upstreams(self) -> list[str]:
        return list(self._upstreams[0])

    def _netns_path(self, cid: str) -> str:
        return str(self._cfg.exec_root / "netns" / cid)

    def _is_default(self, net_id: str) -> bool:
        n = self._nets.get(net_id)
        return n is not None and n.name in BUILTIN_NETWORKS

    async def _publish(self, action: str, net: Network, **attrs: str) -> None:
        if self._events is None:
            return
        try:
            await self._events.publish(
                Event(
                    type="network",
                    action=action,
                    actor_id=net.id,
                    attributes={"name": net.name, "type": net.driver, **attrs},
                )
            )
        except Exception:  # events are best effort
            log.exception("publishing network %s of %s failed", action, net.id)

    # ---- start-up ------------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Load records, make the built-in networks, bridges and nft table; drop half-made state."""
        text = await anyio.to_thread.run_sync(_read, self._cfg.resolv_conf)
        self._upstreams = host_resolvers(text)
        async with self._lock:
            for n in await self._store.list_networks():
                self._nets[n.id] = n
            for n in self._nets.values():
                self._set_allocators(n)
            await self._builtins()
            for ep in await self._store.list_endpoints():
                if ep.network_id not in self._nets:
                    await self._store.delete_endpoint(ep.network_id, ep.container_id)
                    continue
                self._eps[(ep.network_id, ep.container_id)] = ep
            for sb in await self._store.list_sandboxes():
                self._sbs[sb.container_id] = sb
            await anyio.to_thread.run_sync(netlink.enable_ip_forward)
            for n in self._nets.values():
                await self._ensure_bridge(n)
            await self._reconcile_sandboxes()
            await self._apply_nft()

    async def _reconcile_sandboxes(self) -> None:
        keep_veths: set[str] = set()
        for sb in list(self._sbs.values()):
            cid = sb.container_id
            alive = sb.attached and (
                not sb.netns_path
                or sb.request.network_mode.startswith("container:")
                or await anyio.to_thread.run_sync(netlink.netns_is_mounted, sb.netns_path)
            )
            if alive:
                for ep in self._container_eps(cid):
                    if ep.ip_address:
                        self._alloc_of(ep.network_id).mark(ep.ip_address)
                        keep_veths.add(ep.veth)
                    if ep.ipv6_address and ep.network_id in self._alloc6:
                        self._alloc6[ep.network_id].mark(ep.ipv6_address)
                self._held[cid] = []
                for p in sb.ports:
                    with contextlib.suppress(errdefs.EngineError):
                        self._held[cid].append(
                            ports.reserve(
                                p.protocol,
                                "" if p.host_ip == "0.0.0.0" else p.host_ip,
                                p.public_port,
                                p.public_port,
                            )
                        )
                continue
            if sb.attached:
                log.info("dropping the half-made or stale network sandbox of %s", cid)
            await self._teardown(sb)
        # veths marked as ours that no live endpoint owns: left by a crash.
        names = await anyio.to_thread.run_sync(netlink.links_with_alias, self._cfg.alias)
        bridges = {n.bridge for n in self._nets.values()}
        for name in names:
            if name not in keep_veths and name not in bridges:
                await anyio.to_thread.run_sync(netlink.delete_link, name)
        # netns files no record owns
        nsdir = self._cfg.exec_root / "netns"
        if await anyio.Path(nsdir).is_dir():
            for entry in await anyio.to_thread.run_sync(os.listdir, nsdir):
                sb2 = self._sbs.get(entry)
                if sb2 is None or not sb2.attached:
                    await anyio.to_thread.run_sync(netlink.remove_netns, str(nsdir / entry))

    async def _builtins(self) -> None:
        have = {n.name for n in self._nets.values()}
        if "bridge" not in have:
            pool = await self._default_bridge_pool()
            await self._insert(
                Network(
                    id=secrets.token_hex(32),
                    name="bridge",
                    created=now_rfc3339(),
                    driver="bridge",
                    ipam=IPAMConfig(config=[pool]),
                    node_id=self._node,
                    options={**_DEFAULT_BRIDGE_OPTIONS, BRIDGE_NAME_OPTION: self._cfg.default_bridge},
                )
            )
        if "host" not in have:
            await self._insert(
                Network(
                    id=secrets.token_hex(32),
                    name="host",
                    created=now_rfc3339(),
                    driver="host",
                    node_id=self._node,
                )
            )
        if "none" not in have:
            await self._insert(
                Network(
                    id=secrets.token_hex(32),
                    name="none",
                    created=now_rfc3339(),
                    driver="null",
                    node_id=self._node,
                )
            )

    async def _default_bridge_pool(self) -> IPAMPool:
        if self._cfg.bip:
            try:
                iface = ipaddress.IPv4Interface(self._cfg.bip)
            except ValueError:
                raise errdefs.InvalidArgument(f"invalid --bip {self._cfg.bip!r}") from None
            return IPAMPool(str(iface.network), "", str(iface.ip))
        taken = [*self._subnets(), *await anyio.to_thread.run_sync(netlink.routed_subnets)]
        subnet = ipam.pick_subnet(self._cfg.address_pools, taken)
        return IPAMPool(str(subnet), "", str(next(subnet.hosts())))

    async def _insert(self, net: Network) -> None:
        await self._store.insert_network(net)
        self._nets[net.id] = net
        self._set_allocators(net)

    def _set_allocators(self, net: Network) -> None:
        for pool in net.ipam.config:
            (self._alloc if ipam.pool_version(pool) == 4 else self._alloc6)[net.id] = ipam.Allocator(pool)

    async def _ensure_bridge(self, net: Network) -> None:
        if not net.bridge or not net.ipam.config:
            return
        pool = net.ipam.config[0]
        plen = ipaddress.IPv4Network(pool.subnet).prefixlen
        a6 = self._alloc6.get(net.id)
        gw6, plen6 = (str(a6.gateway), a6.subnet.prefixlen) if a6 is not None else ("", 0)
        await anyio.to_thread.run_sync(
            lambda: netlink.ensure_bridge(
                net.bridge, pool.gateway, plen, self._cfg.alias, gateway6=gw6, prefixlen6=plen6
            )
        )

    async def _apply_nft(self) -> None:
        bridges = [nft.NftBridge(n.bridge, n.ipam.config[0].subnet, n.internal)
                   for n in sorted(self._nets.values(), key=lambda n: n.created)
                   if n.bridge and n.ipam.config]  # fmt: skip
        rules: list[nft.NftPort] = []
        for cid, sb in self._sbs.items():
            if not sb.attached or not sb.ports:
                continue
            target = self._primary_ep(cid)
            if target is None:
                continue
            net = self._nets[target.network_id]
            for p in sb.ports:
                rules.append(
                    nft.NftPort(
                        p.protocol, p.host_ip, p.public_port, target.ip_address, p.private_port, net.bridge
                    )
                )
        await nft.apply(nft.ruleset(self._cfg.table, bridges, rules))

    async def shutdown(self) -> None:
        """At a clean daemon stop with no container attached: remove the bridges and the nft table.

        With containers still running (they outlive berthd) everything stays for them; the next
        start re-creates whatever is missing either way.
        """
        async with self._lock:
            if any(sb.attached for sb in self._sbs.values()):
                return
            for r in [r for held in self._held.values() for r in held]:
                r.close()
            for n in self._nets.values():
                if n.bridge:
                    await anyio.to_thread.run_sync(netlink.delete_link, n.bridge)
            await nft.delete(self._cfg.table)

    # ---- lookups -------------------------------------------------------------------------------

    def _subnets(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p.subnet) for n in self._nets.values() for p in n.ipam.config]

    def _alloc_of(self, net_id: str) -> ipam.Allocator:
        a = self._alloc.get(net_id)
        if a is None:
            raise errdefs.InvalidArgument(f"network {self._nets[net_id].name} has no address pool")
        return a

    def _find(self, ref: str) -> Network:
        if not ref:
            raise errdefs.NotFound("network  not found")
        if ref in self._nets:
            return self._nets[ref]
        for n in self._nets.values():
            if n.name == ref:
                return n
        hits = [n for n in self._nets.values() if n.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise errdefs.InvalidArgument(
                f"network {ref} is ambiguous ({len(hits)} matches found based on ID prefix)"
            )
        raise errdefs.NotFound(f"network {ref} not found")

    def _container_eps(self, cid: str) -> list[EndpointRecord]:
        return [ep for (_n, c), ep in self._eps.items() if c == cid]

    def _primary_ep(self, cid: str) -> EndpointRecord | None:
        eps = [ep for ep in self._container_eps(cid) if ep.ip_address and self._nets[ep.network_id].bridge]
        sb = self._sbs.get(cid)
        if sb is not None:
            mode = sb.request.network_mode
            for ep in eps:
                n = self._nets[ep.network_id]
                if mode in (n.name, n.id):
                    return ep
        return eps[0] if eps else None

    def _view(self, net: Network) -> Network:
        ctrs = {}
        for ep in self._eps.values():
            if ep.network_id == net.id and ep.ip_address:
                plen = ipaddress.IPv4Network(net.ipam.config[0].subnet).prefixlen if net.ipam.config else 0
                a6 = self._alloc6.get(net.id)
                v6 = f"{ep.ipv6_address}/{a6.subnet.prefixlen}" if a6 and ep.ipv6_address else ""
                ctrs[ep.container_id] = EndpointResource(
                    ep.container_name, ep.endpoint_id, ep.mac_address, f"{ep.ip_address}/{plen}", v6
                )
        for sb in self._sbs.values():  # host / none members have an endpoint without an address
            if sb.attached and net.driver in ("host", "null") and sb.request.network_mode == net.name:
                ctrs[sb.container_id] = EndpointResource(sb.request.container_name, "", "", "")
        return replace(net, containers=ctrs)

    def _lookup(self, nets: set[str], name: str) -> list[str]:
        out: list[str] = []
        for ep in self._eps.values():
            if ep.network_id not in nets or not ep.ip_address:
                continue
            names = {ep.container_name.lower(), ep.container_id[:12], *(a.lower() for a in ep.config.aliases)}
            if name in names:
                out.append(ep.ip_address)
                if ep.ipv6_address:
                    out.append(ep.ipv6_address)
        return out

    def _link_lookup(self, scope: str, nets: set[str], name: str) -> list[str]:
        """--link on a user-defined network: an alias only the linking container resolves."""
        out: list[str] = []
        for (nid, cid), ep in self._eps.items():
            if cid != scope or nid not in nets:
                continue
            for link in ep.config.links:
                target, _, alias = link.partition(":")
                alias = alias.rsplit("/", 1)[-1] if alias else target.strip("/")
                if alias.lower() == name:
                    out += self._lookup({nid}, target.strip("/").lower())
        return out

    # ---- networks ------------------------------------------------------------------------------

    async def create_network(self, req: NetworkCreate) -> tuple[str, str]:
        name = req.name
        if not name:
            raise errdefs.InvalidArgument("network name must not be empty")
        if not name.strip():  # libnetwork's only rule (config.IsValidName): "test 01" is fine
            raise errdefs.InvalidArgument(f"invalid name: {name!r}")
        driver = req.driver or "bridge"
        if name in BUILTIN_NETWORKS:
            raise errdefs.PermissionDenied(f"{name} is a pre-defined network and cannot be created")
        if driver in ("host", "null"):
            raise errdefs.PermissionDenied(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise errdefs.NotFound(f'plugin "{driver}" not found')
        if req.ipam.driver not in ("", "default"):
            raise errdefs.NotFound(f'plugin "{req.ipam.driver}" not found')
        for p in req.ipam.config:
            if not p.subnet and (p.ip_range or p.gateway):
                raise errdefs.InvalidArgument(
                    "invalid network config: a subnet is required with an ip-range or gateway")
        # A config without a subnet asks for one from the pools, as no config does.
        req = dataclasses.replace(
            req, ipam=dataclasses.replace(req.ipam, config=[p for p in req.ipam.config if p.subnet]))
        v4 = [p for p in req.ipam.config if ipam.pool_version(p) == 4]
        v6 = [p for p in req.ipam.config if ipam.pool_version(p) == 6]
        if len(v4) > 1 or len(v6) > 1:
            raise errdefs.InvalidArgument("berth supports one IPv4 and one IPv6 subnet per network")
        async with self._lock:
            if any(n.name == name for n in self._nets.values()):
                raise errdefs.AlreadyExists(f"network with name {name} already exists")
            taken = self._subnets()
            if v4:
                pool = ipam.validate_pool(v4[0], taken)
            else:
                routed = await anyio.to_thread.run_sync(netlink.routed_subnets)
                subnet = ipam.pick_subnet(self._cfg.address_pools, [*taken, *routed])
                pool = IPAMPool(str(subnet), "", str(next(subnet.hosts())))
            pools = [pool]
            if v6:
                pools.append(ipam.validate_pool(v6[0], taken))
            elif req.enable_ipv6:  # skip /64s routed on the host (other daemons' bridges)
                routed6 = await anyio.to_thread.run_sync(netlink.routed_subnets6)
                pools.append(ipam.pick_subnet6([*taken, *routed6]))
            nid = secrets.token_hex(32)
            while nid in self._nets or nid[:12].isdigit():
                nid = secrets.token_hex(32)
            options = dict(req.options)
            bridge = options.get(BRIDGE_NAME_OPTION) or "br-" + nid[:12]
            if len(bridge) > 15:
                raise errdefs.InvalidArgument(f"bridge name {bridge} is longer than 15 characters")
            if any(n.bridge == bridge for n in self._nets.values()):
                raise errdefs.Conflict(f"bridge name {bridge} is used by another network")
            if req.options.get(BRIDGE_NAME_OPTION):
                if await anyio.to_thread.run_sync(netlink.link_exists, bridge):
                    raise errdefs.Conflict(f"interface {bridge} already exists")
            net = Network(
                id=nid, name=name, created=now_rfc3339(), driver=driver, scope="local",
                enable_ipv6=req.enable_ipv6, internal=req.internal, attachable=req.attachable,
                ingress=req.ingress, ipam=IPAMConfig("default", dict(req.ipam.options), pools,
                                                     req.ipam.options_given), options=options,
                labels=dict(req.labels), node_id=self._node, user_subnet=bool(v4),
                user_subnet6=bool(v6))  # fmt: skip
            # The bridge name lives in the options (kept out of inspect's view when defaulted).
            stored = replace(net, options={**options, BRIDGE_NAME_OPTION: bridge})
            await self._insert(stored)
            try:
                await self._ensure_bridge(stored)
                await self._apply_nft()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._drop_network(stored)
                raise
        await self._publish("create", stored)
        return nid, ""

    async def _drop_network(self, net: Network) -> None:
        self._nets.pop(net.id, None)
        self._alloc.pop(net.id, None)
        self._alloc6.pop(net.id, None)
        for key in [k for k in self._eps if k[0] == net.id]:
            del self._eps[key]
        await self._store.delete_network(net.id)
        if net.bridge:
            await anyio.to_thread.run_sync(netlink.delete_link, net.bridge)
        with contextlib.suppress(errdefs.EngineError):
            await self._apply_nft()

    def _public(self, net: Network) -> Network:
        view = self._view(net)
        if view.options.get(BRIDGE_NAME_OPTION, "").startswith("br-") and net.name != "bridge":
            view = replace(view, options={k: v for k, v in view.options.items() if k != BRIDGE_NAME_OPTION})
        return view

    async def get_network(self, ref: str, scope: str = "") -> Network:
        net = self._find(ref)
        if scope and scope != net.scope:
            raise errdefs.NotFound(f"network {ref} not found")
        return self._public(net)

    async def list_networks(self, filters: dict[str, list[str]]) -> list[Network]:
        dfilters.validate(filters, LIST_FILTERS)
        for t in filters.get("type", []):
            if t not in ("custom", "builtin"):
                raise errdefs.InvalidArgument(f"invalid filter: 'type'='{t}'")
        dangling = dfilters.get_bool(filters, "dangling")
        out = []
        for n in sorted(self._nets.values(), key=lambda n: n.created):
            view = self._public(n)
            builtin = n.name in BUILTIN_NETWORKS
            if filters.get("driver") and n.driver not in filters["driver"]:
                continue
            if filters.get("id") and not any(
                n.id.startswith(v) or _regex_any([v], n.id) for v in filters["id"]
            ):
                continue
            if filters.get("name") and not _regex_any(filters["name"], n.name):
                continue
            if filters.get("label") and not dfilters.match_labels(filters["label"], n.labels):
                continue
            if filters.get("scope") and n.scope not in filters["scope"]:
                continue
            if filters.get("type") and ("builtin" if builtin else "custom") not in filters["type"]:
                continue
            if dangling is not None:
                unused = not builtin and not self._in_use(n.id)
                if unused != dangling:
                    continue
            out.append(view)
        return out

    def _in_use(self, net_id: str) -> bool:
        return any(ep.network_id == net_id for ep in self._eps.values())

    async def remove_network(self, ref: str) -> None:
        async with self._lock:
            net = self._find(ref)
            if net.name in BUILTIN_NETWORKS:
                raise errdefs.PermissionDenied(f"{net.name} is a pre-defined network and cannot be removed")
            if any(ep.network_id == net.id and ep.ip_address for ep in self._eps.values()):
                raise errdefs.PermissionDenied(
                    f"error while removing network: network {net.name} id {net.id} has active endpoints"
                )
            await self._drop_network(net)
        await self._publish("destroy", net)

    async def prune_networks(self, filters: dict[str, list[str]]) -> list[str]:
        dfilters.validate(filters, PRUNE_FILTERS)
        until = dfilters.parse_timestamp_ns(filters["until"][0]) if filters.get("until") else None
        deleted: list[str] = []
        for n in sorted(self._nets.values(), key=lambda n: n.created):
            if n.name in BUILTIN_NETWORKS or self._in_use(n.id):
                continue
            if filters.get("label") and not dfilters.match_labels(filters["label"], n.labels):
                continue
            if filters.get("label!") and any(dfilters.match_labels([v], n.labels) for v in filters["label!"]):
                continue
            if until is not None and dfilters.parse_timestamp_ns(n.created) >= until:
                continue
            try:
                await self.remove_network(n.id)
            except errdefs.EngineError as e:
                log.warning("prune: network %s: %s", n.name, e)
                continue
            deleted.append(n.name)
        if self._events is not None:
            with contextlib.suppress(Exception):  # events are best effort
                # dockerd's network prune event: no actor, reclaimed is always 0 for networks.
                await self._events.publish(Event(type="network", action="prune", actor_id="",
                                                 attributes={"reclaimed": "0"}))
        return deleted

    # ---- endpoints: reserve / attach / detach --------------------------------------------------

    def _mode_networks(self, req: AttachRequest) -> list[NetworkAttachment]:
        """The networks a container joins: its network mode's, then the others it asked for."""
        mode = req.network_mode or "bridge"
        if mode in ("host", "none") or mode.startswith("container:"):
            return []
        out = [NetworkAttachment(mode)]
        given = {a.network: a for a in req.networks}
        if mode in given:
            out[0] = given.pop(mode)
        else:
            net = self._find(mode)
            for key in (net.name, net.id):
                if key in given:
                    out[0] = NetworkAttachment(mode, given.pop(key).config)
        out += list(given.values())
        return out

    def _check_endpoint(self, net: Network, cfg: EndpointConfig) -> None:
        if net.driver in ("host", "null"):
            raise errdefs.InvalidArgument(
                "container cannot be disconnected from host network or connected to host network"
            )
        if cfg.ipv4_address:
            if net.name == "bridge":
                raise errdefs.InvalidArgument(
                    "user specified IP address is supported on user defined networks only"
                )
            if not net.ipam.config or not net.user_subnet:
                raise errdefs.InvalidArgument(
                    "user specified IP address is supported only when connecting to networks with user "
                    "configured subnets"
                )
        if cfg.ipv6_address:
            if net.name == "bridge":
                raise errdefs.InvalidArgument(
                    "user specified IP address is supported on user defined networks only"
                )
            if net.id not in self._alloc6 or not net.user_subnet6:
                raise errdefs.InvalidArgument(
                    "user specified IP address is supported only when connecting to networks with user "
                    "configured subnets"
                )
        if cfg.aliases and net.name == "bridge":
            raise errdefs.InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks"
            )

    async def reserve_endpoints(self, req: AttachRequest) -> None:
        mode = req.network_mode or "bridge"
        if mode.startswith("container:"):
            pass
        elif mode not in ("host", "none"):
            self._find(mode)
        attachments = self._mode_networks(req)
        async with self._lock:
            for a in attachments:
                self._check_endpoint(self._find(a.network), a.config)
            sb = SandboxRecord(req.container_id, req)
            eps = [EndpointRecord(self._find(a.network).id, req.container_id, req.container_name,
                                  secrets.token_hex(32), a.config) for a in attachments]  # fmt: skip
            await self._store.put_sandbox(sb, eps)
            self._sbs[req.container_id] = sb
            for ep in eps:
                self._eps[(ep.network_id, req.container_id)] = ep

    async def attach_endpoints(self, req: AttachRequest) -> AttachResult:
        cid = req.container_id
        async with self._lock:
            sb = self._sbs.get(cid)
            if sb is not None and sb.attached:
                return self._result(sb)
            if sb is None:  # created before the networks service recorded it: take the request's
                sb = SandboxRecord(cid, req)
                for a in self._mode_networks(req):
                    net = self._find(a.network)
                    self._eps.setdefault(
                        (net.id, cid),
                        EndpointRecord(net.id, cid, req.container_name, secrets.token_hex(32), a.config),
                    )
            else:
                sb.request = replace(req, networks=sb.request.networks)
            self._sbs[cid] = sb
            mode = req.network_mode or "bridge"
            try:
                if mode == "host":
                    sb.netns_path = ""
                elif mode.startswith("container:"):
                    other = self._sbs.get(mode.split(":", 1)[1])
                    sb.netns_path = req.join_netns_path or (
                        other.netns_path if other and other.attached else ""
                    )
                else:
                    sb.netns_path = self._netns_path(cid)
                    await anyio.to_thread.run_sync(netlink.create_netns, sb.netns_path)
                    eps = sorted(self._container_eps(cid), key=lambda e: self._order(sb, e))
                    for i, ep in enumerate(eps):
                        ep.container_name = req.container_name
                        await self._plug(sb, ep, i, first=i == 0)
                    if mode != "none":
                        sb.ports = self._publish_ports(sb)
                sb.attached = True
                await self._store.put_sandbox(sb, self._container_eps(cid))
                if sb.ports:
                    await self._apply_nft()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._teardown(sb)
                raise
            await self._dns_add(sb)
            return self._result(sb)

    def _order(self, sb: SandboxRecord, ep: EndpointRecord) -> tuple[int, str]:
        n = self._nets[ep.network_id]
        return (0 if sb.request.network_mode in (n.name, n.id) else 1, n.name)

    async def _plug(self, sb: SandboxRecord, ep: EndpointRecord, index: int, first: bool) -> None:
        net = self._nets[ep.network_id]
        self._check_endpoint(net, ep.config)
        if not net.bridge or not net.ipam.config:
            return
        alloc = self._alloc_of(net.id)
        alloc6 = self._alloc6.get(net.id)
        ip = alloc.allocate(ep.config.ipv4_address)
        ip6 = ""
        try:
            if alloc6 is not None:
                ip6 = alloc6.allocate(ep.config.ipv6_address)
            mac = ep.config.mac_address or _mac_for(ip)
            veth = "veth" + secrets.token_hex(4)[:7]
            gateway = "" if (net.internal or not first) else str(alloc.gateway)
            gateway6 = "" if (net.internal or not first or alloc6 is None) else str(alloc6.gateway)
            spec = netlink.VethSpec(
                host_ifname=veth, bridge=net.bridge, ifname=f"eth{index}", address=ip, mac=mac,
                prefixlen=alloc.subnet.prefixlen, gateway=gateway, alias=self._cfg.alias,
                address6=ip6, prefixlen6=alloc6.subnet.prefixlen if alloc6 else 0, gateway6=gateway6,
                link_local=tuple(ep.config.link_local_ips))  # fmt: skip
            try:
                await anyio.to_thread.run_sync(netlink.attach_veth, sb.netns_path, spec)
            except netlink.NetnsError as e:
                if e.errno != errno.ENODEV:
                    raise
                await self._ensure_bridge(net)  # someone deleted the bridge: make it again
                await anyio.to_thread.run_sync(netlink.attach_veth, sb.netns_path, spec)
        except BaseException:
            alloc.release(ip)
            if ip6 and alloc6 is not None:
                alloc6.release(ip6)
            raise
        ep.ip_address, ep.mac_address, ep.veth, ep.ipv6_address = ip, mac, veth, ip6

    def _publish_ports(self, sb: SandboxRecord) -> list[PortMapping]:
        req = sb.request
        if self._primary_ep(sb.container_id) is None:
            return []
        binds = dict(req.port_bindings)
        if req.publish_all_ports:
            for key in req.exposed_ports:
                binds.setdefault(key, [])
                if not binds[key]:
                    binds[key] = [PortBinding()]
        held: list[ports.Reservation] = []
        out: list[PortMapping] = []
        try:
            for key, bl in binds.items():
                private, proto = ports.parse_port_key(key)
                for b in bl:
                    lo, hi = ports.parse_host_range(b.host_port)
                    try:
                        r = ports.reserve(proto, b.host_ip if b.host_ip not in ("0.0.0.0",) else "", lo, hi)
                    except errdefs.Internal as e:
                        ep = self._primary_ep(sb.container_id)
                        raise errdefs.Internal(
                            f"driver failed programming external connectivity on endpoint "
                            f"{req.container_name} ({ep.endpoint_id if ep else ''}): {e.message}"
                        ) from None
                    held.append(r)
                    out.append(PortMapping(private, r.port, proto, b.host_ip or "0.0.0.0"))
        except BaseException:
            for r in held:
                r.close()
            raise
        self._held[sb.container_id] = held
        return out

    def _result(self, sb: SandboxRecord) -> AttachResult:
        cid = sb.container_id
        eps: dict[str, EndpointSettings] = {}
        user_net = False
        for ep in sorted(self._container_eps(cid), key=lambda e: self._order(sb, e)):
            net = self._nets[ep.network_id]
            alloc = self._alloc.get(net.id)
            alloc6 = self._alloc6.get(net.id)
            attached = bool(ep.ip_address)
            v6 = attached and alloc6 is not None and bool(ep.ipv6_address)
            names = (
                [ep.container_name, *ep.config.aliases, cid[:12]] if net.name not in BUILTIN_NETWORKS else []
            )
            user_net = user_net or (net.name not in BUILTIN_NETWORKS and attached)
            eps[net.name] = EndpointSettings(
                network_id=net.id, endpoint_id=ep.endpoint_id if attached else "", config=ep.config,
                gateway=str(alloc.gateway) if alloc and attached and not net.internal else "",
                ip_address=ep.ip_address, ip_prefix_len=alloc.subnet.prefixlen if alloc and attached else 0,
                mac_address=ep.mac_address, dns_names=names,
                ipv6_gateway=str(alloc6.gateway) if alloc6 and v6 and not net.internal else "",
                global_ipv6_address=ep.ipv6_address if v6 else "",
                global_ipv6_prefix_len=alloc6.subnet.prefixlen if alloc6 and v6 else 0)  # fmt: skip
        mode = sb.request.network_mode or "bridge"
        if mode in ("host", "none"):
            net = self._find(mode)
            eps[mode] = EndpointSettings(network_id=net.id, endpoint_id="")
        ns, search, opts = self._upstreams
        if user_net and self.dns is not None:
            ns = [DNS_ADDRESS]
        hosts = self._link_hosts(sb)
        return AttachResult(
            netns_path=sb.netns_path, endpoints=eps, ports=list(sb.ports), dns_servers=list(ns),
            dns_search=list(search), dns_options=list(opts), hosts_entries=hosts,
            exposed=list(sb.request.exposed_ports))  # fmt: skip

    def _link_hosts(self, sb: SandboxRecord) -> list[str]:
        """/etc/hosts lines for --link, on the default bridge only (as dockerd).

        On user-defined networks a link is a DNS alias (`_link_lookup`); an /etc/hosts line there
        could name the target's address on a network this container is not on.
        """
        out: list[str] = []
        for a in sb.request.networks:
            with contextlib.suppress(errdefs.NotFound):
                net = self._find(a.network)
                if net.name == "bridge":
                    out += [line for link in a.config.links for line in self._link_line(link, net.id)]
        return out

    def _link_line(self, link: str, network_id: str) -> list[str]:
        name, _, alias = link.partition(":")
        name = name.strip("/")
        alias = alias.rsplit("/", 1)[-1] if alias else name
        for ep in self._eps.values():
            if (ep.network_id == network_id and ep.ip_address
                    and (ep.container_name == name or ep.container_id.startswith(name))):
                return [f"{ep.ip_address}\t{alias} {ep.container_id[:12]} {ep.container_name}"]
        return []

    async def _dns_add(self, sb: SandboxRecord) -> None:
        if self.dns is None or not sb.netns_path or sb.request.network_mode.startswith("container:"):
            return
        if not any(
            not self._is_default(e.network_id) and e.ip_address for e in self._container_eps(sb.container_id)
        ):
            return
        cid = sb.container_id
        forward = any(not self._nets[e.network_id].internal for e in self._container_eps(cid) if e.ip_address)
        try:
            await self.dns.add_sandbox(cid, sb.netns_path, cid, forward=forward)
        except Exception:
            log.exception("embedded DNS for %s", cid)

    # ---- DNS records (networks_svc.dns.DnsRecords), scope = container id -----------------------

    def _dns_nets(self, scope: str) -> set[str]:
        return {
            ep.network_id for ep in self._eps.values()
            if ep.container_id == scope and ep.ip_address and not self._is_default(ep.network_id)
        }  # fmt: skip

    def lookup(self, scope: str, name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
        """Addresses of running containers answering to ``name`` on ``scope``'s user networks."""
        nets = self._dns_nets(scope)
        hits = self._lookup(nets, name.lower()) or self._link_lookup(scope, nets, name.lower())
        out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ipaddress.ip_address(h) for h in hits]
        return out or None

    def reverse(self, scope: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        nets = self._dns_nets(scope)
        for ep in self._eps.values():
            if ep.network_id in nets and str(addr) in (ep.ip_address, ep.ipv6_address):
                return ep.container_name
        return None

    async def start_dns(self) -> None:
        """Serve DNS in the sandboxes that were attached before the DNS server ran (restart)."""
        for sb in list(self._sbs.values()):
            if sb.attached:
                await self._dns_add(sb)

    async def _teardown(self, sb: SandboxRecord) -> None:
        """Undo an attachment (also a half-made one); records stay, addresses are released."""
        cid = sb.container_id
        if self.dns is not None:
            with contextlib.suppress(Exception):
                await self.dns.remove_sandbox(cid)
        for r in self._held.pop(cid, []):
            r.close()
        had_ports = bool(sb.ports)
        mode = sb.request.network_mode or "bridge"
        own_netns = mode != "host" and not mode.startswith("container:")
        for ep in self._container_eps(cid):
            # Unpinning our netns (below) frees it and its veth pairs with it, without the
            # tens of ms an explicit veth delete waits for the kernel; reconcile sweeps the rest.
            if ep.veth and not own_netns:
                await anyio.to_thread.run_sync(netlink.delete_link, ep.veth)
            if ep.ip_address and ep.network_id in self._alloc:
                self._alloc[ep.network_id].release(ep.ip_address)
            if ep.ipv6_address and ep.network_id in self._alloc6:
                self._alloc6[ep.network_id].release(ep.ipv6_address)
            ep.ip_address, ep.veth, ep.ipv6_address = "", "", ""
            if not ep.config.mac_address:
                ep.mac_address = ""
        if own_netns:
            await anyio.to_thread.run_sync(netlink.remove_netns, self._netns_path(cid))
        sb.netns_path, sb.ports, sb.attached = "", [], False
        if had_ports:
            with contextlib.suppress(errdefs.EngineError):
                await self._apply_nft()

    async def detach_endpoints(self, container_id: str, remove: bool = False) -> None:
        async with self._lock:
            sb = self._sbs.get(container_id)
            if sb is not None:
                with anyio.CancelScope(shield=True):
                    await self._teardown(sb)
                    if not remove:
                        await self._store.put_sandbox(sb, self._container_eps(container_id))
            if remove:
                for key in [k for k in self._eps if k[1] == container_id]:
                    del self._eps[key]
                self._sbs.pop(container_id, None)
                await self._store.delete_container(container_id)

    async def sandbox(self, container_id: str) -> AttachResult | None:
        sb = self._sbs.get(container_id)
        return self._result(sb) if sb is not None and sb.attached else None

    # ---- connect / disconnect ------------------------------------------------------------------

    async def connect_network(
        self, network: str, container_id: str, container_name: str, config: EndpointConfig
    ) -> None:
        async with self._lock:
            net = self._find(network)
            sb = self._sbs.get(container_id)
            name = container_name or (sb.request.container_name if sb else container_id[:12])
            self._check_endpoint(net, config)
            if (net.id, container_id) in self._eps:
                raise errdefs.PermissionDenied(
                    f"endpoint with name {name} already exists in network {net.name}"
                )
            if sb is not None:
                mode = sb.request.network_mode or "bridge"
                if mode in ("host", "none") or mode.startswith("container:"):
                    raise errdefs.PermissionDenied(
                        "container sharing network namespace with another container or host cannot be "
                        "connected to any other network"
                        if mode != "none"
                        else "container cannot be connected to multiple networks with one of the networks in "
                        "private (none) mode"
                    )
            ep = EndpointRecord(net.id, container_id, name, secrets.token_hex(32), config)
            self._eps[(net.id, container_id)] = ep
            try:
                if sb is not None and sb.attached and sb.netns_path:
                    index = len([e for e in self._container_eps(container_id) if e.veth])
                    await self._plug(sb, ep, index, first=False)
                await self._store.put_endpoint(ep)
            except BaseException:
                self._eps.pop((net.id, container_id), None)
                raise
            if sb is not None:
                sb.request.networks.append(NetworkAttachment(net.name, config))
                await self._store.put_sandbox(sb)
                await self._dns_add(sb)
            # Not attached: the endpoints it will join (the containers service shows them).
            result = self._result(sb) if sb is not None else None
        await self._publish("connect", net, container=container_id)
        await self._notify(container_id, result)

    async def disconnect_network(self, network: str, container_id: str, force: bool = False) -> None:
        async with self._lock:
            net = self._find(network)
            ep = self._eps.get((net.id, container_id))
            if ep is None:  # dockerd refuses this with or without force
                raise errdefs.Conflict(f"container {container_id} is not connected to network {net.name}")
            if net.driver in ("host",):
                raise errdefs.InvalidArgument(
                    "container cannot be disconnected from host network or connected to host network"
                )
            if ep.veth:
                await anyio.to_thread.run_sync(netlink.delete_link, ep.veth)
            if ep.ip_address and net.id in self._alloc:
                self._alloc[net.id].release(ep.ip_address)
            if ep.ipv6_address and net.id in self._alloc6:
                self._alloc6[net.id].release(ep.ipv6_address)
            del self._eps[(net.id, container_id)]
            await self._store.delete_endpoint(net.id, container_id)
            sb = self._sbs.get(container_id)
            if sb is not None:
                sb.request.networks = [a for a in sb.request.networks if a.network not in (net.name, net.id)]
                await self._store.put_sandbox(sb)
            result = self._result(sb) if sb is not None else None
        await self._publish("disconnect", net, container=container_id)
        await self._notify(container_id, result)

    async def _notify(self, cid: str, result: AttachResult | None) -> None:
        for fn in self._listeners:
            try:
                await fn(cid, result)
            except Exception:
                log.exception("network change listener for %s", cid)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read(1 << 16)
    except OSError:
        return ""


def pools_from_config(raw: Sequence[dict[str, Any]]) -> list[ipam.AddressPool]:
    """default-address-pools of daemon.json as AddressPools (Docker's defaults when empty)."""
    return ipam.parse_pools(raw) if raw else list(ipam.DEFAULT_POOLS)
