"""Host facts the OCI driver depends on (cgroup layout, runtimes, rlimits, seccomp, capabilities)."""

from __future__ import annotations

import os
import platform
import re
import resource
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "CAPABILITIES",
    "RLIMITS",
    "CgroupLayout",
    "HostFacts",
    "detect_host_facts",
    "parse_cap_mask",
]

CgroupLayout = Literal["v1", "v2", "hybrid"]

# Capability names by bit number (linux/capability.h); moby's "known" list.
CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

# OCI rlimit type -> resource module constant (those Python knows on Linux).
RLIMITS: Mapping[str, int] = {
    "RLIMIT_" + name: getattr(resource, "RLIMIT_" + name)
    for name in (
        "AS", "CORE", "CPU", "DATA", "FSIZE", "LOCKS", "MEMLOCK", "MSGQUEUE", "NICE", "NOFILE",
        "NPROC", "RSS", "RTPRIO", "RTTIME", "SIGPENDING", "STACK",
    )
    if hasattr(resource, "RLIMIT_" + name)
}  # fmt: skip

_SECCOMP_CANDIDATES = ("/usr/share/containers/seccomp.json", "/etc/containers/seccomp.json")
_CGROUP2_MAGIC = "cgroup2"


def parse_cap_mask(mask: int) -> tuple[str, ...]:
    """Names of the capabilities set in a CapBnd/CapEff-style bit mask."""
    return tuple(name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1)


@dataclass(frozen=True)
class HostFacts:
    """What berth learned about the machine once at start-up (see :func:`detect_host_facts`).

    Attributes:
        cgroup_layout: ``v2`` (unified at /sys/fs/cgroup), ``v1`` or ``hybrid`` (v1 controllers plus
            cgroup2 at /sys/fs/cgroup/unified, which crun 1.8 refuses).
        cgroup_v1_controllers: mounted v1 hierarchies (``cpu``, ``memory``, ``name=systemd`` …).
        runtimes: OCI runtime name -> absolute path, for crun and runc when installed.
        conmon_path, catatonit_path, unshare_path: helper binaries, ``None`` when missing.
        rlimit_hard: OCI rlimit type -> the host's hard limit (``resource.RLIM_INFINITY`` = unlimited).
            Without CAP_SYS_RESOURCE nothing may be raised above these.
        seccomp_profile_path: containers-common's profile used as the base of the default profile.
        kernel_release: ``uname -r``.
        time_namespace: the kernel offers time namespaces (/proc/self/ns/time).
        capabilities: the bounding set of this process: what ``ALL``/privileged may grant.
        thermal_throttle_paths: existing /sys/devices/system/cpu/cpuN/thermal_throttle (masked by moby).
        machine: ``platform.machine()`` (x86_64, aarch64 …).
    """

    cgroup_layout: CgroupLayout
    cgroup_v1_controllers: frozenset[str] = frozenset()
    runtimes: Mapping[str, str] = field(default_factory=dict)
    conmon_path: str | None = None
    catatonit_path: str | None = None
    unshare_path: str | None = None
    rlimit_hard: Mapping[str, int] = field(default_factory=dict)
    seccomp_profile_path: str | None = None
    kernel_release: str = ""
    time_namespace: bool = False
    capabilities: tuple[str, ...] = CAPABILITIES
    thermal_throttle_paths: tuple[str, ...] = ()
    machine: str = "x86_64"

    def kernel_version(self) -> tuple[int, int]:
        """(major, minor) of the running kernel, (0, 0) when unparsable."""
        m = re.match(r"(\d+)\.(\d+)", self.kernel_release)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _mounts(mountinfo: str) -> dict[str, tuple[str, str]]:
    """mount point -> (fs type, super options) from /proc/self/mountinfo text."""
    out: dict[str, tuple[str, str]] = {}
    for line in mountinfo.splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        rest = post.split()
        if len(fields) >= 5 and len(rest) >= 3:
            out[fields[4]] = (rest[0], rest[2])
    return out


def cgroup_layout_from_mountinfo(mountinfo: str) -> tuple[CgroupLayout, frozenset[str]]:
    """Classify the cgroup layout from mountinfo text (pure, for tests)."""
    mounts = _mounts(mountinfo)
    root = mounts.get("/sys/fs/cgroup")
    if root is not None and root[0] == _CGROUP2_MAGIC:
        return "v2", frozenset()
    controllers: set[str] = set()
    for point, (fstype, _opts) in mounts.items():
        if fstype == "cgroup" and point.startswith("/sys/fs/cgroup/"):
            controllers.add(point.rsplit("/", 1)[1])
    unified = mounts.get("/sys/fs/cgroup/unified")
    if unified is not None and unified[0] == _CGROUP2_MAGIC:
        return "hybrid", frozenset(controllers)
    return "v1", frozenset(controllers)


def detect_host_facts() -> HostFacts:
    """Inspect the host. Blocking (reads /proc, stats files): call through ``anyio.to_thread``."""
    layout, controllers = cgroup_layout_from_mountinfo(Path("/proc/self/mountinfo").read_text())
    runtimes = {name: path for name in ("crun", "runc") if (path := shutil.which(name)) is not None}
    hard: dict[str, int] = {}
    for name, const in RLIMITS.items():
        hard[name] = resource.getrlimit(const)[1]
    caps = CAPABILITIES
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            caps = parse_cap_mask(int(line.split()[1], 16))
    thermal = tuple(
        sorted(
            str(p / "thermal_throttle")
            for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*")
            if (p / "thermal_throttle").exists()
        )
    )
    return HostFacts(
        cgroup_layout=layout,
        cgroup_v1_controllers=controllers,
        runtimes=runtimes,
        conmon_path=shutil.which("conmon"),
        catatonit_path=shutil.which("catatonit"),
        unshare_path=shutil.which("unshare"),
        rlimit_hard=hard,
        seccomp_profile_path=next((p for p in _SECCOMP_CANDIDATES if os.path.exists(p)), None),
        kernel_release=platform.release(),
        time_namespace=os.path.exists("/proc/self/ns/time"),
        capabilities=caps,
        thermal_throttle_paths=thermal,
        machine=platform.machine(),
    )
