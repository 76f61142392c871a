"""berthd's command line and daemon.json: dockerd-style flags merged into one DaemonConfig."""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SERVICES", "ConfigError", "DaemonConfig", "parse_args"]

# Services a --service flag may name; "gateway" is the REST front end.
SERVICES = ("events", "images", "containers", "networks", "volumes", "registry", "gateway")

DEFAULT_DATA_ROOT = "/var/lib/berth"
DEFAULT_EXEC_ROOT = "/run/berth"
DEFAULT_CONFIG_FILE = "/etc/berth/daemon.json"

# daemon.json keys we support -> attribute names.
_FILE_KEYS = {
    "registry-mirrors": "registry_mirrors",
    "insecure-registries": "insecure_registries",
    "default-address-pools": "default_address_pools",
    "bip": "bip",
    "bridge": "bridge",
    "log-driver": "log_driver",
    "log-opts": "log_opts",
    "max-concurrent-downloads": "max_concurrent_downloads",
    "data-root": "data_root",
    "exec-root": "exec_root",
    "hosts": "hosts",
    "debug": "debug",
    "log-level": "log_level",
    "tls": "tls",
    "tlsverify": "tlsverify",
    "tlscacert": "tlscacert",
    "tlscert": "tlscert",
    "tlskey": "tlskey",
    "certs-dir": "certs_dir",
}


class ConfigError(Exception):
    """Raised for a bad flag or daemon.json; the message is shown to the user as is."""


@dataclass(slots=True)
class DaemonConfig:
    """Everything berthd needs to start, after flags and daemon.json are merged."""

    data_root: Path = Path(DEFAULT_DATA_ROOT)
    exec_root: Path = Path(DEFAULT_EXEC_ROOT)
    hosts: list[str] = field(default_factory=list)
    tls: bool | None = None
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    state_url: str = ""
    service: str = ""
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    default_address_pools: list[dict[str, Any]] = field(default_factory=list)
    # The default "bridge" network: its Linux bridge and gateway/subnet ("" = see effective_bridge).
    bridge: str = ""
    bip: str = ""
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    max_concurrent_downloads: int = 3
    # Per-registry CAs and client certificates: <certs_dir>/<host:port>/{ca.crt,client.cert,client.key}.
    certs_dir: Path = Path("/etc/berth/certs.d")
    debug: bool = False
    log_level: str = "info"
    config_file: str = ""

    @property
    def grpc_socket(self) -> Path:
        """The gRPC socket of this process: berthd.sock embedded, <service>.sock split."""
        return self.exec_root / f"{self.service or 'berthd'}.sock"

    def service_socket(self, name: str) -> Path:
        """Where service NAME listens in split mode."""
        return self.exec_root / f"{name}.sock"

    def effective_state_url(self) -> str:
        return self.state_url or f"sqlite+aiosqlite:///{self.data_root / 'state.db'}"

    def effective_bridge(self) -> str:
        """berth0 for the default exec root; another exec root gets its own name, so two daemons
        on one host never share a bridge or an nft table unless told to."""
        if self.bridge:
            return self.bridge
        if self.exec_root == Path(DEFAULT_EXEC_ROOT):
            return "berth0"
        return "berth" + hashlib.sha256(str(self.exec_root).encode()).hexdigest()[:8]

    def effective_hosts(self) -> list[str]:
        return self.hosts or [f"unix://{self.exec_root / 'berth.sock'}"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="berthd", description="berth: a Docker-compatible container engine daemon."
    )
    p.add_argument("--data-root", help=f"root of persistent state (default {DEFAULT_DATA_ROOT})")
    p.add_argument("--exec-root", help=f"root of runtime state and sockets (default {DEFAULT_EXEC_ROOT})")
    p.add_argument("-H", "--host", action="append", dest="hosts",
                   help="API socket to listen on: unix:///path or tcp://host:port (repeatable)")
    p.add_argument("--tls", nargs="?", const="true", help="use TLS; implied by --tlsverify")
    p.add_argument("--tlsverify", nargs="?", const="true",
                   help="use TLS and verify the remote (client certificates)")
    p.add_argument("--tlscacert", help="trust certs signed only by this CA")
    p.add_argument("--tlscert", help="path to TLS certificate file")
    p.add_argument("--tlskey", help="path to TLS key file")
    p.add_argument("--config-file", help=f"daemon.json path (default {DEFAULT_CONFIG_FILE})")
    p.add_argument("--state-url", help="state store URL (default sqlite in the data root; "
                   "postgresql+asyncpg://... to share state between hosts)")
    p.add_argument("--service", choices=SERVICES,
                   help="split mode: run only this service (default: all, embedded)")
    p.add_argument("--registry-mirror", action="append", dest="registry_mirrors")
    p.add_argument("--insecure-registry", action="append", dest="insecure_registries")
    p.add_argument("--log-driver")
    p.add_argument("--log-opt", action="append", dest="log_opts")
    p.add_argument("--max-concurrent-downloads", type=int)
    p.add_argument("-b", "--bridge", help="Linux bridge of the default bridge network (default berth0)")
    p.add_argument("--bip", help="gateway address and subnet of the default bridge, e.g. 10.200.0.1/24")
    p.add_argument("--default-address-pool", action="append", dest="default_address_pools",
                   help="address pool for new networks: base=10.0.0.0/8,size=24 (repeatable)")
    p.add_argument("--certs-dir", help="per-registry TLS files, as /etc/docker/certs.d "
                   "(default /etc/berth/certs.d)")
    p.add_argument("-D", "--debug", action="store_true", default=None)
    p.add_argument("-l", "--log-level", choices=["debug", "info", "warn", "error", "fatal"])
    return p


