"""Fixtures for containers service tests: a real busybox image, conmon + crun, and cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from containers_svc.api import CreateRequest
from containers_svc.service import ContainersService
from containers_svc.store import SqlContainerStore
from events_svc.bus import EventBus
from images_svc.api import ImportOptions
from images_svc.service import ImagesService
from images_svc.store import SqlImageStore
from ocirun import OciRuntime
from statestore import StateStore, open_store
from testkit.fixtures import busybox_rootfs_tar
from tests.unit.images.mountutil import unmount_all_under

NODE = "e" * 32


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Env:
    """Everything a test needs to build and rebuild a ContainersService."""

    data_root: Path
    exec_root: Path
    state: StateStore
    images: ImagesService
    events: EventBus
    runtime: OciRuntime

    def service(self) -> ContainersService:
        return ContainersService(
            self.data_root, self.exec_root, SqlContainerStore(self.state, NODE), self.images,
            self.events, self.runtime, NODE,
        )  # fmt: skip


def _kill_everything(rt: OciRuntime) -> None:
    """Kill and delete every runtime container under this test's exec root, and its conmon."""
    root = rt.exec_root / "containers"
    ids = [p.name for p in root.iterdir()] if root.exists() else []
    for cid in ids:
        argv = rt.runtime_argv
        subprocess.run([*argv, "kill", "--all", cid, "KILL"], capture_output=True, check=False)
        subprocess.run([*argv, "delete", "--force", cid], capture_output=True, check=False)
        pidfile = rt.paths(cid).conmon_pid_file
        if pidfile.exists():
            pid = int(pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline")
            # only our own conmon: its command line names this container id
            text = cmdline.read_bytes() if cmdline.exists() else b""
            if cid.encode() in text and b"conmon" in text:
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    data_root, exec_root = tmp_path / "root", tmp_path / "exec"
    data_root.mkdir()
    exec_root.mkdir()
    rt = OciRuntime(exec_root, __import__("ocirun").detect_host_facts())
    try:
        yield data_root, exec_root
    finally:
        _kill_everything(rt)
        unmount_all_under(tmp_path)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def env(dirs: tuple[Path, Path]) -> AsyncIterator[Env]:
    data_root, exec_root = dirs
    state = await open_store(f"sqlite+aiosqlite:///{data_root / 'state.db'}")
    try:
        images = ImagesService(data_root, SqlImageStore(state, NODE), NODE)
        await images.reconcile()
        tar = await anyio.to_thread.run_sync(busybox_rootfs_tar)
        data = await anyio.Path(tar).read_bytes()
        async for _ in images.import_image(ImportOptions(repo="busybox", tag="latest"), _once(data)):
            pass
        runtime = await OciRuntime.detect(exec_root)
        yield Env(data_root, exec_root, state, images, EventBus(NODE), runtime)
    finally:
        await state.aclose()


@pytest.fixture
async def svc(env: Env) -> AsyncIterator[ContainersService]:
    service = env.service()
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        try:
            yield service
        finally:
            tg.cancel_scope.cancel()


def req(*cmd: str, name: str = "", **config: object) -> CreateRequest:
    """A create request for busybox running ``cmd``; HostConfig via host_config=."""
    host_config = config.pop("host_config", {})
    assert isinstance(host_config, dict)
    return CreateRequest(name=name, config={"Image": "busybox", "Cmd": list(cmd), **config},
                         host_config=host_config, networking_config={})  # fmt: skip
