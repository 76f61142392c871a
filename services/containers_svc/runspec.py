"""From a container record to an ocirun ContainerSpec: mounts, user, command check, limits.

Blocking (reads the rootfs, creates bind sources): call through ``anyio.to_thread``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import errdefs
from containers_svc.api import ContainerRecord
from containers_svc.config import DEFAULT_PATH, parse_signal, security_opts
from containers_svc.rootfs import find_executable, lookup_user, mkdir_in_root, resolve_in_root
from networks_svc import shapes as net_shapes
from networks_svc.model import AttachResult
from ocirun import ContainerSpec, Device, Mount, Namespace, Resources, Ulimit

__all__ = [
    "PRIVATE_KEYS",
    "build_spec",
    "parse_mounts",
    "process_env",
    "public_mount",
    "volume_point",
    "volumes_from",
    "write_etc_files",
]

_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")

_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def _bind_point(source: str, dest: str, ro: bool, mode: str, propagation: str) -> dict[str, Any]:
    return {"Type": "bind", "Source": source, "Destination": dest, "Mode": mode, "RW": not ro,
            "Propagation": propagation}  # fmt: skip


# Mount-point keys Docker keeps internally but never shows in inspect; "_"-keys live only until
# the volume is acquired at create.
PRIVATE_KEYS = ("CopyData", "_Driver", "_DriverOpts", "_Labels")


def volume_point(name: str, dest: str, rw: bool, mode: str = "", copy_data: bool = True,
                 driver: str = "", driver_opts: Mapping[str, str] | None = None,
                 labels: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """A Docker volume MountPoint; an empty ``name`` is an anonymous volume not yet created."""
    return {"Type": "volume", "Name": name, "Source": "", "Destination": dest,
            "Driver": driver or "local", "Mode": mode, "RW": rw, "Propagation": "",
            "CopyData": copy_data, "_Driver": driver, "_DriverOpts": dict(driver_opts or {}),
            "_Labels": dict(labels or {})}  # fmt: skip


def public_mount(mp: Mapping[str, Any]) -> dict[str, Any]:
    """The MountPoint as inspect shows it (private keys dropped)."""
    return {k: v for k, v in mp.items() if k not in PRIVATE_KEYS}


def volumes_from(spec: str) -> tuple[str, bool | None]:
    """``ctr[:ro|rw]`` of HostConfig.VolumesFrom -> (container, RW override or None).

    Raises:
        errdefs.InvalidArgument: moby's texts for a bad mode.
    """
    ref, sep, mode = spec.partition(":")
    if not ref:
        raise errdefs.InvalidArgument(f"invalid volumes-from spec: '{spec}'")
    if not sep:
        return ref, None
    if mode not in ("ro", "rw"):
        raise errdefs.InvalidArgument(f"invalid mode for volumes-from: {mode}")
    return ref, mode == "rw"


def _bad_mount(kind: str, why: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f'invalid mount config for type "{kind}": {why}')


def parse_mounts(hc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Docker MountPoints for HostConfig.Binds and HostConfig.Mounts (bind, volume, tmpfs).

    Volume points carry an empty Source (and an empty Name when anonymous) until the
    containers service acquires them.

    Raises:
        errdefs.InvalidArgument: malformed specs (moby's texts).
    """
    out: list[dict[str, Any]] = []
    for spec in hc.get("Binds") or []:
        parts = spec.split(":")
        if len(parts) == 1 and parts[0].startswith("/"):
            parts = ["", parts[0]]  # moby: a lone path is an anonymous volume
        if len(parts) not in (2, 3) or not parts[1] or (not parts[0] and len(parts) == 3):
            raise errdefs.InvalidArgument(f"invalid volume specification: '{spec}'")
        src, dst = parts[0], parts[1]
        opts = parts[2].split(",") if len(parts) == 3 else []
        kind = "bind" if src.startswith("/") else "volume"
        if not dst.startswith("/"):
            raise errdefs.InvalidArgument(
                f"invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": "
                f"invalid mount path: '{dst}' mount path must be absolute"
            )
        ro = False
        nocopy = False
        propagation = "rprivate"
        for o in opts:
            if o in ("ro", "rw"):
                ro = o == "ro"
            elif o in _PROPAGATIONS and kind == "bind":
                propagation = o
            elif o == "nocopy" and kind == "volume":
                nocopy = True
            elif o not in ("z", "Z", "consistent", "cached", "delegated", ""):
                raise errdefs.InvalidArgument(f"invalid mode: {o}")
        if os.path.normpath(dst) == "/":
            raise errdefs.InvalidArgument(f"invalid specification: destination can't be '/' in '{spec}'")
        if kind == "volume":
            # docker inspect shows "z" for a named -v volume given no mode
            mode = parts[2] if len(parts) == 3 else ("z" if src else "")
            out.append(volume_point(src, os.path.normpath(dst), not ro, mode, not nocopy))
            continue
        out.append(_bind_point(os.path.normpath(src), os.path.normpath(dst), ro,
                               parts[2] if len(parts) == 3 else "", propagation))  # fmt: skip
    for m in hc.get("Mounts") or []:
        kind = m.get("Type", "")
        target = m.get("Target", "")
        if not target:
            raise _bad_mount(kind, "field Target must not be empty")
        if not target.startswith("/"):
            raise _bad_mount(kind, f"invalid mount path: '{target}' mount path must be absolute")
        for key, allowed in (("BindOptions", "bind"), ("VolumeOptions", "volume"),
                             ("TmpfsOptions", "tmpfs")):  # fmt: skip
            if m.get(key) and kind != allowed and kind in ("bind", "volume", "tmpfs"):
                raise _bad_mount(kind, f"field {key} must not be specified")
        if kind == "bind":
            src = m.get("Source", "")
            if not src:
                raise _bad_mount(kind, "field Source must not be empty")
            if not src.startswith("/"):
                raise _bad_mount(kind, f"invalid mount path: '{src}' mount path must be absolute")
            create = bool((m.get("BindOptions") or {}).get("CreateMountpoint"))
            if not create and not os.path.exists(src):
                raise errdefs.InvalidArgument(
                    f'invalid mount config for type "bind": bind source path does not exist: {src}'
                )
            prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
            if prop not in _PROPAGATIONS:
                raise errdefs.InvalidArgument(f"invalid propagation mode: {prop}")
            out.append(_bind_point(src, target, bool(m.get("ReadOnly")), "", prop))
        elif kind == "tmpfs":
            if m.get("Source"):
                raise _bad_mount(kind, "field Source must not be specified")
            out.append({"Type": "tmpfs", "Source": "", "Destination": target, "Mode": "",
                        "RW": not m.get("ReadOnly"), "Propagation": "",
                        "TmpfsOptions": m.get("TmpfsOptions") or {}})  # fmt: skip
        elif kind == "volume":
            vo = m.get("VolumeOptions") or {}
            dc = vo.get("DriverConfig") or {}
            if vo.get("Subpath"):
                raise _bad_mount(kind, "volume subpaths are not supported")
            out.append(volume_point(m.get("Source", ""), os.path.normpath(target), not m.get("ReadOnly"),
                                    "", not vo.get("NoCopy"), dc.get("Name") or "",
                                    dc.get("Options") or {}, vo.get("Labels") or {}))  # fmt: skip
        else:
            raise errdefs.InvalidArgument(f"mount type unknown: {kind!r}")
    seen: set[str] = set()
    for mp in out:
        if mp["Destination"] in seen:
            raise errdefs.InvalidArgument(f"Duplicate mount point: {mp['Destination']}")
        seen.add(mp["Destination"])
    return out


