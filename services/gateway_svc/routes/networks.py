"""Routes for /networks: list, inspect, create, rm, connect, disconnect, prune (moby's network router)."""

from __future__ import annotations

from typing import Any

import errdefs
from dockerapi import filters as dfilters
from dockerapi.versions import at_least
from gateway_svc.backend import Backends
from gateway_svc.http import EmptyResponse, JSONResponse, Request, Response
from gateway_svc.router import Router
from networks_svc.api import NetworksAPI
from networks_svc.model import EndpointConfig, IPAMConfig, IPAMPool, Network, NetworkCreate

__all__ = ["NetworkRoutes", "network_json"]


def _pool_json(p: IPAMPool) -> dict[str, Any]:
    out: dict[str, Any] = {"Subnet": p.subnet}
    if p.ip_range:
        out["IPRange"] = p.ip_range
    if p.gateway:
        out["Gateway"] = p.gateway
    if p.aux_addresses:
        out["AuxiliaryAddresses"] = dict(p.aux_addresses)
    return out


def network_json(n: Network, api_version: str, *, containers: bool = True) -> dict[str, Any]:
    """A network in the swagger ``Network`` shape (``NetworkInspect`` with containers)."""
    out: dict[str, Any] = {
        "Name": n.name, "Id": n.id, "Created": n.created, "Scope": n.scope, "Driver": n.driver,
        "EnableIPv4": True, "EnableIPv6": n.enable_ipv6,
        "IPAM": {"Driver": n.ipam.driver or "default",
                 "Options": dict(n.ipam.options) if n.ipam.options or n.ipam.options_given else None,
                 "Config": [_pool_json(p) for p in n.ipam.config]},
        "Internal": n.internal, "Attachable": n.attachable, "Ingress": n.ingress,
        "ConfigFrom": {"Network": n.config_from}, "ConfigOnly": n.config_only,
        "Containers": {cid: {"Name": e.name, "EndpointID": e.endpoint_id, "MacAddress": e.mac_address,
                             "IPv4Address": e.ipv4_address, "IPv6Address": e.ipv6_address}
                       for cid, e in n.containers.items()} if containers else {},
        "Options": dict(n.options), "Labels": dict(n.labels),
    }  # fmt: skip
    if not at_least(api_version, "1.47"):
        out.pop("EnableIPv4")
    return out


