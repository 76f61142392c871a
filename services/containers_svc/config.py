"""Pure container-config rules: image defaults merged in, create-time validation, signals, restarts."""

from __future__ import annotations

import os
import signal as _signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import errdefs
from containers_svc import logrotate

__all__ = [
    "DEFAULT_PATH",
    "RestartBackoff",
    "RestartPolicy",
    "command_of",
    "merge_image_config",
    "network_settings_for",
    "normalize_host_config",
    "parse_signal",
    "restart_policy",
    "should_restart",
    "signal_name",
    "validate_host_config",
    "validate_log_config",
]

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MIN_MEMORY = 6 * 1024 * 1024  # moby linuxMinMemory
_POLICIES = ("no", "always", "on-failure", "unless-stopped")


def _env_key(entry: str) -> str:
    return entry.split("=", 1)[0]


def merge_image_config(user: Mapping[str, Any], image: Mapping[str, Any]) -> dict[str, Any]:
    """Docker's merge of the image's config into the request's Config (moby daemon merge()).

    Entrypoint given (non-empty) -> the image's Cmd is dropped unless Cmd is given; Entrypoint
    absent (None) -> the image's; Env: the request's entries, then the image's whose keys the
    request did not set; Labels, ExposedPorts and Volumes: the image's overlaid by the request's;
    WorkingDir, User, StopSignal, Healthcheck, Shell, OnBuild from the image when not set.
    """
    out: dict[str, Any] = dict(user)
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = list(image.get("Cmd") or []) or None
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = list(image.get("Entrypoint") or []) or None
    out.setdefault("Cmd", None)
    out.setdefault("Entrypoint", None)
    env = list(out.get("Env") or [])
    keys = {_env_key(e) for e in env}
    for entry in image.get("Env") or []:
        if _env_key(entry) not in keys:
            env.append(entry)
    out["Env"] = env
    for key in ("Labels", "ExposedPorts", "Volumes"):
        merged = {**(image.get(key) or {}), **(out.get(key) or {})}
        out[key] = merged if merged or key == "Labels" else None
    for key in ("WorkingDir", "User", "StopSignal", "Shell", "OnBuild", "Domainname"):
        if not out.get(key) and image.get(key):
            out[key] = image[key]
    if not out.get("Healthcheck") and image.get("Healthcheck"):
        out["Healthcheck"] = image["Healthcheck"]
    elif out.get("Healthcheck") and image.get("Healthcheck"):
        # moby merge(): unset parts of the request's healthcheck come from the image's
        merged = dict(out["Healthcheck"])
        for key in ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
            if not merged.get(key) and image["Healthcheck"].get(key):
                merged[key] = image["Healthcheck"][key]
        out["Healthcheck"] = merged
    for key in ("Hostname", "Domainname", "User", "WorkingDir"):
        out.setdefault(key, "")
        if out[key] is None:
            out[key] = ""
    for key in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
        out[key] = bool(out.get(key, False))
    wd = out["WorkingDir"]
    if wd and not wd.startswith("/"):
        raise errdefs.InvalidArgument(
            f"the working directory '{wd}' is invalid, it needs to be an absolute path"
        )
    if out.get("StopSignal"):
        parse_signal(out["StopSignal"])
    timeout = out.get("StopTimeout")
    if timeout is not None and not isinstance(timeout, int):
        raise errdefs.InvalidArgument("StopTimeout must be an integer")
    return out


