"""berthd's wiring: builds the services one process hosts (embedded or split) and runs them."""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import grpc

from berthd.config import DaemonConfig
from containers_svc import server as containers_server
from containers_svc.api import ContainersAPI
from containers_svc.clients import ContainersClient
from containers_svc.service import ContainersService
from containers_svc.store import SqlContainerStore
from dockerapi.timefmt import now_rfc3339
from events_svc import server as events_server
from events_svc.bus import EventBus, EventsAPI
from events_svc.clients import EventsClient
from gateway_svc.app import Backends, build_app
from gateway_svc.http import HttpServer
from gateway_svc.listeners import TlsConfig, open_listeners, serve
from grpckit.client import open_channel
from grpckit.server import build_server, serve_grpc
from images_svc import server as images_server
from images_svc.api import ImagesAPI
from images_svc.clients import ImagesClient
from images_svc.service import ImagesService
from images_svc.store import SqlImageStore
from networks_svc import server as networks_server
from networks_svc.api import NetworksAPI
from networks_svc.clients import NetworksClient
from networks_svc.dns import EmbeddedDns
from networks_svc.service import NetworkConfig, NetworksService, pools_from_config
from networks_svc.store import SqlNetworkStore
from ocirun import OciRuntime
from registry_svc import server as registry_server
from registry_svc.api import RegistryAPI
from registry_svc.clients import RegistryClient
from registry_svc.pull import ImagesForRegistry
from registry_svc.service import RegistryService
from registry_svc.transport import TransportConfig
from statestore import StateStore, load_node_id, open_store
from statestore.nodes import register_node
from system_svc import server as system_server
from system_svc.clients import SystemClient
from system_svc.service import BERTH_VERSION, EngineFacts, SystemAPI, SystemService
from volumes_svc import server as volumes_server
from volumes_svc.api import VolumesAPI
from volumes_svc.clients import VolumesClient
from volumes_svc.service import VolumesService
from volumes_svc.store import SqlVolumeStore

__all__ = ["run_daemon"]

log = logging.getLogger("berthd")


@dataclass(slots=True)
class Hosted:
    """The services this process serves over gRPC, and the APIs the gateway calls."""

    servicers: list[tuple[Any, Any]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    system: SystemAPI | None = None
    images: ImagesAPI | None = None
    volumes: VolumesAPI | None = None
    networks: NetworksAPI | None = None
    dns: EmbeddedDns | None = None
    events: EventsAPI | None = None
    containers: ContainersAPI | None = None
    registry: RegistryAPI | None = None
    containers_service: ContainersService | None = None
    state: StateStore | None = None
    runtime: OciRuntime | None = None


def _prepare_dirs(cfg: DaemonConfig) -> None:
    # 0710 like dockerd (CVE-2021-41091): other users cannot traverse the data root.
    cfg.data_root.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.data_root, 0o710)
    cfg.exec_root.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.exec_root, 0o711)


@asynccontextmanager
async def _state(cfg: DaemonConfig, node_id: str) -> AsyncIterator[StateStore]:
    url = cfg.effective_state_url()
    log.info("state store: %s", url.split("@")[-1] if "@" in url else url)
    state = await open_store(url)
    try:
        await register_node(state, node_id, socket.gethostname(), now_rfc3339())
        yield state
    finally:
        await state.aclose()


async def _shared_state(
    cfg: DaemonConfig, stack: AsyncExitStack, node_id: str, hosted: Hosted
) -> StateStore:
    """One state store per process, shared by the services it hosts."""
    if hosted.state is None:
        hosted.state = await stack.enter_async_context(_state(cfg, node_id))
    return hosted.state


async def _host_images(cfg: DaemonConfig, stack: AsyncExitStack, node_id: str, hosted: Hosted) -> None:
    state = await _shared_state(cfg, stack, node_id, hosted)
    images = ImagesService(cfg.data_root, SqlImageStore(state, node_id), node_id, hosted.events)
    await images.reconcile()
    hosted.images = images
    hosted.servicers.append((images_server.add_to_server, images_server.ImagesServicer(images)))
    hosted.names.append("berthapi.images.v1.Images")


async def _host_registry(cfg: DaemonConfig, images: ImagesForRegistry, hosted: Hosted) -> None:
    transport = TransportConfig(certs_dir=cfg.certs_dir,
                                insecure_registries=list(cfg.insecure_registries),
                                registry_mirrors=list(cfg.registry_mirrors),
                                hub=os.environ.get("BERTH_REGISTRY_HUB", "1") != "0")
    registry = RegistryService(cfg.data_root, images, transport, cfg.max_concurrent_downloads)
    await registry.reconcile()
    hosted.registry = registry
    hosted.servicers.append((registry_server.add_to_server, registry_server.RegistryServicer(registry)))
    hosted.names.append("berthapi.registry.v1.Registry")