def _bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).lower()
    if s in ("1", "true", "yes"):
        return True
    if s in ("0", "false", "no"):
        return False
    raise ConfigError(f"invalid boolean value {v!r} for {name}")


def _load_file(path: Path, explicit: bool) -> dict[str, Any]:
    try:
        raw = path.read_text()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"unable to configure the daemon: open {path}: no such file") from None
        return {}
    except OSError as e:
        raise ConfigError(f"unable to read {path}: {e}") from None
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as e:
        raise ConfigError(f"invalid daemon configuration file {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid daemon configuration file {path}: not a JSON object")
    unknown = sorted(set(data) - set(_FILE_KEYS))
    if unknown:
        raise ConfigError(
            "the following directives don't match any configuration option: " + ", ".join(unknown)
        )
    return data


def parse_args(argv: list[str] | None = None) -> DaemonConfig:
    """Parse flags and daemon.json into a DaemonConfig.

    Raises:
        ConfigError: unknown daemon.json keys, a directive given both as flag and in the file,
            or values of the wrong type.
    """
    ns = _parser().parse_args(argv)
    flags: dict[str, Any] = {k: v for k, v in vars(ns).items() if v is not None}
    cfg_path = Path(flags.pop("config_file", DEFAULT_CONFIG_FILE))
    file_data = _load_file(cfg_path, explicit="config_file" in vars(ns) and ns.config_file is not None)
    cfg = DaemonConfig(config_file=str(cfg_path))
    clashes = sorted(k for k, attr in _FILE_KEYS.items() if k in file_data and attr in flags)
    if clashes:
        raise ConfigError(
            "the following directives are specified both as a flag and in the configuration file: "
            + ", ".join(f"{k}: (from flag: {flags[_FILE_KEYS[k]]}, from file: {file_data[k]})"
                        for k in clashes)
        )
    merged: dict[str, Any] = {_FILE_KEYS[k]: v for k, v in file_data.items()}
    merged.update(flags)
    for key, value in merged.items():
        _apply(cfg, key, value)
    if cfg.tlsverify:
        cfg.tls = True
    return cfg


def _apply(cfg: DaemonConfig, key: str, value: Any) -> None:
    if key in ("data_root", "exec_root", "certs_dir"):
        p = Path(str(value))
        if not p.is_absolute():
            raise ConfigError(f"--{key.replace('_', '-')} must be an absolute path: {value}")
        setattr(cfg, key, p)
    elif key in ("tls", "tlsverify", "debug"):
        setattr(cfg, key, _bool(key, value))
    elif key == "max_concurrent_downloads":
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"invalid max-concurrent-downloads: {value!r}") from None
        if n < 1:
            raise ConfigError(f"invalid max-concurrent-downloads: {n}")
        cfg.max_concurrent_downloads = n
    elif key == "log_opts":
        if isinstance(value, dict):
            cfg.log_opts = {str(k): str(v) for k, v in value.items()}
        else:
            for item in value:
                k, sep, v = str(item).partition("=")
                if not sep:
                    raise ConfigError(f"invalid log-opt {item!r}: expected key=value")
                cfg.log_opts[k] = v
    elif key == "default_address_pools":
        if not isinstance(value, list):
            raise ConfigError("default-address-pools must be a list")
        cfg.default_address_pools = [_pool(v) for v in value]
    elif key == "bridge":
        if not isinstance(value, str) or not 0 < len(value) <= 15 or "/" in value or " " in value:
            raise ConfigError(f"invalid bridge name {value!r}: 1 to 15 characters, no '/' or space")
        cfg.bridge = value
    elif key in ("hosts", "registry_mirrors", "insecure_registries"):
        if not isinstance(value, list):
            raise ConfigError(f"{key.replace('_', '-')} must be a list")
        setattr(cfg, key, list(value))
    elif key == "log_driver":
        if value not in ("json-file", "local", "none"):
            raise ConfigError(f"logger: no log driver named '{value}' is registered")
        cfg.log_driver = str(value)
    else:
        setattr(cfg, key, value if not isinstance(value, str) else str(value))


def _pool(value: Any) -> dict[str, Any]:
    """One default-address-pools entry from daemon.json (a dict) or the flag (base=..,size=..)."""
    if isinstance(value, dict):
        raw = {str(k): v for k, v in value.items()}
    else:
        raw = {}
        for part in str(value).split(","):
            k, sep, v = part.partition("=")
            if not sep:
                raise ConfigError(f"invalid default-address-pool {value!r}: expected base=<cidr>,size=<n>")
            raw[k.strip()] = v.strip()
    if set(raw) - {"base", "size"} or "base" not in raw or "size" not in raw:
        raise ConfigError(f"invalid default-address-pool {value!r}: expected base and size")
    try:
        return {"base": str(raw["base"]), "size": int(raw["size"])}
    except (TypeError, ValueError):
        raise ConfigError(f"invalid default-address-pool size {raw['size']!r}") from None
