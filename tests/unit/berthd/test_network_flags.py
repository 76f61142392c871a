"""berthd's networking settings: --bridge/--bip/--default-address-pool and their daemon.json keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from berthd.config import ConfigError, parse_args


def _file(tmp_path: Path, data: object) -> str:
    p = tmp_path / "daemon.json"
    p.write_text(json.dumps(data))
    return str(p)


def test_flags(tmp_path: Path) -> None:
    cfg = parse_args(["--config-file", _file(tmp_path, {}), "--bridge", "bt1", "--bip", "10.200.3.1/24",
                      "--default-address-pool", "base=10.201.0.0/16,size=24"])  # fmt: skip
    assert (cfg.effective_bridge(), cfg.bip) == ("bt1", "10.200.3.1/24")
    assert cfg.default_address_pools == [{"base": "10.201.0.0/16", "size": 24}]


def test_daemon_json_keys(tmp_path: Path) -> None:
    cfg = parse_args(
        [
            "--config-file",
            _file(
                tmp_path,
                {
                    "bridge": "bt2",
                    "bip": "10.9.0.1/24",
                    "default-address-pools": [{"base": "10.8.0.0/16", "size": 26}],
                },
            ),
        ]
    )
    assert (cfg.bridge, cfg.bip) == ("bt2", "10.9.0.1/24")
    assert cfg.default_address_pools == [{"base": "10.8.0.0/16", "size": 26}]


def test_default_bridge_name_follows_the_exec_root(tmp_path: Path) -> None:
    f = _file(tmp_path, {})
    assert parse_args(["--config-file", f]).effective_bridge() == "berth0"
    other = parse_args(["--config-file", f, "--exec-root", "/tmp/x"]).effective_bridge()
    assert other.startswith("berth") and other != "berth0" and len(other) <= 15
    assert parse_args(["--config-file", f, "--exec-root", "/tmp/x"]).effective_bridge() == other


BAD = [
    ["--bridge", "a-name-that-is-too-long"],
    ["--default-address-pool", "base=x"],
    ["--default-address-pool", "base=10.0.0.0/8,size=big"],
]


@pytest.mark.parametrize("args", BAD)
def test_bad_values(tmp_path: Path, args: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_args(["--config-file", _file(tmp_path, {}), *args])