async def _host_volumes(cfg: DaemonConfig, stack: AsyncExitStack, node_id: str, hosted: Hosted) -> None:
    state = await _shared_state(cfg, stack, node_id, hosted)
    volumes = VolumesService(cfg.data_root, SqlVolumeStore(state, node_id), node_id, hosted.events)
    await volumes.reconcile()
    hosted.volumes = volumes
    hosted.servicers.append((volumes_server.add_to_server, volumes_server.VolumesServicer(volumes)))
    hosted.names.append("berthapi.volumes.v1.Volumes")


async def _host_networks(cfg: DaemonConfig, stack: AsyncExitStack, node_id: str, hosted: Hosted) -> None:
    state = await _shared_state(cfg, stack, node_id, hosted)
    net_cfg = NetworkConfig(exec_root=cfg.exec_root, default_bridge=cfg.effective_bridge(), bip=cfg.bip,
                            address_pools=pools_from_config(cfg.default_address_pools))
    networks = NetworksService(net_cfg, SqlNetworkStore(state, node_id), node_id, hosted.events)
    await networks.reconcile()
    stack.push_async_callback(networks.shutdown)
    # Docker's embedded DNS (127.0.0.11 in sandboxes on user-defined networks), fed by the records.
    networks.dns = hosted.dns = EmbeddedDns(networks)
    hosted.networks = networks
    hosted.servicers.append((networks_server.add_to_server, networks_server.NetworksServicer(networks)))
    hosted.names.append("berthapi.networks.v1.Networks")


async def _host_containers(
    cfg: DaemonConfig, stack: AsyncExitStack, node_id: str, hosted: Hosted
) -> None:
    state = await _shared_state(cfg, stack, node_id, hosted)
    runtime = await OciRuntime.detect(cfg.exec_root)
    log.info("OCI runtime: %s", runtime.strategy)
    hosted.runtime = runtime
    assert hosted.images is not None and hosted.events is not None
    svc = ContainersService(cfg.data_root, cfg.exec_root, SqlContainerStore(state, node_id),
                            hosted.images, hosted.events, runtime, node_id, volumes=hosted.volumes,
                            networks=hosted.networks, log_defaults=(cfg.log_driver, dict(cfg.log_opts)))
    if isinstance(hosted.networks, NetworksService):  # embedded: connect/disconnect refresh inspect
        hosted.networks.add_listener(svc.network_changed)
    hosted.containers = svc
    hosted.containers_service = svc
    hosted.servicers.append((containers_server.add_to_server, containers_server.ContainersServicer(svc)))
    hosted.names.append("berthapi.containers.v1.Containers")


async def _count_containers(containers: ContainersAPI | None) -> dict[str, int]:
    if containers is None:
        return {}
    recs = await containers.list_containers(all=True, limit=-1, size=False, filters={})
    counts = {"running": 0, "paused": 0, "stopped": 0}
    for r in recs:
        if r.state.paused:
            counts["paused"] += 1
        elif r.state.running:
            counts["running"] += 1
        else:
            counts["stopped"] += 1
    return counts


async def _count_images(images: ImagesAPI | None) -> int:
    if images is None:
        return 0
    return len(await images.list_images({}, all=True))


def _facts(cfg: DaemonConfig, node_id: str, mode: str) -> EngineFacts:
    return EngineFacts(
        node_id=node_id,
        data_root=cfg.data_root,
        exec_root=cfg.exec_root,
        mode=mode,
        logging_driver=cfg.log_driver,
        registry_mirrors=list(cfg.registry_mirrors),
        insecure_registries=list(cfg.insecure_registries),
    )


def _add_system(cfg: DaemonConfig, node_id: str, mode: str, hosted: Hosted) -> None:
    images, containers = hosted.images, hosted.containers
    facts = _facts(cfg, node_id, mode)
    if hosted.runtime is not None:
        facts.default_runtime = hosted.runtime.name
    system = SystemService(facts, lambda: _count_images(images),
                           lambda: _count_containers(containers))
    hosted.system = system
    hosted.servicers.append((system_server.add_to_server, system_server.SystemServicer(system)))
    hosted.names.append("berthapi.system.v1.System")


async def _remote(cfg: DaemonConfig, stack: AsyncExitStack, name: str) -> grpc.aio.Channel:
    channel = open_channel(f"unix://{cfg.service_socket(name)}")
    stack.push_async_callback(channel.close)
    return channel


