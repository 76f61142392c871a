"""berthd flag and daemon.json parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from berthd.config import ConfigError, parse_args


def _file(tmp_path: Path, data: object) -> str:
    p = tmp_path / "daemon.json"
    p.write_text(json.dumps(data))
    return str(p)


def test_defaults(tmp_path: Path) -> None:
    cfg = parse_args(["--config-file", _file(tmp_path, {})])
    assert cfg.data_root == Path("/var/lib/berth")
    assert cfg.effective_hosts() == ["unix:///run/berth/berth.sock"]
    assert cfg.effective_state_url() == "sqlite+aiosqlite:////var/lib/berth/state.db"
    assert cfg.grpc_socket == Path("/run/berth/berthd.sock")


def test_flags_and_file_merge(tmp_path: Path) -> None:
    path = _file(tmp_path, {
        "registry-mirrors": ["http://127.0.0.1:5000"],
        "insecure-registries": ["myreg:5000"],
        "log-driver": "local",
        "log-opts": {"max-size": "10m"},
        "max-concurrent-downloads": 5,
        "default-address-pools": [{"base": "10.99.0.0/16", "size": 24}],
        "data-root": str(tmp_path / "data"),
    })
    cfg = parse_args(["--config-file", path, "-H", "unix:///tmp/a.sock", "-H", "tcp://127.0.0.1:1",
                      "--exec-root", str(tmp_path / "run"), "--service", "images"])
    assert cfg.registry_mirrors == ["http://127.0.0.1:5000"]
    assert cfg.log_driver == "local" and cfg.log_opts == {"max-size": "10m"}
    assert cfg.max_concurrent_downloads == 5
    assert cfg.data_root == tmp_path / "data"
    assert cfg.hosts == ["unix:///tmp/a.sock", "tcp://127.0.0.1:1"]
    assert cfg.grpc_socket == tmp_path / "run" / "images.sock"


def test_flag_and_file_clash(tmp_path: Path) -> None:
    path = _file(tmp_path, {"data-root": "/a"})
    with pytest.raises(ConfigError, match="specified both as a flag and in the configuration file"):
        parse_args(["--config-file", path, "--data-root", "/b"])


@pytest.mark.parametrize("data,needle", [
    ({"no-such-key": 1}, "don't match any configuration option: no-such-key"),
    ({"log-driver": "asdf"}, "no log driver named 'asdf'"),
    ({"max-concurrent-downloads": 0}, "invalid max-concurrent-downloads"),
    ({"registry-mirrors": "x"}, "must be a list"),
    ({"data-root": "relative"}, "absolute path"),
])
def test_bad_file(tmp_path: Path, data: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_args(["--config-file", _file(tmp_path, data)])


def test_malformed_file(tmp_path: Path) -> None:
    p = tmp_path / "daemon.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid daemon configuration file"):
        parse_args(["--config-file", str(p)])


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        parse_args(["--config-file", str(tmp_path / "nope.json")])


def test_tlsverify_implies_tls(tmp_path: Path) -> None:
    cfg = parse_args(["--config-file", _file(tmp_path, {}), "--tlsverify", "--tlscacert", "ca.pem"])
    assert cfg.tls is True and cfg.tlsverify is True
    cfg = parse_args(["--config-file", _file(tmp_path, {}), "--tls=false"])
    assert cfg.tls is False