def _obj(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errdefs.InvalidArgument(f"json: cannot unmarshal {key}: not an object")
    return value


def _str_map(body: dict[str, Any], key: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in _obj(body, key).items()}


def _create_request(body: dict[str, Any], api_version: str) -> NetworkCreate:
    name = body.get("Name") or ""
    if not isinstance(name, str):
        raise errdefs.InvalidArgument("json: cannot unmarshal Name: not a string")
    ipam_raw = _obj(body, "IPAM")
    pools = []
    for c in ipam_raw.get("Config") or []:
        if not isinstance(c, dict):
            raise errdefs.InvalidArgument("json: cannot unmarshal IPAM.Config: not an object")
        pools.append(
            IPAMPool(
                str(c.get("Subnet") or ""),
                str(c.get("IPRange") or ""),
                str(c.get("Gateway") or ""),
                {str(k): str(v) for k, v in (c.get("AuxiliaryAddresses") or {}).items()},
            )
        )
    ipam = IPAMConfig(
        str(ipam_raw.get("Driver") or "default"),
        _str_map(ipam_raw, "Options"),
        pools,
        options_given=isinstance(ipam_raw.get("Options"), dict),
    )
    return NetworkCreate(
        name=name, driver=str(body.get("Driver") or "bridge"), internal=bool(body.get("Internal")),
        attachable=bool(body.get("Attachable")), ingress=bool(body.get("Ingress")),
        enable_ipv6=bool(body.get("EnableIPv6")), ipam=ipam, options=_str_map(body, "Options"),
        labels=_str_map(body, "Labels"),
        # 1.44+: names are always unique; before, CheckDuplicate asked for it.
        check_duplicate=at_least(api_version, "1.44") or bool(body.get("CheckDuplicate")),
        scope=str(body.get("Scope") or ""), config_only=bool(body.get("ConfigOnly")),
        config_from=str((body.get("ConfigFrom") or {}).get("Network") or ""))  # fmt: skip


def endpoint_config(raw: dict[str, Any]) -> EndpointConfig:
    """EndpointSettings of a connect (or create) request, as asked for."""
    ipam = raw.get("IPAMConfig") or {}
    return EndpointConfig(
        ipv4_address=str(ipam.get("IPv4Address") or ""), ipv6_address=str(ipam.get("IPv6Address") or ""),
        aliases=[str(a) for a in raw.get("Aliases") or []], links=[str(x) for x in raw.get("Links") or []],
        mac_address=str(raw.get("MacAddress") or ""),
        driver_opts={str(k): str(v) for k, v in (raw.get("DriverOpts") or {}).items()},
        link_local_ips=[str(x) for x in ipam.get("LinkLocalIPs") or []])  # fmt: skip


class NetworkRoutes:
    """Handlers translate HTTP to NetworksAPI calls and raise errdefs on failure."""

    def __init__(self, backends: Backends) -> None:
        assert backends.networks is not None
        self._networks: NetworksAPI = backends.networks
        self._backends = backends

    def register(self, r: Router) -> None:
        r.add("GET", "/networks", self.get_networks)
        r.add("POST", "/networks/create", self.post_networks_create)
        r.add("POST", "/networks/prune", self.post_networks_prune)
        r.add("POST", "/networks/{id:.*}/connect", self.post_network_connect)
        r.add("POST", "/networks/{id:.*}/disconnect", self.post_network_disconnect)
        r.add("GET", "/networks/{id:.*}", self.get_network)
        r.add("DELETE", "/networks/{id:.*}", self.delete_network)

    async def get_networks(self, req: Request) -> Response:
        nets = await self._networks.list_networks(dfilters.parse(req.query.get("filters")))
        return JSONResponse([network_json(n, req.api_version, containers=False) for n in nets])

    async def get_network(self, req: Request) -> Response:
        net = await self._networks.get_network(req.params["id"], req.query.get("scope") or "")
        return JSONResponse(network_json(net, req.api_version))

    async def post_networks_create(self, req: Request) -> Response:
        body = await req.json_object()
        nid, warning = await self._networks.create_network(_create_request(body, req.api_version))
        return JSONResponse({"Id": nid, "Warning": warning}, status=201)

    async def delete_network(self, req: Request) -> Response:
        await self._networks.remove_network(req.params["id"])
        return EmptyResponse(204)

    async def _container(self, ref: Any) -> tuple[str, str]:
        if not isinstance(ref, str) or not ref:
            raise errdefs.InvalidArgument("no container specified")
        if self._backends.containers is None:
            raise errdefs.Unavailable("the containers service is not available")
        rec = await self._backends.containers.get_container(ref)
        return rec.id, rec.name.removeprefix("/")

    async def post_network_connect(self, req: Request) -> Response:
        body = await req.json_object()
        cid, name = await self._container(body.get("Container"))
        raw = body.get("EndpointConfig") or {}
        if not isinstance(raw, dict):
            raise errdefs.InvalidArgument("json: cannot unmarshal EndpointConfig: not an object")
        await self._networks.connect_network(req.params["id"], cid, name, endpoint_config(raw))
        return EmptyResponse(200)

    async def post_network_disconnect(self, req: Request) -> Response:
        body = await req.json_object()
        cid, _name = await self._container(body.get("Container"))
        await self._networks.disconnect_network(req.params["id"], cid, bool(body.get("Force")))
        return EmptyResponse(200)

    async def post_networks_prune(self, req: Request) -> Response:
        deleted = await self._networks.prune_networks(dfilters.parse(req.query.get("filters")))
        return JSONResponse({"NetworksDeleted": deleted})