async def run_daemon(cfg: DaemonConfig) -> None:
    """Run until SIGTERM/SIGINT; containers (conmon's children) are never touched on the way out."""
    await anyio.to_thread.run_sync(_prepare_dirs, cfg)
    node_id = await anyio.to_thread.run_sync(load_node_id, cfg.data_root)
    mode = "split" if cfg.service else "embedded"
    log.info("berthd %s starting: node %s, %s mode%s, data root %s, exec root %s",
             BERTH_VERSION, node_id, mode, f" ({cfg.service})" if cfg.service else "",
             cfg.data_root, cfg.exec_root)
    async with AsyncExitStack() as stack:
        hosted = Hosted()
        if cfg.service in ("", "events"):
            bus = EventBus(node_id)
            hosted.events = bus
            hosted.servicers.append((events_server.add_to_server, events_server.EventsServicer(bus)))
            hosted.names.append("berthapi.events.v1.Events")
        else:
            hosted.events = EventsClient(await _remote(cfg, stack, "events"))
        if cfg.service in ("", "images"):
            await _host_images(cfg, stack, node_id, hosted)
        elif cfg.service == "gateway":
            # Every split service also serves System; the gateway asks the images process.
            channel = await _remote(cfg, stack, "images")
            hosted.images = ImagesClient(channel)
            hosted.system = SystemClient(channel)
        if cfg.service in ("", "volumes"):
            await _host_volumes(cfg, stack, node_id, hosted)
        elif cfg.service in ("gateway", "containers"):
            hosted.volumes = VolumesClient(await _remote(cfg, stack, "volumes"))
        if cfg.service in ("", "networks"):
            await _host_networks(cfg, stack, node_id, hosted)
        elif cfg.service in ("gateway", "containers"):
            hosted.networks = NetworksClient(await _remote(cfg, stack, "networks"))
        if cfg.service in ("", "containers"):
            if hosted.images is None:
                hosted.images = ImagesClient(await _remote(cfg, stack, "images"))
            await _host_containers(cfg, stack, node_id, hosted)
        elif cfg.service == "gateway":
            hosted.containers = ContainersClient(await _remote(cfg, stack, "containers"))
        if isinstance(hosted.images, ImagesService):
            # Builds run RUN steps in containers: embedded, the service itself; split, over gRPC.
            if hosted.containers is not None:
                hosted.images.set_containers(hosted.containers)
            elif cfg.service == "images":
                hosted.images.set_containers(
                    ContainersClient(await _remote(cfg, stack, "containers")))
            if cfg.service == "images":
                hosted.images.set_registry(RegistryClient(await _remote(cfg, stack, "registry")))
        if cfg.service in ("", "registry"):
            # Blobs go straight into the shared data root; images register through the API.
            if hosted.images is None:
                hosted.images = ImagesClient(await _remote(cfg, stack, "images"))
            assert isinstance(hosted.images, (ImagesService, ImagesClient))
            await _host_registry(cfg, hosted.images, hosted)
            if isinstance(hosted.images, ImagesService) and hosted.registry is not None:
                hosted.images.set_registry(hosted.registry)  # FROM pulls of builds
        elif cfg.service == "gateway":
            hosted.registry = RegistryClient(await _remote(cfg, stack, "registry"))
        if cfg.service != "gateway":
            _add_system(cfg, node_id, mode, hosted)
        async with anyio.create_task_group() as tg:
            if hosted.dns is not None and isinstance(hosted.networks, NetworksService):
                await tg.start(hosted.dns.run)
                await hosted.networks.start_dns()  # sandboxes that outlived the last daemon
            if hosted.containers_service is not None:
                # Reconciles records with conmon's files, then watches exits; never stops containers.
                await tg.start(hosted.containers_service.run)
            if cfg.service != "gateway":
                server = build_server(hosted.servicers, f"unix://{cfg.grpc_socket}", hosted.names)
                await tg.start(serve_grpc, server)
                log.info("gRPC API listening on unix://%s", cfg.grpc_socket)
            if cfg.service in ("", "gateway"):
                assert hosted.system is not None and hosted.images is not None
                assert hosted.events is not None
                backends = Backends(system=hosted.system, images=hosted.images, events=hosted.events,
                                    volumes=hosted.volumes, containers=hosted.containers,
                                    networks=hosted.networks,
                                    registry=hosted.registry)
                app = build_app(backends,
                                data_root=cfg.data_root, version=BERTH_VERSION)
                tls = _tls(cfg)
                listeners = await open_listeners(cfg.effective_hosts(), tls,
                                                 allow_insecure_tcp=cfg.tls is False)
                await tg.start(serve, listeners, HttpServer(app))
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                log.info("berthd ready")
                async for signum in signals:
                    log.info("received %s, shutting down", signal.Signals(signum).name)
                    break
            tg.cancel_scope.cancel()
    log.info("berthd stopped")


def _tls(cfg: DaemonConfig) -> TlsConfig | None:
    if not cfg.tls:
        return None
    return TlsConfig(cert=cfg.tlscert, key=cfg.tlskey, ca=cfg.tlscacert or None, verify=cfg.tlsverify)

