"""ContainerSpec and build_oci_spec: one container's settings -> the config.json Docker would write.

Defaults follow moby (``daemon/pkg/oci/defaults.go``, ``daemon/oci_linux.go``; SECURITY-NOTES A1-A6):
14 default capabilities (inheritable/ambient empty), masked and read-only /proc and /sys paths,
/proc, /dev tmpfs, /dev/pts, /dev/shm (64 MiB), /dev/mqueue, /sys ro, /sys/fs/cgroup ro, the device
cgroup rules, network sysctls for private network namespaces, and rlimits never above the host's
hard limits (no CAP_SYS_RESOURCE here: asking for more makes the runtime fail).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import errdefs

from . import seccomp as _seccomp
from .host import CAPABILITIES, HostFacts

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_NOFILE",
    "DEFAULT_READONLY_PATHS",
    "DEFAULT_SHM_SIZE",
    "INIT_PATH",
    "ContainerSpec",
    "Device",
    "Mount",
    "Namespace",
    "Resources",
    "Ulimit",
    "build_exec_process",
    "build_oci_spec",
    "host_devices",
    "normalize_capabilities",
]

log = logging.getLogger(__name__)

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)  # fmt: skip

DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip

DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)  # fmt: skip

DEFAULT_SHM_SIZE = 64 * 1024 * 1024
# dockerd/containerd run with LimitNOFILE=1048576 and containers inherit it; we clamp it.
DEFAULT_NOFILE = 1048576
# Where --init's catatonit is bind-mounted (Docker's docker-init path).
INIT_PATH = "/sbin/docker-init"

_ULIMIT_NAMES = (
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack",
)  # fmt: skip
# Sysctls moby lets a container set in its own IPC namespace.
_IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
    "kernel.shmmni", "kernel.shm_rmid_forced",
})  # fmt: skip
# Not part of /dev for a privileged container (Docker's HostDevices skips these dirs).
_SKIP_DEV_DIRS = ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/.lxc", "/dev/.udev")
_DEFAULT_MOUNT_DESTS = ("/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm")


@dataclass(frozen=True)
class Mount:
    """A mount inside the container (bind, tmpfs, volume dirs, hosts/resolv.conf files …).

    ``options`` are OCI mount options; a bind with no options gets Docker's ``rbind,rprivate``.
    """

    destination: str
    type: str = "bind"
    source: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Device:
    """``--device host[:container[:perms]]``; the host node is stat()ed at build time."""

    path_on_host: str
    path_in_container: str = ""
    cgroup_permissions: str = "rwm"


@dataclass(frozen=True)
class Ulimit:
    """``--ulimit name=soft:hard`` (Docker names: nofile, nproc, core …)."""

    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class Namespace:
    """How one namespace is set up.

    mode:
        ``private`` — a new namespace made by the runtime;
        ``join`` — enter ``path``, a namespace made for this container (e.g. the networks service's
        netns): still counts as private for Docker's defaults;
        ``container`` — enter ``path`` of another container's namespace (``--network container:x``);
        ``host`` — share the host's.
    """

    mode: Literal["private", "join", "container", "host"] = "private"
    path: str = ""

    @property
    def is_private(self) -> bool:
        """True when the namespace belongs to this container alone (moby NetworkMode.IsPrivate)."""
        return self.mode in ("private", "join")


@dataclass(frozen=True)
class Resources:
    """cgroup limits (Docker HostConfig names). 0 / None means "not set"."""

    memory: int = 0
    memory_swap: int = 0  # -1 unlimited; 0 with memory set -> 2 x memory (Docker)
    memory_reservation: int = 0
    memory_swappiness: int | None = None
    kernel_memory: int = 0
    cpu_shares: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    nano_cpus: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int | None = None  # None/0 unlimited, -1 unlimited
    blkio_weight: int = 0
    oom_kill_disable: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """Everything berth decides about one container's process and sandbox.

    ``cap_add``/``cap_drop`` take Docker names (``NET_ADMIN``, ``cap_net_admin``, ``ALL``).
    ``seccomp`` is ``"default"``, ``"unconfined"`` or the JSON text of a custom profile.
    ``masked_paths``/``readonly_paths`` ``None`` keep Docker's defaults; a tuple replaces them.
    ``tmpfs`` maps destination -> Docker option string (``"rw,size=64m"``).
    ``cgroup_parent`` + id give ``linux.cgroupsPath`` (``/berth/<id>`` by default).
    ``init`` runs catatonit as pid 1 (``--init``).
    """

    id: str
    rootfs: str
    args: Sequence[str]
    env: Sequence[str] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: Sequence[int] = ()
    umask: int | None = None
    hostname: str = ""
    domainname: str = ""
    terminal: bool = False
    read_only: bool = False
    cap_add: Sequence[str] = ()
    cap_drop: Sequence[str] = ()
    privileged: bool = False
    no_new_privileges: bool = False
    seccomp: str = "default"
    systempaths_unconfined: bool = False
    mounts: Sequence[Mount] = ()
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    devices: Sequence[Device] = ()
    device_cgroup_rules: Sequence[str] = ()
    ulimits: Sequence[Ulimit] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    shm_size: int = 0
    resources: Resources = field(default_factory=Resources)
    cgroup_parent: str = "/berth"
    oom_score_adj: int | None = None
    network: Namespace = field(default_factory=Namespace)
    pid: Namespace = field(default_factory=Namespace)
    ipc: Namespace = field(default_factory=Namespace)
    uts: Namespace = field(default_factory=Namespace)
    cgroupns: Literal["host", "private"] = "host"
    masked_paths: Sequence[str] | None = None
    readonly_paths: Sequence[str] | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    init: bool = False
    writable_cgroups: bool = False


def normalize_capabilities(names: Sequence[str], available: Sequence[str]) -> list[str]:
    """Docker's NormalizeLegacyCapabilities: upper-case, add ``CAP_``, keep ``ALL``.

    Raises:
        errdefs.InvalidArgument: ``unknown capability: "CAP_FOO"`` or not available here.
    """
    out: list[str] = []
    for raw in names:
        c = raw.upper()
        if c == "ALL":
            out.append(c)
            continue
        if not c.startswith("CAP_"):
            c = "CAP_" + c
        if c not in CAPABILITIES:
            raise errdefs.InvalidArgument(f"unknown capability: {json.dumps(c)}")
        if c not in available:
            raise errdefs.InvalidArgument(
                "capability not supported by your kernel or not available in the current environment: "
                + json.dumps(c)
            )
        out.append(c)
    return out


def _capabilities(spec: ContainerSpec, host: HostFacts) -> list[str]:
    """moby TweakCapabilities."""
    available = list(host.capabilities)
    if spec.privileged:
        return available
    if not spec.cap_add and not spec.cap_drop:
        return list(DEFAULT_CAPABILITIES)
    drops = normalize_capabilities(spec.cap_drop, available)
    adds = normalize_capabilities(spec.cap_add, available)
    if "ALL" in adds:
        return [c for c in available if c not in drops]
    if "ALL" in drops:
        return list(dict.fromkeys(adds))
    caps = [c for c in DEFAULT_CAPABILITIES if c not in drops]
    return list(dict.fromkeys([*caps, *adds]))


def _rlimits(spec: ContainerSpec, host: HostFacts) -> list[dict[str, Any]]:
    wanted: dict[str, tuple[int, int]] = {"RLIMIT_NOFILE": (DEFAULT_NOFILE, DEFAULT_NOFILE)}
    for u in spec.ulimits:
        if u.name not in _ULIMIT_NAMES:
            raise errdefs.InvalidArgument(f"invalid ulimit type: {u.name}")
        if u.soft > u.hard and u.hard >= 0:
            raise errdefs.InvalidArgument(
                f"ulimit soft limit must be less than or equal to hard limit: {u.soft} > {u.hard}"
            )
        wanted["RLIMIT_" + u.name.upper()] = (u.soft, u.hard)
    out: list[dict[str, Any]] = []
    for name, (soft, hard) in wanted.items():
        ceiling = host.rlimit_hard.get(name, -1)
        if ceiling >= 0:  # RLIM_INFINITY is -1: no ceiling
            if hard < 0 or hard > ceiling:
                log.info("clamping %s hard %d to the host's hard limit %d", name, hard, ceiling)
                hard = ceiling
            if soft < 0 or soft > hard:
                soft = hard
        out.append(
            {"type": name, "hard": hard if hard >= 0 else 2**64 - 1, "soft": soft if soft >= 0 else 2**64 - 1}
        )
    return out


def _tmpfs_options(opts: str) -> list[str]:
    # Docker's tmpfs defaults; user options (rw, size=, mode=, exec …) come after and win in the kernel.
    base = ["noexec", "nosuid", "nodev"]
    user = [o for o in opts.split(",") if o]
    if "exec" in user:
        base.remove("noexec")
    return base + [o for o in user if o not in base]


def _default_mounts(spec: ContainerSpec, shm_size: int) -> list[dict[str, Any]]:
    cgroup_opts = ["nosuid", "noexec", "nodev", "relatime"]
    sys_ro = not spec.privileged
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro" if sys_ro else "rw"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": [*cgroup_opts, "rw" if spec.privileged or spec.writable_cgroups else "ro"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
    ]  # fmt: skip
    if spec.ipc.is_private:
        mounts.append(
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]}
        )  # fmt: skip
    return mounts


def _user_mounts(spec: ContainerSpec, host: HostFacts) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in spec.mounts:
        if not m.destination.startswith("/"):
            raise errdefs.InvalidArgument(
                f"invalid mount config: destination must be absolute: {m.destination}"
            )
        if m.destination.rstrip("/") in ("/proc", "/sys") or m.destination.startswith(("/proc/", "/sys/")):
            if m.type == "bind" and os.path.normpath(m.destination).startswith("/proc"):
                raise errdefs.InvalidArgument(
                    f"invalid mount config: cannot be mounted over /proc: {m.destination}"
                )
        opts = list(m.options)
        if m.type == "bind":
            if not m.source:
                raise errdefs.InvalidArgument(
                    'invalid mount config for type "bind": field Source must not be empty'
                )
            if not any(o in ("bind", "rbind") for o in opts):
                opts.insert(0, "rbind")
            if not any(o.endswith("private") or o.endswith("shared") or o.endswith("slave") for o in opts):
                opts.append("rprivate")
        out.append({"destination": os.path.normpath(m.destination), "type": m.type,
                    "source": m.source or m.type, "options": opts})  # fmt: skip
    for dest, opts_text in spec.tmpfs.items():
        out.append({"destination": os.path.normpath(dest), "type": "tmpfs", "source": "tmpfs",
                    "options": _tmpfs_options(opts_text)})  # fmt: skip
    if spec.init:
        if not host.catatonit_path:
            raise errdefs.InvalidArgument("--init requested but catatonit is not installed on this host")
        out.append({"destination": INIT_PATH, "type": "bind", "source": host.catatonit_path,
                    "options": ["bind", "ro", "nosuid", "nodev", "rprivate"]})  # fmt: skip
    return out


def _device_entry(host_path: str, container_path: str) -> dict[str, Any]:
    """linux.devices entry for a host node. Blocking (stat)."""
    try:
        st = os.stat(host_path)
    except OSError as e:
        raise errdefs.InvalidArgument(
            f"error gathering device information while adding custom device {host_path!r}: {e.strerror}"
        ) from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    elif stat.S_ISFIFO(st.st_mode):
        kind = "p"
    else:
        raise errdefs.InvalidArgument(
            f"error gathering device information while adding custom device {host_path!r}: not a device node"
        )
    return {
        "path": container_path, "type": kind, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
    }  # fmt: skip


def host_devices(root: str = "/dev") -> list[dict[str, Any]]:
    """All device nodes under /dev, as linux.devices entries (privileged). Blocking."""
    out: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath in _SKIP_DEV_DIRS or dirpath.startswith(tuple(d + "/" for d in _SKIP_DEV_DIRS)):
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in _SKIP_DEV_DIRS]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                continue
            if path == "/dev/console":  # the runtime provides the container's console
                continue
            out.append(_device_entry(path, path))
    return out


def _device_rule(rule: str) -> dict[str, Any]:
    """``--device-cgroup-rule 'c 1:3 mr'``."""
    parts = rule.split()
    if len(parts) != 3 or parts[0] not in ("a", "b", "c") or ":" not in parts[1]:
        raise errdefs.InvalidArgument(f"invalid device cgroup format '{rule}'")
    major, minor = parts[1].split(":", 1)

    def num(v: str) -> int | None:
        if v == "*":
            return None
        if not v.isdigit():
            raise errdefs.InvalidArgument(f"invalid device cgroup format '{rule}'")
        return int(v)

    entry: dict[str, Any] = {"allow": True, "type": parts[0], "access": parts[2]}
    if (mj := num(major)) is not None:
        entry["major"] = mj
    if (mn := num(minor)) is not None:
        entry["minor"] = mn
    return entry


def _resources(spec: ContainerSpec, device_rules: list[dict[str, Any]]) -> dict[str, Any]:
    r = spec.resources
    out: dict[str, Any] = {"devices": device_rules}
    mem: dict[str, Any] = {}
    if r.memory:
        if r.memory < 6 * 1024 * 1024:
            raise errdefs.InvalidArgument("Minimum memory limit allowed is 6MB")
        mem["limit"] = r.memory
        if r.memory_swap == 0:
            mem["swap"] = 2 * r.memory
    if r.memory_swap:
        if r.memory_swap > 0 and r.memory and r.memory_swap < r.memory:
            raise errdefs.InvalidArgument(
                "Minimum memoryswap limit should be larger than memory limit, see usage"
            )
        mem["swap"] = r.memory_swap
    if r.memory_reservation:
        mem["reservation"] = r.memory_reservation
    if r.memory_swappiness is not None and r.memory_swappiness >= 0:
        mem["swappiness"] = r.memory_swappiness
    if r.oom_kill_disable:
        mem["disableOOMKiller"] = True
    if mem:
        out["memory"] = mem
    cpu: dict[str, Any] = {}
    if r.nano_cpus and (r.cpu_quota or r.cpu_period):
        raise errdefs.InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if r.nano_cpus:
        cpu["period"] = 100000
        cpu["quota"] = r.nano_cpus * 100000 // 1_000_000_000
    if r.cpu_shares:
        cpu["shares"] = r.cpu_shares
    if r.cpu_quota:
        cpu["quota"] = r.cpu_quota
    if r.cpu_period:
        cpu["period"] = r.cpu_period
    if r.cpuset_cpus:
        cpu["cpus"] = r.cpuset_cpus
    if r.cpuset_mems:
        cpu["mems"] = r.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    if r.pids_limit is not None and r.pids_limit != 0:
        out["pids"] = {"limit": r.pids_limit if r.pids_limit > 0 else -1}
    if r.blkio_weight:
        out["blockIO"] = {"weight": r.blkio_weight}
    return out


def _namespaces(spec: ContainerSpec) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"type": "mount"}]
    for kind, ns in (("network", spec.network), ("pid", spec.pid), ("ipc", spec.ipc), ("uts", spec.uts)):
        if ns.mode == "host":
            continue
        if ns.mode in ("join", "container"):
            if not ns.path:
                raise errdefs.InvalidArgument(f"{kind} namespace mode {ns.mode} needs a path")
            out.append({"type": kind, "path": ns.path})
        else:
            out.append({"type": kind})
    if spec.cgroupns == "private":
        out.append({"type": "cgroup"})
    # NOTE: no private time namespace (moby 2026): runc 1.1 lacks it and crun 1.8.1 fails to start
    # containers with one on this kernel ("write to sync socket: Connection reset by peer").
    return out


def _sysctls(spec: ContainerSpec) -> dict[str, str]:
    out: dict[str, str] = {}
    if spec.network.is_private:
        out["net.ipv4.ip_unprivileged_port_start"] = "0"
        out["net.ipv4.ping_group_range"] = "0 2147483647"
    for key, value in spec.sysctls.items():
        if key.startswith("net."):
            if spec.network.mode == "host":
                raise errdefs.InvalidArgument(f"sysctl {key!r} not allowed in host network namespace")
        elif key.startswith("fs.mqueue.") or key in _IPC_SYSCTLS:
            if spec.ipc.mode == "host":
                raise errdefs.InvalidArgument(f"sysctl {key!r} not allowed in host IPC namespace")
        elif key in ("kernel.domainname", "kernel.hostname"):
            if spec.uts.mode == "host":
                raise errdefs.InvalidArgument(f"sysctl {key!r} not allowed in host UTS namespace")
        else:
            raise errdefs.InvalidArgument(f"sysctl '{key}' is not allowed")
        out[key] = value
    return out


def _seccomp_section(spec: ContainerSpec, host: HostFacts, caps: list[str]) -> dict[str, Any] | None:
    if spec.seccomp == "unconfined":
        return None
    if spec.seccomp in ("", "default"):
        if spec.privileged:
            return None
        if not host.seccomp_profile_path:
            raise errdefs.InvalidArgument(
                "no default seccomp profile on this host (containers-common missing)"
            )
        base = _seccomp.load_profile(Path(host.seccomp_profile_path).read_text())
        profile = _seccomp.default_profile(base)
    else:
        profile = _seccomp.load_profile(spec.seccomp)
    return _seccomp.to_oci(profile, caps=caps, machine=host.machine, kernel=host.kernel_version())


def build_oci_spec(spec: ContainerSpec, host: HostFacts, *, runtime: str = "crun") -> dict[str, Any]:
    """The OCI runtime config (config.json) for ``spec``, as Docker would write it.

    Blocking: stats device nodes and reads the seccomp profile; call via ``anyio.to_thread``.

    Args:
        spec: the container's settings.
        host: facts from :func:`ocirun.host.detect_host_facts`.
        runtime: ``crun`` or ``runc`` (reserved for runtime-specific tweaks; both get the same spec now).

    Raises:
        errdefs.InvalidArgument: unknown capability, bad ulimit/sysctl/device/mount, malformed
            seccomp profile (moby's wording where it has one).
    """
    if not spec.args:
        raise errdefs.InvalidArgument("no command specified")
    if spec.oom_score_adj is not None and not -1000 <= spec.oom_score_adj <= 1000:
        raise errdefs.InvalidArgument(
            f"Invalid value {spec.oom_score_adj}, range for oom score adj is [-1000, 1000]"
        )
    caps = _capabilities(spec, host)
    unconfined_paths = spec.privileged or spec.systempaths_unconfined
    masked = (
        []
        if unconfined_paths
        else list(
            spec.masked_paths
            if spec.masked_paths is not None
            else [*DEFAULT_MASKED_PATHS, *host.thermal_throttle_paths]
        )
    )
    readonly = (
        []
        if unconfined_paths
        else list(spec.readonly_paths if spec.readonly_paths is not None else DEFAULT_READONLY_PATHS)
    )

    user_mounts = _user_mounts(spec, host)
    user_dests = {m["destination"] for m in user_mounts}
    mounts = [
        m
        for m in _default_mounts(spec, spec.shm_size or DEFAULT_SHM_SIZE)
        if m["destination"] not in user_dests
    ]
    if spec.read_only:
        for m in mounts:
            if (
                m["destination"] not in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue")
                and "ro" not in m["options"]
            ):
                m["options"] = [o for o in m["options"] if o != "rw"] + ["ro"]
    mounts += user_mounts

    # moby defaults: deny all, then the standard character devices, deny fuse.
    device_rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    devices: list[dict[str, Any]] = []
    if spec.privileged:
        device_rules = [{"allow": True, "access": "rwm"}]
        devices = host_devices()
    else:
        device_rules += [
            {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        ]
    for d in spec.devices:
        entry = _device_entry(d.path_on_host, d.path_in_container or d.path_on_host)
        devices = [x for x in devices if x["path"] != entry["path"]] + [entry]
        if not spec.privileged:
            perms = d.cgroup_permissions or "rwm"
            if not set(perms) <= set("rwm"):
                raise errdefs.InvalidArgument(f"invalid device mode: {perms}")
            device_rules.append(
                {
                    "allow": True,
                    "type": entry["type"],
                    "major": entry["major"],
                    "minor": entry["minor"],
                    "access": perms,
                }
            )
    device_rules += [_device_rule(r) for r in spec.device_cgroup_rules]

    process: dict[str, Any] = {
        "terminal": spec.terminal,
        "user": {"uid": spec.uid, "gid": spec.gid},
        "args": ([INIT_PATH, "--", *spec.args] if spec.init else list(spec.args)),
        "env": list(spec.env),
        "cwd": spec.cwd or "/",
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": [],
        },
        "rlimits": _rlimits(spec, host),
        "noNewPrivileges": spec.no_new_privileges,
    }  # fmt: skip
    if spec.additional_gids:
        process["user"]["additionalGids"] = list(spec.additional_gids)
    if spec.umask is not None:
        process["user"]["umask"] = spec.umask
    if spec.oom_score_adj is not None:
        process["oomScoreAdj"] = spec.oom_score_adj

    linux: dict[str, Any] = {
        "resources": _resources(spec, device_rules),
        "cgroupsPath": f"{spec.cgroup_parent.rstrip('/') or ''}/{spec.id}",
        "namespaces": _namespaces(spec),
        "maskedPaths": masked,
        "readonlyPaths": readonly,
    }
    if not linux["cgroupsPath"].startswith("/"):
        linux["cgroupsPath"] = "/" + linux["cgroupsPath"]
    if devices:
        linux["devices"] = devices
    if sysctls := _sysctls(spec):
        linux["sysctl"] = sysctls
    if (sc := _seccomp_section(spec, host, caps)) is not None:
        linux["seccomp"] = sc

    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": spec.rootfs, "readonly": spec.read_only},
        "mounts": mounts,
        "linux": linux,
    }
    if spec.uts.mode != "host" and spec.hostname:
        config["hostname"] = spec.hostname
    if spec.uts.mode != "host" and spec.domainname:
        config["domainname"] = spec.domainname
    if spec.annotations:
        config["annotations"] = dict(spec.annotations)
    return config


def build_exec_process(
    container_config: Mapping[str, Any],
    args: Sequence[str],
    *,
    env: Sequence[str] = (),
    cwd: str = "",
    uid: int | None = None,
    gid: int | None = None,
    additional_gids: Sequence[int] | None = None,
    terminal: bool = False,
    privileged: bool = False,
) -> dict[str, Any]:
    """The OCI ``process`` for ``docker exec``: the container's caps/rlimits/env, plus ``env`` and ``args``.

    ``privileged`` (``docker exec --privileged``) grants the container's bounding set as moby does.

    Raises:
        errdefs.InvalidArgument: empty ``args``.
    """
    if not args:
        raise errdefs.InvalidArgument("No exec command specified")
    base = container_config.get("process", {})
    user = dict(base.get("user", {"uid": 0, "gid": 0}))
    if uid is not None:
        user = {"uid": uid, "gid": gid if gid is not None else 0}
        if additional_gids:
            user["additionalGids"] = list(additional_gids)
    caps = dict(base.get("capabilities", {}))
    if privileged:
        bnd = list(caps.get("bounding", []))
        caps = {"bounding": bnd, "effective": bnd, "permitted": bnd, "inheritable": [], "ambient": []}
    proc: dict[str, Any] = {
        "terminal": terminal,
        "user": user,
        "args": list(args),
        "env": [*base.get("env", []), *env],
        "cwd": cwd or base.get("cwd", "/"),
        "capabilities": caps,
        "rlimits": list(base.get("rlimits", [])),
        "noNewPrivileges": bool(base.get("noNewPrivileges", False)),
    }
    if "oomScoreAdj" in base:
        proc["oomScoreAdj"] = base["oomScoreAdj"]
    return proc
