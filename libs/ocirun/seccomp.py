"""Docker-semantics seccomp: the default profile (built from containers-common) and profile -> OCI.

Docker's default profile (moby/profiles ``seccomp/default.json``) is not on this machine; Debian ships
containers-common's ``/usr/share/containers/seccomp.json`` instead. :func:`default_profile` rebuilds
Docker's behaviour from it:

* ``defaultErrnoRet`` 1 (EPERM) instead of 38 (ENOSYS), ``defaultErrno`` dropped;
* syscalls that containers-common allows unconditionally but moby gates or never allows are taken
  out of the allow list (:data:`MOBY_GATED_OR_DENIED`): clone/clone3 unfiltered, mount family,
  unshare, setns, keyctl, pivot_root, reboot, syslog, pidfd_getfd, mempolicy calls …;
* moby's cap-gated rules (:data:`MOBY_CAP_RULES`), the ``clone`` namespace-flag filter, ``clone3`` ->
  ENOSYS without CAP_SYS_ADMIN, and moby's socket family allow list (no AF_ALG, AF_VSOCK …) replace
  containers-common's;
* newer syscalls moby allows that the 2022 containers-common file predates are added
  (:data:`MOBY_EXTRA_ALLOWED`).
Differences that remain: containers-common still allows a few legacy names (readdir, sigaction,
signal, sigpending, sigsuspend, syscall, timerfd) that do not exist on x86_64 anyway.

:func:`to_oci` resolves a Docker-format profile (``archMap``, ``includes``/``excludes`` by arch,
capability and minimum kernel) into the OCI ``linux.seccomp`` object for one container, as moby's
``setupSeccomp`` does.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import errdefs

__all__ = [
    "MOBY_CAP_RULES",
    "MOBY_EXTRA_ALLOWED",
    "MOBY_GATED_OR_DENIED",
    "default_profile",
    "load_profile",
    "to_oci",
]

# Allowed only when the container holds the capability (moby default.json).
MOBY_CAP_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CAP_DAC_READ_SEARCH", ("open_by_handle_at",)),
    ("CAP_SYS_ADMIN", (
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr", "mount",
        "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl", "quotactl_fd",
        "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2", "unshare",
    )),
    ("CAP_SYS_BOOT", ("reboot",)),
    ("CAP_SYS_CHROOT", ("chroot",)),
    ("CAP_SYS_MODULE", ("delete_module", "init_module", "finit_module")),
    ("CAP_SYS_PACCT", ("acct",)),
    ("CAP_SYS_PTRACE", (
        "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace",
    )),
    ("CAP_SYS_RAWIO", ("iopl", "ioperm")),
    ("CAP_SYS_TIME", ("settimeofday", "stime", "clock_settime", "clock_settime64")),
    ("CAP_SYS_TTY_CONFIG", ("vhangup",)),
    ("CAP_SYS_NICE", ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node")),
    ("CAP_SYSLOG", ("syslog",)),
    ("CAP_BPF", ("bpf",)),
    ("CAP_PERFMON", ("perf_event_open",)),
)  # fmt: skip

# moby allows these unconditionally on kernels >= 4.8, beside the CAP_SYS_PTRACE rule.
_MOBY_PTRACE_48 = ("process_vm_readv", "process_vm_writev", "ptrace")

MOBY_GATED_OR_DENIED: frozenset[str] = frozenset(
    {n for _, names in MOBY_CAP_RULES for n in names} - set(_MOBY_PTRACE_48)
    | {
        "keyctl", "add_key", "request_key", "userfaultfd", "kexec_load", "kexec_file_load",
        "io_uring_setup", "io_uring_enter", "io_uring_register", "swapon", "swapoff", "uselib",
        "nfsservctl", "vm86", "vm86old", "_sysctl", "ustat", "sysfs", "pivot_root", "socket",
        "personality",
    }
)  # fmt: skip

MOBY_EXTRA_ALLOWED: tuple[str, ...] = (
    "cachestat", "fchmodat2", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake", "getxattrat",
    "io_pgetevents", "io_pgetevents_time64", "listmount", "listxattrat", "map_shadow_stack", "mseal",
    "removexattrat", "setxattrat", "statmount", "uretprobe",
)  # fmt: skip

# Socket families moby allows (everything else, e.g. AF_ALG 38 and AF_VSOCK 40, gets EPERM).
_SOCKET_FAMILIES_EQ = (13, 14, 15, 16, 17, 18, 21, 22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 39,
                       41, 42, 43, 44, 45)  # fmt: skip
_PERSONALITY = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
# CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP
_CLONE_NS_MASK = 2114060288

# platform.machine() -> (Go arch name used by includes.arches, native SCMP arch)
_NATIVE = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "i686": ("x86", "SCMP_ARCH_X86"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
    "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
}


def _allow(names: Iterable[str], **extra: Any) -> dict[str, Any]:
    return {"names": list(names), "action": "SCMP_ACT_ALLOW", **extra}


def default_profile(base: Mapping[str, Any]) -> dict[str, Any]:
    """Docker's default profile semantics, built from the containers-common profile ``base``.

    Raises:
        errdefs.InvalidArgument: ``base`` is not a containers-common-style profile.
    """
    syscalls = base.get("syscalls")
    if not isinstance(syscalls, list):
        raise errdefs.InvalidArgument("seccomp base profile has no syscalls list")
    allowed: set[str] = set(MOBY_EXTRA_ALLOWED)
    arch_rules: list[dict[str, Any]] = []
    for rule in syscalls:
        if rule.get("action") != "SCMP_ACT_ALLOW" or rule.get("args") or rule.get("excludes"):
            continue
        inc = rule.get("includes") or {}
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not inc:
            allowed.update(names)
        elif set(inc) == {"arches"}:
            arch_rules.append(_allow(names, includes={"arches": list(inc["arches"])}))
    allowed -= MOBY_GATED_OR_DENIED
    out: list[dict[str, Any]] = [_allow(sorted(allowed))]
    out.append(_allow(_MOBY_PTRACE_48, includes={"minKernel": "4.8"}))
    out.append(_allow(["socket"], args=[{"index": 0, "value": 12, "valueTwo": 0, "op": "SCMP_CMP_LT"}]))
    out += [
        _allow(["socket"], args=[{"index": 0, "value": fam, "valueTwo": 0, "op": "SCMP_CMP_EQ"}])
        for fam in _SOCKET_FAMILIES_EQ
    ]
    out += [
        _allow(["personality"], args=[{"index": 0, "value": v, "valueTwo": 0, "op": "SCMP_CMP_EQ"}])
        for v in _PERSONALITY
    ]
    out += arch_rules
    out += [_allow(names, includes={"caps": [cap]}) for cap, names in MOBY_CAP_RULES]
    mask_arg = {"value": _CLONE_NS_MASK, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    out.append(
        _allow(
            ["clone"],
            args=[{"index": 0, **mask_arg}],
            excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]},
        )
    )
    out.append(
        _allow(
            ["clone"],
            args=[{"index": 1, **mask_arg}],
            includes={"arches": ["s390", "s390x"]},
            excludes={"caps": ["CAP_SYS_ADMIN"]},
        )
    )
    # clone3 cannot be argument-filtered: ENOSYS makes libc fall back to clone.
    out.append(
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 38,
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        }
    )
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": copy.deepcopy(base.get("archMap") or []),
        "syscalls": out,
    }


def load_profile(text: str) -> dict[str, Any]:
    """Parse a custom profile given as JSON text (``--security-opt seccomp=<json>``).

    Raises:
        errdefs.InvalidArgument: "Decoding seccomp profile failed: …" (moby's text) on bad JSON.
    """
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise errdefs.InvalidArgument(f"Decoding seccomp profile failed: {e}") from None
    if not isinstance(profile, dict):
        raise errdefs.InvalidArgument(
            f"Decoding seccomp profile failed: expected a JSON object, got {type(profile).__name__}"
        )
    return profile


def _kernel_at_least(kernel: tuple[int, int], spec: str) -> bool:
    m = re.match(r"(\d+)\.(\d+)", spec)
    if m is None:
        raise errdefs.InvalidArgument(f"seccomp: invalid minKernel version: {spec!r}")
    return kernel >= (int(m.group(1)), int(m.group(2)))


def to_oci(
    profile: Mapping[str, Any], *, caps: Iterable[str], machine: str, kernel: tuple[int, int]
) -> dict[str, Any]:
    """Resolve a Docker-format profile into OCI ``linux.seccomp`` for a container with ``caps``.

    Raises:
        errdefs.InvalidArgument: the profile is inconsistent (moby's messages).
    """
    capset = set(caps)
    goarch, native = _NATIVE.get(machine, (machine, "SCMP_ARCH_" + machine.upper()))
    if profile.get("architectures") and profile.get("archMap"):
        raise errdefs.InvalidArgument("use either 'architectures' or 'archMap'")
    if not isinstance(profile.get("defaultAction", ""), str) or not profile.get("defaultAction"):
        raise errdefs.InvalidArgument("seccomp profile has no defaultAction")
    arches: list[str] = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            arches = [native, *(entry.get("subArchitectures") or [])]
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if arches:
        out["architectures"] = arches
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(key):
            out[key] = profile[key]
    rules: list[dict[str, Any]] = []
    for rule in profile.get("syscalls") or []:
        if not isinstance(rule, dict):
            raise errdefs.InvalidArgument("Decoding seccomp profile failed: syscall entry is not an object")
        if rule.get("name") and rule.get("names"):
            raise errdefs.InvalidArgument("use either 'name' or 'names'")
        exc = rule.get("excludes") or {}
        inc = rule.get("includes") or {}
        if goarch in (exc.get("arches") or []) or capset & set(exc.get("caps") or []):
            continue
        if exc.get("minKernel") and _kernel_at_least(kernel, exc["minKernel"]):
            continue
        if inc.get("arches") and goarch not in inc["arches"]:
            continue
        if inc.get("caps") and not set(inc["caps"]) <= capset:
            continue
        if inc.get("minKernel") and not _kernel_at_least(kernel, inc["minKernel"]):
            continue
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        if not names:
            continue
        oci: dict[str, Any] = {"names": names, "action": rule.get("action", "")}
        if rule.get("errnoRet") is not None:
            oci["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            oci["args"] = [
                {
                    "index": a["index"],
                    "value": a.get("value", 0),
                    "valueTwo": a.get("valueTwo", 0),
                    "op": a["op"],
                }
                for a in rule["args"]
            ]
        rules.append(oci)
    out["syscalls"] = rules
    return out