def command_of(config: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Path and Args of the main process: Entrypoint + Cmd.

    Raises:
        errdefs.InvalidArgument: "No command specified" when both are empty.
    """
    argv = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    if not argv:
        raise errdefs.InvalidArgument("No command specified")
    return argv[0], argv[1:]


# ---- signals --------------------------------------------------------------------------------


def parse_signal(value: str | int) -> int:
    """Signal number from "SIGTERM", "TERM", "term", "15" or 15 (moby signal.ParseSignal).

    Raises:
        errdefs.InvalidArgument: ``Invalid signal: x``.
    """
    if isinstance(value, int):
        num = value
    else:
        text = value.strip()
        if text.isdigit():
            num = int(text)
        else:
            name = text.upper()
            if not name.startswith("SIG"):
                name = "SIG" + name
            if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
                base, _, off = name[3:].partition("+" if "+" in name else "-")
                if not off.isdigit():
                    raise errdefs.InvalidArgument(f"Invalid signal: {value}")
                root = _signal.SIGRTMIN if base == "RTMIN" else _signal.SIGRTMAX
                num = int(root) + int(off) if base == "RTMIN" else int(root) - int(off)
            else:
                try:
                    num = int(_signal.Signals[name])
                except KeyError:
                    raise errdefs.InvalidArgument(f"Invalid signal: {value}") from None
    if not 0 < num <= int(_signal.SIGRTMAX):
        raise errdefs.InvalidArgument(f"Invalid signal: {value}")
    return num


def signal_name(num: int) -> str:
    """"SIGTERM" for 15; the number as text when it has no name."""
    try:
        return _signal.Signals(num).name
    except ValueError:
        return str(num)


# ---- host config ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """HostConfig.RestartPolicy, normalised ("" -> "no")."""

    name: str = "no"
    maximum_retry_count: int = 0


def restart_policy(host_config: Mapping[str, Any]) -> RestartPolicy:
    """Parse and validate HostConfig.RestartPolicy with moby's texts.

    Raises:
        errdefs.InvalidArgument: unknown policy, a retry count with another policy, negative count.
    """
    raw = host_config.get("RestartPolicy") or {}
    name = raw.get("Name") or "no"
    count = int(raw.get("MaximumRetryCount") or 0)
    if name not in _POLICIES:
        raise errdefs.InvalidArgument(
            f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
            "'on-failure', or 'unless-stopped'"
        )
    if count < 0:
        raise errdefs.InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise errdefs.InvalidArgument(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        )
    return RestartPolicy(name, count)


def normalize_host_config(host_config: Mapping[str, Any]) -> dict[str, Any]:
    """HostConfig with Docker's defaults filled in (NetworkMode, RestartPolicy, LogConfig ...)."""
    hc: dict[str, Any] = dict(host_config)
    if hc.get("NetworkMode") in (None, "", "default"):
        hc["NetworkMode"] = "bridge"
    pol = restart_policy(hc)
    hc["RestartPolicy"] = {"Name": pol.name, "MaximumRetryCount": pol.maximum_retry_count}
    log_cfg = dict(hc.get("LogConfig") or {})
    hc["LogConfig"] = {"Type": log_cfg.get("Type") or "json-file", "Config": log_cfg.get("Config") or {}}
    for key in ("Binds", "CapAdd", "CapDrop", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts",
                "GroupAdd", "Links", "VolumesFrom", "SecurityOpt", "Mounts"):  # fmt: skip
        if key in hc and hc[key] is None:
            hc[key] = None
    hc["AutoRemove"] = bool(hc.get("AutoRemove", False))
    hc["Privileged"] = bool(hc.get("Privileged", False))
    hc["ReadonlyRootfs"] = bool(hc.get("ReadonlyRootfs", False))
    hc.setdefault("ShmSize", 64 * 1024 * 1024)
    if not hc["ShmSize"]:
        hc["ShmSize"] = 64 * 1024 * 1024
    return hc


def validate_host_config(hc: Mapping[str, Any], ncpu: int | None = None) -> list[str]:
    """Docker's create-time checks of HostConfig (moby verifyContainerSettings); returns warnings.

    Raises:
        errdefs.InvalidArgument: with moby's texts.
    """
    warnings: list[str] = []
    pol = restart_policy(hc)
    if hc.get("AutoRemove") and pol.name != "no":
        raise errdefs.InvalidArgument("can't create 'AutoRemove' container with restart policy")
    memory = int(hc.get("Memory") or 0)
    if memory != 0 and memory < MIN_MEMORY:
        raise errdefs.InvalidArgument("Minimum memory limit allowed is 6MB")
    swap = int(hc.get("MemorySwap") or 0)
    if memory > 0 and swap > 0 and swap < memory:
        raise errdefs.InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if swap > 0 and memory == 0:
        raise errdefs.InvalidArgument(
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        )
    reservation = int(hc.get("MemoryReservation") or 0)
    if reservation != 0 and reservation < MIN_MEMORY:
        raise errdefs.InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise errdefs.InvalidArgument(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= int(swappiness) <= 100:
        raise errdefs.InvalidArgument(
            f"Invalid value: {swappiness}, valid memory swappiness range is 0-100"
        )
    nano = int(hc.get("NanoCpus") or 0)
    cpus = ncpu if ncpu is not None else (os.cpu_count() or 1)
    if nano and (nano < 0 or nano > cpus * 1_000_000_000):
        raise errdefs.InvalidArgument(
            f"Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
        )
    if nano and int(hc.get("CpuPeriod") or 0):
        raise errdefs.InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano and int(hc.get("CpuQuota") or 0):
        raise errdefs.InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    period = int(hc.get("CpuPeriod") or 0)
    if period and not 1000 <= period <= 1_000_000:
        raise errdefs.InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s")
    quota = int(hc.get("CpuQuota") or 0)
    if quota > 0 and quota < 1000:
        raise errdefs.InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if int(hc.get("CpuShares") or 0) < 0:
        raise errdefs.InvalidArgument("invalid CPU shares: must be a positive value")
    weight = int(hc.get("BlkioWeight") or 0)
    if weight and not 10 <= weight <= 1000:
        raise errdefs.InvalidArgument("Range of blkio weight is from 10 to 1000")
    oom = int(hc.get("OomScoreAdj") or 0)
    if not -1000 <= oom <= 1000:
        raise errdefs.InvalidArgument(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    if int(hc.get("ShmSize") or 0) < 0:
        raise errdefs.InvalidArgument("SHM size can not be less than 0")
    for opt in hc.get("SecurityOpt") or []:
        parse_security_opt(opt)
    validate_log_config(hc.get("LogConfig") or {})
    return warnings


def validate_log_config(log_config: Mapping[str, Any]) -> None:
    """moby's logger.ValidateLogOpts: mode, driver and its options, with moby's texts.

    Raises:
        errdefs.InvalidArgument: with moby's texts.
    """
    logrotate.settings_of(log_config)


@dataclass(frozen=True, slots=True)
class SecurityOpts:
    """What HostConfig.SecurityOpt asks for."""

    seccomp: str = "default"
    no_new_privileges: bool = False
    systempaths_unconfined: bool = False


def parse_security_opt(opt: str, into: SecurityOpts | None = None) -> SecurityOpts:
    """Apply one ``--security-opt`` entry (moby parseSecurityOpt).

    Raises:
        errdefs.InvalidArgument: ``Invalid --security-opt: "x"``.
    """
    cur = into or SecurityOpts()
    if opt == "no-new-privileges":
        return SecurityOpts(cur.seccomp, True, cur.systempaths_unconfined)
    key, sep, value = opt.partition("=")
    if not sep:
        key, sep, value = opt.partition(":")
    if not sep:
        raise errdefs.InvalidArgument(f'Invalid --security-opt: "{opt}"')
    if key == "no-new-privileges":
        if value not in ("true", "false", "1", "0"):
            raise errdefs.InvalidArgument(f'invalid --security-opt 2: "{opt}"')
        return SecurityOpts(cur.seccomp, value in ("true", "1"), cur.systempaths_unconfined)
    if key == "seccomp":
        return SecurityOpts(value or "default", cur.no_new_privileges, cur.systempaths_unconfined)
    if key == "systempaths":
        if value != "unconfined":
            raise errdefs.InvalidArgument(f'invalid --security-opt 2: "{opt}"')
        return SecurityOpts(cur.seccomp, cur.no_new_privileges, True)
    if key in ("apparmor", "label"):
        return cur  # no AppArmor/SELinux here: accepted, nothing to apply
    raise errdefs.InvalidArgument(f'Invalid --security-opt: "{opt}"')


def security_opts(hc: Mapping[str, Any]) -> SecurityOpts:
    """All of HostConfig.SecurityOpt folded together."""
    cur = SecurityOpts()
    for opt in hc.get("SecurityOpt") or []:
        cur = parse_security_opt(opt, cur)
    return cur


# ---- restart policy -------------------------------------------------------------------------

BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 10.0


class RestartBackoff:
    """moby's restartmanager delay: 100 ms doubling to 1 min, reset after 10 s of running."""

    def __init__(self) -> None:
        self.delay = 0.0

    def next_delay(self, ran_for: float) -> float:
        """The wait before the next restart, given how long the last run lasted (seconds)."""
        if ran_for >= BACKOFF_RESET_AFTER:
            self.delay = 0.0
        if self.delay == 0.0:
            self.delay = BACKOFF_START
        elif self.delay < BACKOFF_MAX:
            self.delay *= 2
        self.delay = min(self.delay, BACKOFF_MAX)
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0


def should_restart(policy: RestartPolicy, exit_code: int, manual_stop: bool, restart_count: int) -> bool:
    """moby ShouldRestart: whether the policy restarts after this exit."""
    if manual_stop or policy.name == "no":
        return False
    if policy.name in ("always", "unless-stopped"):
        return True
    if policy.name == "on-failure":
        limit = policy.maximum_retry_count
        return exit_code != 0 and (limit == 0 or restart_count < limit)
    return False


def network_settings_for(mode: str) -> dict[str, Any]:
    """Docker's NetworkSettings for a container in ``mode`` before the networks service joins in.

    NOTE: "bridge" is recorded as "none" until the networks service attaches endpoints.
    """
    net = "none" if mode in ("none", "bridge") else mode.split(":", 1)[0]
    endpoint = {
        "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
        "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None,
    }  # fmt: skip
    return {
        "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": False,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
        "Networks": {} if net == "container" else {net: endpoint},
    }  # fmt: skip