def write_etc_files(
    rec: ContainerRecord, host_resolv: str = "/etc/resolv.conf", net: AttachResult | None = None
) -> None:
    """Write the container's hostname, hosts and resolv.conf files (bind-mounted at start).

    ``net`` (the networks service's attachment) gives the container's address, --link entries,
    the host-gateway address and the resolvers (127.0.0.11 on user-defined networks).
    """
    cfg, hc = rec.config, rec.host_config
    hostname = cfg.get("Hostname") or rec.id[:12]
    _write(rec.hostname_path, hostname + "\n")
    hosts = _HOSTS
    gateway = net_shapes.host_gateway(net) if net is not None else ""
    for entry in hc.get("ExtraHosts") or []:
        name, sep, ip = entry.partition(":")
        if sep:
            if ip == "host-gateway":
                if not gateway:
                    continue
                ip = gateway
            hosts += f"{ip}\t{name}\n"
    fqdn = f"{hostname}.{cfg['Domainname']}" if cfg.get("Domainname") else hostname
    if net is not None:
        own, extra = net_shapes.etc_hosts_entries(net, hostname, cfg.get("Domainname") or "")
        hosts += "".join(line + "\n" for line in extra) + own + "\n"
    else:
        hosts += f"127.0.0.1\t{fqdn}" + (f" {hostname}" if fqdn != hostname else "") + "\n"
    _write(rec.hosts_path, hosts)
    host_text = _read_text(host_resolv)
    if net is not None and net.dns_servers and not hc.get("Dns"):
        # The networks service chose the resolvers (the embedded DNS server or the host's).
        host_text = "".join(f"nameserver {ns}\n" for ns in net.dns_servers)
        host_text += f"search {' '.join(net.dns_search)}\n" if net.dns_search else ""
        host_text += f"options {' '.join(net.dns_options)}\n" if net.dns_options else ""
        _write(rec.resolv_conf_path, resolv_conf(host_text, hc, keep_loopback=True))
        return
    _write(rec.resolv_conf_path, resolv_conf(host_text, hc))


