"""SystemService: what `docker version`, `docker info` and `berthctl status` report."""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import anyio

from dockerapi.platforms import goarch
from dockerapi.versions import MAX_API, MIN_API

__all__ = ["BERTH_VERSION", "EngineFacts", "InfoReport", "SystemAPI", "SystemService", "VersionReport"]

BERTH_VERSION = "0.1.0"



@dataclass(frozen=True, slots=True)
class VersionReport:
    """Versions of the engine and its API."""

    version: str
    api_version: str
    min_api_version: str
    git_commit: str
    kernel_version: str
    os: str
    arch: str
    runtime_version: str


@dataclass(slots=True)
class InfoReport:
    """Engine-wide facts for docker info."""

    node_id: str
    name: str
    data_root: str
    exec_root: str
    containers: int = 0
    containers_running: int = 0
    containers_paused: int = 0
    containers_stopped: int = 0
    images: int = 0
    driver: str = "overlay2"
    logging_driver: str = "json-file"
    cgroup_driver: str = "cgroupfs"
    cgroup_version: str = "1"
    default_runtime: str = "crun"
    runtimes: list[str] = field(default_factory=list)
    kernel_version: str = ""
    operating_system: str = ""
    os_type: str = "linux"
    architecture: str = ""
    ncpu: int = 0
    mem_total: int = 0
    server_version: str = BERTH_VERSION
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    system_time: str = ""
    warnings: list[str] = field(default_factory=list)
    mode: str = "embedded"
    services: dict[str, str] = field(default_factory=dict)


class SystemAPI(Protocol):
    """Ping, version and info; implemented locally and over gRPC."""

    async def ping(self) -> str:
        """Return the node id; raises errdefs.Unavailable when the engine is unreachable."""
        ...

    async def version(self) -> VersionReport:
        """Return the versions."""
        ...

    async def info(self) -> InfoReport:
        """Return engine-wide facts and counts."""
        ...


@dataclass(slots=True)
class EngineFacts:
    """Static facts the daemon knows at start."""

    node_id: str
    data_root: Path
    exec_root: Path
    mode: str
    logging_driver: str = "json-file"
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    services: dict[str, str] = field(default_factory=dict)
    default_runtime: str = "crun"


def _git_commit() -> str:
    return os.environ.get("BERTH_GIT_COMMIT", "unknown")


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_version() -> str:
    return "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"


class SystemService:
    """Answers ping/version/info from the daemon's facts and counts from other services."""

    def __init__(
        self,
        facts: EngineFacts,
        count_images: Callable[[], Awaitable[int]],
        count_containers: Callable[[], Awaitable[dict[str, int]]] | None = None,
    ) -> None:
        self._facts = facts
        self._count_images = count_images
        self._count_containers = count_containers

    async def ping(self) -> str:
        return self._facts.node_id

    async def version(self) -> VersionReport:
        uname = os.uname()
        return VersionReport(
            version=BERTH_VERSION,
            api_version=MAX_API,
            min_api_version=MIN_API,
            git_commit=_git_commit(),
            kernel_version=uname.release,
            os="linux",
            arch=goarch(uname.machine),
            runtime_version=f"{platform.python_implementation()} {platform.python_version()}",
        )

    async def info(self) -> InfoReport:
        uname = os.uname()
        facts = self._facts
        os_name, mem, cgv = await anyio.to_thread.run_sync(
            lambda: (_os_release(), _mem_total(), _cgroup_version())
        )
        counts = await self._count_containers() if self._count_containers else {}
        running, paused, stopped = (counts.get(k, 0) for k in ("running", "paused", "stopped"))
        return InfoReport(
            node_id=facts.node_id,
            containers=running + paused + stopped,
            containers_running=running,
            containers_paused=paused,
            containers_stopped=stopped,
            name=socket.gethostname(),
            data_root=str(facts.data_root),
            exec_root=str(facts.exec_root),
            images=await self._count_images(),
            logging_driver=facts.logging_driver,
            default_runtime=facts.default_runtime,
            cgroup_version=cgv,
            runtimes=["crun", "runc"],
            kernel_version=uname.release,
            operating_system=os_name,
            architecture=uname.machine,
            ncpu=os.cpu_count() or 1,
            mem_total=mem,
            registry_mirrors=list(facts.registry_mirrors),
            insecure_registries=list(facts.insecure_registries),
            system_time=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            warnings=list(facts.warnings),
            mode=facts.mode,
            services=dict(facts.services),
        )
