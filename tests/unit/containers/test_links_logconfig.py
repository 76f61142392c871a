"""Legacy link environment (moby Link.ToEnv), link names, and log driver validation."""

from __future__ import annotations

import pytest

import errdefs
from containers_svc.config import validate_host_config, validate_log_config
from containers_svc.links import link_env, parse_link, split_link_name


def test_parse_and_split_link_names() -> None:
    assert parse_link("db") == ("db", "db")
    assert parse_link("db:cache") == ("db", "cache")
    assert parse_link("/db:/web/cache") == ("db", "cache")
    assert split_link_name("web/cache") == ("web", "cache")
    assert split_link_name("/web/cache") == ("web", "cache")
    assert split_link_name("/web") == ("", "web")


def test_link_env_without_ports() -> None:
    env = link_env("/web/my-db", "10.0.0.2", ["PATH=/bin", "HOME=/root", "FOO=a=b", "BARE"], {})
    assert env == ["MY_DB_NAME=/web/my-db", "MY_DB_ENV_FOO=a=b"]


def test_link_env_ports_and_ranges() -> None:
    exposed: dict[str, dict[str, str]] = {p: {} for p in ("80/tcp", "81/tcp", "82/tcp", "53/udp", "53/tcp")}
    env = link_env("/p/db", "1.2.3.4", [], exposed)
    assert env[0] == "DB_PORT=tcp://1.2.3.4:53"  # lowest number, tcp before udp
    assert "DB_PORT_80_TCP_START=tcp://1.2.3.4:80" in env
    assert "DB_PORT_80_TCP_END=tcp://1.2.3.4:82" in env
    assert "DB_PORT_80_TCP_PORT_START=80" in env and "DB_PORT_80_TCP_PORT_END=82" in env
    for port, proto in (("53", "udp"), ("53", "tcp"), ("80", "tcp"), ("82", "tcp")):
        head = f"DB_PORT_{port}_{proto.upper()}"
        assert f"{head}=${proto}://1.2.3.4:{port}".replace("$", "") in env
        assert f"{head}_ADDR=1.2.3.4" in env
        assert f"{head}_PORT={port}" in env and f"{head}_PROTO={proto}" in env
    assert env[-1] == "DB_NAME=/p/db"


@pytest.mark.parametrize("driver", ["json-file", "local", "none", "syslog", "journald"])
def test_known_log_drivers(driver: str) -> None:
    validate_log_config({"Type": driver, "Config": {}})


def test_unknown_log_driver_and_mode() -> None:
    with pytest.raises(errdefs.InvalidArgument, match=r"^logger: no log driver named 'asdf' is registered$"):
        validate_host_config({"LogConfig": {"Type": "asdf", "Config": {}}})
    with pytest.raises(errdefs.InvalidArgument, match=r"^logger: logging mode not supported: x$"):
        validate_log_config({"Type": "json-file", "Config": {"mode": "x"}})
    validate_log_config({"Type": "none", "Config": {"mode": "x"}})  # none takes anything
    validate_log_config({})