def resolv_conf(host_text: str, hc: Mapping[str, Any], keep_loopback: bool = False) -> str:
    """The host's resolv.conf minus loopback nameservers, with Dns/DnsSearch/DnsOptions applied.

    ``keep_loopback``: the nameservers were chosen for the container (127.0.0.11) and stay.
    """
    lines: list[str] = []
    for line in host_text.splitlines():
        words = line.split()
        if words and words[0] == "nameserver":
            # A private network namespace has no host loopback resolver behind 127.x / ::1
            # (127.0.0.11, the embedded DNS server, lives in the container's own netns).
            loopback = words[1].startswith("127.") or words[1] == "::1" if len(words) > 1 else False
            if hc.get("Dns") or len(words) < 2 or (loopback and not keep_loopback):
                continue
        if words and words[0] in ("search", "domain") and hc.get("DnsSearch"):
            continue
        if words and words[0] == "options" and hc.get("DnsOptions"):
            continue
        lines.append(line)
    lines += [f"nameserver {ns}" for ns in hc.get("Dns") or []]
    if hc.get("DnsSearch"):
        lines.append("search " + " ".join(hc["DnsSearch"]))
    if hc.get("DnsOptions"):
        lines.append("options " + " ".join(hc["DnsOptions"]))
    return "\n".join(lines) + "\n"


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read(1 << 16)
    except OSError:
        return ""


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def process_env(rec: ContainerRecord, home: str, linked: Sequence[str] = ()) -> list[str]:
    """The process environment as Docker builds it: PATH, HOSTNAME, TERM, links, Config.Env, HOME."""
    cfg = rec.config
    env = list(cfg.get("Env") or [])
    keys = {e.split("=", 1)[0] for e in env}
    head = []
    if "PATH" not in keys:
        head.append(DEFAULT_PATH)
    head.append("HOSTNAME=" + (cfg.get("Hostname") or rec.id[:12]))
    if cfg.get("Tty") and "TERM" not in keys:
        head.append("TERM=xterm")
    head += [e for e in linked if e.split("=", 1)[0] not in keys]  # Config.Env wins, as in dockerd
    tail = [] if "HOME" in keys else [f"HOME={home or '/'}"]
    return head + env + tail


