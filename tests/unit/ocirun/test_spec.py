"""build_oci_spec produces Docker's defaults and rejects bad input with Docker's wording."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import pytest

import errdefs
from ocirun import seccomp as sc
from ocirun.host import CAPABILITIES, HostFacts, cgroup_layout_from_mountinfo, parse_cap_mask
from ocirun.spec import (
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    ContainerSpec,
    Mount,
    Namespace,
    Resources,
    Ulimit,
    build_exec_process,
    build_oci_spec,
)

SYSTEM_PROFILE = "/usr/share/containers/seccomp.json"
NO_RESOURCE = tuple(c for c in CAPABILITIES if c != "CAP_SYS_RESOURCE")


def host(**kw: Any) -> HostFacts:
    base: dict[str, Any] = dict(
        cgroup_layout="hybrid",
        runtimes={"crun": "/usr/bin/crun"},
        conmon_path="/usr/bin/conmon",
        catatonit_path="/usr/bin/catatonit",
        rlimit_hard={"RLIMIT_NOFILE": 20000, "RLIMIT_NPROC": resource.RLIM_INFINITY},
        seccomp_profile_path=SYSTEM_PROFILE,
        kernel_release="6.1.0",
        capabilities=NO_RESOURCE,
    )
    base.update(kw)
    return HostFacts(**base)


def spec(**kw: Any) -> ContainerSpec:
    base: dict[str, Any] = dict(id="c1", rootfs="/r", args=["true"])
    base.update(kw)
    return ContainerSpec(**base)


def caps_of(cfg: dict[str, Any]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = cfg["process"]["capabilities"]
    return result


def mount_at(cfg: dict[str, Any], dest: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [m for m in cfg["mounts"] if m["destination"] == dest]
    assert len(found) == 1, found
    return found[0]


def test_default_capabilities_mask_is_dockers() -> None:
    cfg = build_oci_spec(spec(), host())
    caps = caps_of(cfg)
    assert caps["inheritable"] == [] and caps["ambient"] == []
    for key in ("bounding", "effective", "permitted"):
        assert sorted(caps[key]) == sorted(DEFAULT_CAPABILITIES)
    mask = sum(1 << CAPABILITIES.index(c) for c in caps["effective"])
    assert f"{mask:016x}" == "00000000a80425fb"
    assert sorted(parse_cap_mask(0xA80425FB)) == sorted(DEFAULT_CAPABILITIES)


def test_cap_add_drop_and_all() -> None:
    cfg = build_oci_spec(spec(cap_add=["net_admin"], cap_drop=["MKNOD", "cap_chown"]), host())
    eff = caps_of(cfg)["effective"]
    assert "CAP_NET_ADMIN" in eff and "CAP_MKNOD" not in eff and "CAP_CHOWN" not in eff
    cfg = build_oci_spec(spec(cap_drop=["ALL"], cap_add=["NET_RAW"]), host())
    assert caps_of(cfg)["bounding"] == ["CAP_NET_RAW"]
    cfg = build_oci_spec(spec(cap_add=["ALL"], cap_drop=["SYS_ADMIN"]), host())
    bnd = caps_of(cfg)["bounding"]
    assert "CAP_SYS_ADMIN" not in bnd and "CAP_SYS_MODULE" in bnd
    # ALL is what this host can grant: CAP_SYS_RESOURCE is not in its bounding set.
    assert "CAP_SYS_RESOURCE" not in bnd


def test_unknown_and_unavailable_capability() -> None:
    with pytest.raises(errdefs.InvalidArgument, match=r'^unknown capability: "CAP_FOO"$'):
        build_oci_spec(spec(cap_add=["foo"]), host())
    with pytest.raises(errdefs.InvalidArgument, match="not available in the current environment"):
        build_oci_spec(spec(cap_add=["SYS_RESOURCE"]), host())


def test_masked_readonly_and_systempaths() -> None:
    cfg = build_oci_spec(
        spec(), host(thermal_throttle_paths=("/sys/devices/system/cpu/cpu0/thermal_throttle",))
    )
    assert set(DEFAULT_MASKED_PATHS) <= set(cfg["linux"]["maskedPaths"])
    assert "/proc/kcore" in cfg["linux"]["maskedPaths"]
    assert "/sys/devices/system/cpu/cpu0/thermal_throttle" in cfg["linux"]["maskedPaths"]
    assert cfg["linux"]["readonlyPaths"] == list(DEFAULT_READONLY_PATHS)
    cfg = build_oci_spec(spec(systempaths_unconfined=True), host())
    assert cfg["linux"]["maskedPaths"] == [] and cfg["linux"]["readonlyPaths"] == []
    cfg = build_oci_spec(spec(masked_paths=["/proc/x"], readonly_paths=[]), host())
    assert cfg["linux"]["maskedPaths"] == ["/proc/x"] and cfg["linux"]["readonlyPaths"] == []


def test_default_mounts() -> None:
    cfg = build_oci_spec(spec(), host())
    assert mount_at(cfg, "/proc")["type"] == "proc"
    assert mount_at(cfg, "/dev")["type"] == "tmpfs"
    assert "newinstance" in mount_at(cfg, "/dev/pts")["options"]
    assert f"size={64 * 1024 * 1024}" in mount_at(cfg, "/dev/shm")["options"]
    assert mount_at(cfg, "/dev/mqueue")["type"] == "mqueue"
    assert "ro" in mount_at(cfg, "/sys")["options"]
    assert "ro" in mount_at(cfg, "/sys/fs/cgroup")["options"]
    assert cfg["root"] == {"path": "/r", "readonly": False}
    cfg = build_oci_spec(spec(shm_size=1 << 20), host())
    assert "size=1048576" in mount_at(cfg, "/dev/shm")["options"]


def test_default_device_rules() -> None:
    rules = build_oci_spec(spec(), host())["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    allowed = {(r["major"], r["minor"]) for r in rules if r["allow"]}
    assert allowed == {(1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)}
    assert {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"} in rules


def test_read_only_rootfs() -> None:
    cfg = build_oci_spec(spec(read_only=True, tmpfs={"/run": "size=1m"}), host())
    assert cfg["root"]["readonly"] is True
    for dest in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"):
        assert "ro" not in mount_at(cfg, dest)["options"], dest
    assert "ro" in mount_at(cfg, "/sys")["options"]
    run = mount_at(cfg, "/run")
    assert run["type"] == "tmpfs" and "noexec" in run["options"] and "size=1m" in run["options"]


def test_rlimits_clamped_to_host_hard_limit() -> None:
    cfg = build_oci_spec(spec(), host())
    nofile = [r for r in cfg["process"]["rlimits"] if r["type"] == "RLIMIT_NOFILE"]
    assert nofile == [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]
    cfg = build_oci_spec(spec(ulimits=[Ulimit("nofile", 1024, 50000), Ulimit("nproc", 10, 20)]), host())
    by = {r["type"]: r for r in cfg["process"]["rlimits"]}
    assert by["RLIMIT_NOFILE"] == {"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 1024}
    assert by["RLIMIT_NPROC"]["hard"] == 20 and by["RLIMIT_NPROC"]["soft"] == 10
    with pytest.raises(errdefs.InvalidArgument, match="invalid ulimit type: bogus"):
        build_oci_spec(spec(ulimits=[Ulimit("bogus", 1, 1)]), host())
    with pytest.raises(errdefs.InvalidArgument, match="soft limit must be less than or equal"):
        build_oci_spec(spec(ulimits=[Ulimit("nofile", 10, 5)]), host())


def test_network_sysctls_only_with_private_netns() -> None:
    want = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}
    assert build_oci_spec(spec(), host())["linux"]["sysctl"] == want
    joined = build_oci_spec(spec(network=Namespace("join", "/run/berth/netns/x")), host())
    assert joined["linux"]["sysctl"] == want
    assert {"type": "network", "path": "/run/berth/netns/x"} in joined["linux"]["namespaces"]
    hostnet = build_oci_spec(spec(network=Namespace("host")), host())
    assert "sysctl" not in hostnet["linux"]
    assert all(n["type"] != "network" for n in hostnet["linux"]["namespaces"])
    shared = build_oci_spec(spec(network=Namespace("container", "/proc/1/ns/net")), host())
    assert "sysctl" not in shared["linux"]
    with pytest.raises(errdefs.InvalidArgument, match="not allowed in host network namespace"):
        build_oci_spec(spec(network=Namespace("host"), sysctls={"net.ipv4.ip_forward": "1"}), host())
    with pytest.raises(errdefs.InvalidArgument, match="is not allowed"):
        build_oci_spec(spec(sysctls={"kernel.panic": "1"}), host())


def test_privileged() -> None:
    cfg = build_oci_spec(spec(privileged=True), host())
    assert caps_of(cfg)["bounding"] == list(NO_RESOURCE)
    assert cfg["linux"]["maskedPaths"] == [] and cfg["linux"]["readonlyPaths"] == []
    assert cfg["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert any(d["path"] == "/dev/null" for d in cfg["linux"]["devices"])
    assert "seccomp" not in cfg["linux"]
    assert "rw" in mount_at(cfg, "/sys")["options"]


def test_seccomp_default_is_moby_semantics() -> None:
    cfg = build_oci_spec(spec(), host())
    sec = cfg["linux"]["seccomp"]
    assert sec["defaultAction"] == "SCMP_ACT_ERRNO" and sec["defaultErrnoRet"] == 1
    assert sec["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = {
        n
        for r in sec["syscalls"]
        if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
        for n in r["names"]
    }
    for name in ("unshare", "mount", "setns", "keyctl", "clone3", "pivot_root", "bpf"):
        assert name not in allowed, name
    assert {"read", "write", "chroot", "ptrace"} <= allowed
    clone = [r for r in sec["syscalls"] if r["names"] == ["clone"]]
    assert clone and clone[0]["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    assert any(r["names"] == ["clone3"] and r.get("errnoRet") == 38 for r in sec["syscalls"])
    # With CAP_SYS_ADMIN the namespace syscalls are allowed, as in moby.
    admin = build_oci_spec(spec(cap_add=["SYS_ADMIN"]), host())["linux"]["seccomp"]
    admin_allowed = {n for r in admin["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert {"unshare", "mount", "setns", "clone3"} <= admin_allowed


def test_seccomp_unconfined_custom_and_malformed() -> None:
    assert "seccomp" not in build_oci_spec(spec(seccomp="unconfined"), host())["linux"]
    custom = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["acct"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_PACCT"]}},
        ],
    }
    sec = build_oci_spec(spec(seccomp=json.dumps(custom)), host())["linux"]["seccomp"]
    assert sec["defaultAction"] == "SCMP_ACT_ALLOW"
    assert sec["syscalls"] == [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]
    with pytest.raises(errdefs.InvalidArgument, match=r"^Decoding seccomp profile failed: "):
        build_oci_spec(spec(seccomp="{not json"), host())
    with pytest.raises(errdefs.InvalidArgument, match="use either 'architectures' or 'archMap'"):
        build_oci_spec(
            spec(
                seccomp=json.dumps(
                    {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x"], "archMap": [{}]}
                )
            ),
            host(),
        )


def test_default_profile_from_system_file_is_valid_docker_format() -> None:
    base = json.loads(Path(SYSTEM_PROFILE).read_text())
    assert base["defaultErrnoRet"] == 38  # what we correct
    prof = sc.default_profile(base)
    assert prof["defaultErrnoRet"] == 1 and "defaultErrno" not in prof


def test_resources_namespaces_init_and_misc() -> None:
    cfg = build_oci_spec(
        spec(
            resources=Resources(memory=64 << 20, nano_cpus=500_000_000, pids_limit=100, cpu_shares=512),
            cgroup_parent="/berth",
            init=True,
            hostname="web",
            oom_score_adj=100,
            annotations={"a": "b"},
            mounts=[Mount("/data", "bind", "/srv/data", ("ro",))],
            uid=1000,
            gid=1000,
            additional_gids=[10],
        ),
        host(),
    )
    res = cfg["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20, "swap": 128 << 20}
    assert res["cpu"] == {"period": 100000, "quota": 50000, "shares": 512}
    assert res["pids"] == {"limit": 100}
    assert cfg["linux"]["cgroupsPath"] == "/berth/c1"
    assert cfg["process"]["args"] == ["/sbin/docker-init", "--", "true"]
    assert mount_at(cfg, "/sbin/docker-init")["source"] == "/usr/bin/catatonit"
    assert mount_at(cfg, "/data")["options"] == ["rbind", "ro", "rprivate"]
    assert cfg["hostname"] == "web" and cfg["annotations"] == {"a": "b"}
    assert cfg["process"]["oomScoreAdj"] == 100
    assert cfg["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10]}
    kinds = [n["type"] for n in cfg["linux"]["namespaces"]]
    assert sorted(kinds) == ["ipc", "mount", "network", "pid", "uts"]
    with pytest.raises(errdefs.InvalidArgument, match="range for oom score adj"):
        build_oci_spec(spec(oom_score_adj=2000), host())
    with pytest.raises(errdefs.InvalidArgument, match="Minimum memory limit"):
        build_oci_spec(spec(resources=Resources(memory=1024)), host())


def test_exec_process_inherits_container_settings() -> None:
    cfg = build_oci_spec(spec(env=["A=1"]), host())
    proc = build_exec_process(cfg, ["echo", "hi"], env=["B=2"])
    assert proc["args"] == ["echo", "hi"] and proc["env"] == ["A=1", "B=2"]
    assert proc["capabilities"] == cfg["process"]["capabilities"]
    with pytest.raises(errdefs.InvalidArgument):
        build_exec_process(cfg, [])


def test_cgroup_layout_detection() -> None:
    hybrid = (
        "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    )
    assert cgroup_layout_from_mountinfo(hybrid) == ("hybrid", frozenset({"memory"}))
    assert cgroup_layout_from_mountinfo(hybrid.rsplit("41", 1)[0])[0] == "v1"
    assert cgroup_layout_from_mountinfo("30 1 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")[0] == "v2"
