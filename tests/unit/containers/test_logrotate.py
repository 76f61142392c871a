"""Log driver options, log segments under a simulated conmon, reads across rotations; create checks."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

import errdefs
from containers_svc.checks import check_create, parse_uint_list
from containers_svc.logrotate import (
    LogSettings,
    _arrange,
    _Follower,
    _open_all,
    _read_old,
    merge_log_config,
    settings_of,
)


def test_settings_defaults_per_driver() -> None:
    assert settings_of({}) == LogSettings("json-file", -1, 1, False)
    assert settings_of({"Type": "local", "Config": {}}) == LogSettings("local", 20 << 20, 5, True)
    assert settings_of({"Type": "none"}).readable is False
    s = settings_of({"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}})
    assert (s.max_size, s.max_file, s.rotates, s.conmon_size_max) == (10 << 20, 3, True, 10 << 20)
    one = settings_of({"Type": "json-file", "Config": {"max-size": "1k"}})
    assert (one.rotates, one.conmon_size_max) == (False, 1024)  # conmon's truncation is Docker's
    assert settings_of({"Type": "syslog", "Config": {"syslog-address": "x"}}).readable is True
    assert settings_of({"Type": "syslog", "Config": {"cache-disabled": "true"}}).readable is False


@pytest.mark.parametrize(("cfg", "message"), [
    ({"Type": "nosuch"}, "logger: no log driver named 'nosuch' is registered"),
    ({"Config": {"max-size": "x"}}, "invalid size: 'x'"),
    ({"Config": {"max-size": "0"}}, "max-size must be a positive number"),
    ({"Config": {"max-file": "0"}}, "max-file cannot be less than 1"),
    ({"Config": {"bogus": "1"}}, "unknown log opt 'bogus' for json-file log driver"),
    ({"Type": "local", "Config": {"labels": "a"}}, "unknown log opt 'labels' for log driver local"),
    ({"Config": {"compress": "true", "max-size": "1m"}},
     "compress cannot be true when max-file is less than 2"),
    ({"Config": {"mode": "sometimes"}}, "logger: logging mode not supported: sometimes"),
])  # fmt: skip
def test_settings_refused(cfg: dict[str, object], message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        settings_of(cfg)


def test_daemon_defaults_merge_only_for_the_default_driver() -> None:
    opts = {"max-size": "1m", "max-file": "2"}
    assert merge_log_config(None, "json-file", opts) == {"Type": "json-file", "Config": opts}
    assert merge_log_config({"Type": "local"}, "json-file", opts) == {"Type": "local", "Config": {}}
    got = merge_log_config({"Type": "", "Config": {"max-file": "4"}}, "json-file", opts)
    assert got == {"Type": "json-file", "Config": {"max-file": "4", "max-size": "1m"}}


class _Conmon:
    """conmon's k8s-file writer as 2.1 does it: append through the path, rotate via path.tmp."""

    def __init__(self, path: Path, size_max: int) -> None:
        self.path, self.size_max, self.written = path, size_max, 0
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, n: int) -> None:
        line = f"2026-01-01T00:00:00.{n:09d}+00:00 stdout F line-{n}\n".encode()
        if self.written + len(line) > self.size_max:
            os.close(self.fd)
            tmp = f"{self.path}.tmp"
            self.fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o640)
            os.rename(tmp, self.path)
            self.written = 0
        os.write(self.fd, line)
        self.written += len(line)

    def close(self) -> None:
        os.close(self.fd)


def _numbers(lines: list[bytes]) -> list[int]:
    return [int(ln.rsplit(b"-", 1)[1]) for ln in lines]


def _read_all(path: Path) -> list[int]:
    olds, cur, number = _open_all(str(path))
    f = _Follower(str(path), cur, number)
    try:
        return _numbers(_read_old(olds) + f.read())
    finally:
        f.close()


def test_segments_survive_conmon_rotation_and_follow_reads_across(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    s = LogSettings("json-file", 400, 3, False)
    _arrange(str(path), s)
    assert path.is_symlink()
    conmon = _Conmon(path, 400)
    _, cur, number = _open_all(str(path))
    follower = _Follower(str(path), cur, number)
    seen: list[int] = []
    for n in range(200):
        conmon.write(n)
        if n % 3 == 0:
            _arrange(str(path), s)  # berth's pass, every few lines
        if n % 5 == 0:
            seen += _numbers(follower.read())
    conmon.close()
    _arrange(str(path), s)
    seen += _numbers(follower.read())
    follower.close()
    assert seen == list(range(200))  # the follower missed nothing, across every rotation
    kept = _read_all(path)
    assert kept == list(range(kept[0], 200)) and kept[0] > 0
    segs = [p for p in tmp_path.iterdir() if p.name.split(".")[-1].isdigit()]
    assert len(segs) == 3


def test_late_berth_adopts_conmon_file_and_compresses(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    s = LogSettings("local", 300, 4, True)
    _arrange(str(path), s)
    conmon = _Conmon(path, 300)
    for n in range(60):
        conmon.write(n)
        if n % 2 == 0:
            _arrange(str(path), s)
    # two rotations without berth: the first plain file is adopted late, the second truncates
    for n in range(60, 70):
        conmon.write(n)
    _arrange(str(path), s)
    for n in range(70, 80):
        conmon.write(n)
        _arrange(str(path), s)
    conmon.close()
    _arrange(str(path), s)
    kept = _read_all(path)
    assert kept[-1] == 79 and kept == sorted(kept)
    gz = [p for p in tmp_path.iterdir() if p.name.endswith(".gz")]
    assert gz and all(gzip.decompress(p.read_bytes()).endswith(b"\n") for p in gz)


def test_parse_uint_list_and_create_checks() -> None:
    assert parse_uint_list("0-2,4") == {0, 1, 2, 4}
    with pytest.raises(ValueError, match="invalid format: a-b"):
        parse_uint_list("a-b")
    with pytest.raises(errdefs.InvalidArgument, match='invalid CapAdd: unknown capability: "CAP_NOPE"'):
        check_create({"CapAdd": ["nope"]})
    with pytest.raises(errdefs.InvalidArgument, match=r"cannot unmarshal string .*Memory of type int64"):
        check_create({"Memory": "1g"})
    with pytest.raises(errdefs.InvalidArgument, match=r"unmarshal number into .*Privileged of type bool"):
        check_create({"Privileged": 1})
    check_create({"Memory": 0, "CapAdd": ["ALL", "net_admin"], "Binds": None, "CpusetCpus": ""})