def _namespace(mode: str, pid_of: Mapping[str, int], kind: str) -> Namespace:
    if mode == "host":
        return Namespace("host")
    if mode.startswith("container:"):
        ref = mode.split(":", 1)[1]
        pid = pid_of.get(ref, 0)
        if not pid:
            raise errdefs.Conflict(f"cannot join namespace of a non running container: {ref}")
        return Namespace("container", f"/proc/{pid}/ns/{kind}")
    return Namespace("private")


def build_spec(
    rec: ContainerRecord,
    rootfs: str,
    pid_of: Mapping[str, int],
    check_command: bool = True,
    linked_env: Sequence[str] = (),
) -> ContainerSpec:
    """The ContainerSpec that starts ``rec`` on ``rootfs``.

    ``pid_of`` maps a container ref to its running pid (for ``container:<x>`` modes);
    ``linked_env`` is the --link environment (:func:`containers_svc.links.link_env`).

    Raises:
        rootfs.ExecError: the command cannot be executed (127/126 semantics).
        errdefs.InvalidArgument: unknown user/group, bad options.
    """
    cfg, hc = rec.config, rec.host_config
    # Names resolve in the image's /etc/passwd, which only exists at start (create validates without it).
    user = (lookup_user(rootfs, cfg.get("User") or "", hc.get("GroupAdd") or []) if check_command
            else lookup_user(rootfs, "", []))
    env = process_env(rec, user.home, linked_env)
    cwd = cfg.get("WorkingDir") or "/"
    if check_command:
        if cwd != "/":
            mkdir_in_root(rootfs, cwd)
        find_executable(rootfs, rec.path, env, cwd)
    mounts: list[Mount] = []
    tmpfs: dict[str, str] = dict(hc.get("Tmpfs") or {})
    for mp in rec.mounts:
        if mp["Type"] == "volume":
            opts = ["rbind", "rprivate"]
            if not mp["RW"]:
                opts.append("ro")
            # Create-time validation runs before the volume exists: stand in for its path.
            src = mp["Source"] or ("" if check_command else "/nonexistent-volume")
            mounts.append(Mount(mp["Destination"], "bind", src, tuple(opts)))
        elif mp["Type"] == "bind":
            if check_command and not os.path.exists(mp["Source"]):
                os.makedirs(mp["Source"], mode=0o755, exist_ok=True)  # what docker run -v does
            opts = ["rbind", mp.get("Propagation") or "rprivate"]
            if not mp["RW"]:
                opts.append("ro")
            mounts.append(Mount(mp["Destination"], "bind", mp["Source"], tuple(opts)))
        elif mp["Type"] == "tmpfs":
            to = mp.get("TmpfsOptions") or {}
            parts = []
            if to.get("SizeBytes"):
                parts.append(f"size={int(to['SizeBytes'])}")
            if to.get("Mode"):
                parts.append(f"mode={int(to['Mode']):o}")
            if not mp["RW"]:
                parts.append("ro")
            tmpfs[mp["Destination"]] = ",".join(parts)
    user_dests = {m.destination for m in mounts} | set(tmpfs)
    etc_ro = ("ro",) if hc.get("ReadonlyRootfs") else ()
    for dest, src in (("/etc/resolv.conf", rec.resolv_conf_path), ("/etc/hostname", rec.hostname_path),
                      ("/etc/hosts", rec.hosts_path)):  # fmt: skip
        if dest not in user_dests and src:
            mounts.append(Mount(dest, "bind", src, ("rbind", "rprivate", *etc_ro)))
    sec = security_opts(hc)
    net_mode = hc.get("NetworkMode") or "bridge"
    network = _namespace(net_mode if net_mode in ("host",) or net_mode.startswith("container:") else "",
                         pid_of, "net")  # fmt: skip
    netns = str(rec.network_settings.get("SandboxKey") or "")
    if netns and not netns.startswith("/proc/") and net_mode != "host":
        # The networks service made (or, for container:<x>, found) the netns: join it.
        network = Namespace("container" if net_mode.startswith("container:") else "join", netns)
    init = hc.get("Init")
    return ContainerSpec(
        id=rec.id,
        rootfs=rootfs,
        args=[rec.path, *rec.args],
        env=env,
        cwd=cwd,
        uid=user.uid,
        gid=user.gid,
        additional_gids=user.additional_gids,
        hostname=cfg.get("Hostname") or rec.id[:12],
        domainname=cfg.get("Domainname") or "",
        terminal=bool(cfg.get("Tty")),
        read_only=bool(hc.get("ReadonlyRootfs")),
        cap_add=list(hc.get("CapAdd") or []),
        cap_drop=list(hc.get("CapDrop") or []),
        privileged=bool(hc.get("Privileged")),
        no_new_privileges=sec.no_new_privileges,
        seccomp=sec.seccomp,
        systempaths_unconfined=sec.systempaths_unconfined,
        mounts=mounts,
        tmpfs=tmpfs,
        devices=[
            Device(d.get("PathOnHost", ""), d.get("PathInContainer", ""), d.get("CgroupPermissions", "rwm"))
            for d in hc.get("Devices") or []
        ],
        device_cgroup_rules=list(hc.get("DeviceCgroupRules") or []),
        ulimits=[Ulimit(u["Name"], int(u["Soft"]), int(u["Hard"])) for u in hc.get("Ulimits") or []],
        sysctls=dict(hc.get("Sysctls") or {}),
        shm_size=int(hc.get("ShmSize") or 0),
        resources=Resources(
            memory=int(hc.get("Memory") or 0),
            memory_swap=int(hc.get("MemorySwap") or 0),
            memory_reservation=int(hc.get("MemoryReservation") or 0),
            memory_swappiness=(None if hc.get("MemorySwappiness") in (None, -1)
                               else int(hc["MemorySwappiness"])),
            cpu_shares=int(hc.get("CpuShares") or 0),
            cpu_quota=int(hc.get("CpuQuota") or 0),
            cpu_period=int(hc.get("CpuPeriod") or 0),
            nano_cpus=int(hc.get("NanoCpus") or 0),
            cpuset_cpus=hc.get("CpusetCpus") or "",
            cpuset_mems=hc.get("CpusetMems") or "",
            pids_limit=None if hc.get("PidsLimit") is None else int(hc["PidsLimit"]),
            blkio_weight=int(hc.get("BlkioWeight") or 0),
            oom_kill_disable=bool(hc.get("OomKillDisable")),
        ),
        cgroup_parent=hc.get("CgroupParent") or "/berth",
        oom_score_adj=int(hc["OomScoreAdj"]) if hc.get("OomScoreAdj") else None,
        network=network,
        pid=_namespace(hc.get("PidMode") or "", pid_of, "pid"),
        ipc=_namespace(hc.get("IpcMode") or "", pid_of, "ipc"),
        uts=_namespace(hc.get("UTSMode") or "", pid_of, "uts"),
        masked_paths=hc.get("MaskedPaths"),
        readonly_paths=hc.get("ReadonlyPaths"),
        init=bool(init),
    )


def stop_signal(rec: ContainerRecord) -> int:
    """Config.StopSignal as a number (SIGTERM when unset)."""
    return parse_signal(rec.config.get("StopSignal") or "SIGTERM")


def in_root(rootfs: str, path: str) -> str:
    """Re-exported helper: host path of ``path`` inside ``rootfs``."""
    return resolve_in_root(rootfs, path)
