"""Fixtures for real-container tests: a busybox rootfs, a driver on a temp exec root, and cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ocirun import ContainerSpec, OciRuntime, build_oci_spec, detect_host_facts

BUSYBOX_TAR = Path("/var/cache/berth-test/busybox-rootfs.tar")
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def busybox_tar() -> Path:
    if not BUSYBOX_TAR.exists():
        subprocess.run(["bash", str(REPO / "scripts/build-fixtures.sh"), "busybox"], check=True)
    return BUSYBOX_TAR


@dataclass
class Lab:
    """A driver plus the containers a test made, so the finalizer can remove exactly those."""

    rt: OciRuntime
    base: Path
    rootfs: Path
    ids: list[str] = field(default_factory=list)

    def new(self, args: list[str], **kw: Any) -> tuple[str, Path, dict[str, Any]]:
        cid = "t" + uuid.uuid4().hex[:12]
        self.ids.append(cid)
        bundle = self.base / "bundles" / cid
        bundle.mkdir(parents=True)
        spec = ContainerSpec(
            id=cid, rootfs=str(self.rootfs), args=args, env=["PATH=/bin:/sbin:/usr/bin"], **kw
        )
        return cid, bundle, build_oci_spec(spec, self.rt.host, runtime=self.rt.name)


def _cleanup(lab: Lab) -> None:
    """Kill and delete every container the test created (synchronously, also after failures)."""
    for cid in lab.ids:
        argv = lab.rt.runtime_argv
        subprocess.run([*argv, "kill", "--all", cid, "KILL"], capture_output=True, check=False)
        subprocess.run([*argv, "delete", "--force", cid], capture_output=True, check=False)
        pidfile = lab.rt.paths(cid).conmon_pid_file
        if pidfile.exists():
            pid = int(pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline")
            # only our own conmon: its command line names this container id
            if (
                cmdline.exists()
                and cid.encode() in cmdline.read_bytes()
                and b"conmon" in cmdline.read_bytes()
            ):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(params=["crun", "runc"])
def lab(request: pytest.FixtureRequest, tmp_path: Path, busybox_tar: Path) -> Iterator[Lab]:
    host = detect_host_facts()
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with tarfile.open(busybox_tar) as tf:
        tf.extractall(rootfs, filter="fully_trusted")
    rt = OciRuntime(tmp_path / "exec", host, runtime=request.param)
    lab = Lab(rt, tmp_path, rootfs)
    try:
        yield lab
    finally:
        _cleanup(lab)
