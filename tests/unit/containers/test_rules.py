"""Pure rules of the containers service: names, config merge, validation, signals, restarts, logs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import errdefs
from containers_svc.attach import DetachMatcher, parse_detach_keys
from containers_svc.config import (
    RestartBackoff,
    RestartPolicy,
    command_of,
    merge_image_config,
    normalize_host_config,
    parse_signal,
    restart_policy,
    should_restart,
    validate_host_config,
)
from containers_svc.logs import entries_from_lines, format_timestamp, parse_rfc3339_nano
from containers_svc.names import generate_name, validate_name
from containers_svc.rootfs import ExecError, find_executable, lookup_user, read_file_in_root, resolve_in_root
from containers_svc.runspec import parse_mounts, resolv_conf


def test_names() -> None:
    assert validate_name("/web_1.a-b") == "web_1.a-b"
    assert validate_name("ab") == "ab"
    for bad in ("a", "-x", "_x", "a b", "a/b", "", "/"):
        with pytest.raises(errdefs.InvalidArgument, match=r"only \[a-zA-Z0-9\]\[a-zA-Z0-9_.-\] are allowed"):
            validate_name(bad)
    for _ in range(50):
        left, _, right = generate_name().partition("_")
        assert left and right.isalpha()
    assert generate_name(1)[-1].isdigit()


IMAGE = {"Cmd": ["sh"], "Entrypoint": ["/init"], "Env": ["PATH=/bin", "A=img"], "WorkingDir": "/srv",
         "User": "nobody", "Labels": {"a": "img", "b": "img"}, "StopSignal": "SIGQUIT"}  # fmt: skip


def test_merge_cmd_entrypoint_rules() -> None:
    m = merge_image_config({}, IMAGE)
    assert (m["Entrypoint"], m["Cmd"]) == (["/init"], ["sh"])
    m = merge_image_config({"Cmd": ["ls"]}, IMAGE)
    assert (m["Entrypoint"], m["Cmd"]) == (["/init"], ["ls"])
    # an Entrypoint drops the image's Cmd unless a Cmd is given
    m = merge_image_config({"Entrypoint": ["echo"]}, IMAGE)
    assert (m["Entrypoint"], m["Cmd"]) == (["echo"], None)
    m = merge_image_config({"Entrypoint": ["echo"], "Cmd": ["x"]}, IMAGE)
    assert command_of(m) == ("echo", ["x"])
    # an explicitly empty Entrypoint resets the image's and keeps its Cmd
    m = merge_image_config({"Entrypoint": []}, IMAGE)
    assert command_of(m) == ("sh", [])
    with pytest.raises(errdefs.InvalidArgument, match="No command specified"):
        command_of(merge_image_config({"Entrypoint": []}, {}))


def test_merge_env_labels_and_defaults() -> None:
    m = merge_image_config({"Env": ["A=me", "B=me"], "Labels": {"b": "me"}}, IMAGE)
    assert m["Env"] == ["A=me", "B=me", "PATH=/bin"]
    assert m["Labels"] == {"a": "img", "b": "me"}
    assert (m["WorkingDir"], m["User"], m["StopSignal"]) == ("/srv", "nobody", "SIGQUIT")
    assert merge_image_config({"User": "root"}, IMAGE)["User"] == "root"
    with pytest.raises(errdefs.InvalidArgument, match="needs to be an absolute path"):
        merge_image_config({"WorkingDir": "rel"}, {})
    with pytest.raises(errdefs.InvalidArgument, match="Invalid signal: SIGFOO"):
        merge_image_config({"StopSignal": "SIGFOO", "Cmd": ["x"]}, {})


def test_signals() -> None:
    assert parse_signal("SIGTERM") == parse_signal("TERM") == parse_signal("term") == parse_signal("15") == 15
    assert parse_signal("KILL") == 9
    assert parse_signal("SIGRTMIN+1") == parse_signal("SIGRTMIN") + 1
    for bad in ("SIGNOPE", "0", "999", "", "-1"):
        with pytest.raises(errdefs.InvalidArgument, match="Invalid signal"):
            parse_signal(bad)


def test_host_config_validation_texts() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="unknown policy 'sometimes'"):
        restart_policy({"RestartPolicy": {"Name": "sometimes"}})
    with pytest.raises(errdefs.InvalidArgument, match="can only be used with 'on-failure'"):
        restart_policy({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}})
    assert restart_policy({}) == RestartPolicy("no", 0)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"Memory": -1}, "Minimum memory limit allowed is 6MB"),
        ({"Memory": 1024}, "Minimum memory limit allowed is 6MB"),
        ({"NanoCpus": 5 * 10**9}, "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
        ({"NanoCpus": -1}, "Range of CPUs"),
        ({"NanoCpus": 10**9, "CpuPeriod": 100000}, "Nano CPUs and CPU Period cannot both be set"),
        ({"AutoRemove": True, "RestartPolicy": {"Name": "always"}}, "AutoRemove"),
        ({"OomScoreAdj": 1001}, "range for oom score adj"),
        ({"SecurityOpt": ["bogus"]}, "Invalid --security-opt"),
    ]
    for hc, text in cases:
        with pytest.raises(errdefs.InvalidArgument, match=text):
            validate_host_config(normalize_host_config(hc), ncpu=2)
    hc = normalize_host_config({"NetworkMode": "default"})
    assert hc["NetworkMode"] == "bridge" and hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert validate_host_config(hc, ncpu=2) == []


def test_restart_decisions_and_backoff() -> None:
    on_failure = RestartPolicy("on-failure", 2)
    assert should_restart(on_failure, 1, False, 0) and should_restart(on_failure, 1, False, 1)
    assert not should_restart(on_failure, 1, False, 2)
    assert not should_restart(on_failure, 0, False, 0)
    assert should_restart(RestartPolicy("on-failure", 0), 1, False, 100)
    assert should_restart(RestartPolicy("always"), 0, False, 5)
    assert not should_restart(RestartPolicy("always"), 0, True, 0)  # docker stop is remembered
    assert not should_restart(RestartPolicy("unless-stopped"), 1, True, 0)
    assert not should_restart(RestartPolicy("no"), 1, False, 0)
    b = RestartBackoff()
    delays = [b.next_delay(0.1) for _ in range(12)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 60.0 and max(delays) == 60.0
    assert b.next_delay(10.0) == 0.1  # ran long enough: back to the start


def test_k8s_log_lines_and_partials() -> None:
    lines = [
        b"2024-01-01T00:00:00.000000001+00:00 stdout P hel\n",
        b"2024-01-01T00:00:00.5+00:00 stdout F lo\n",
        b"2024-01-01T00:00:01Z stderr F oops\n",
        b"2024-01-01T00:00:02+00:00 stdout F \n",
    ]
    es = entries_from_lines(lines)
    assert [(e.stream, e.data) for e in es] == [
        ("stdout", b"hel"), ("stdout", b"lo\n"), ("stderr", b"oops\n"), ("stdout", b"\n"),
    ]  # fmt: skip
    base = 1704067200 * 10**9
    assert [e.time_nano for e in es] == [base + 1, base + 500_000_000, base + 10**9, base + 2 * 10**9]
    assert parse_rfc3339_nano("2024-01-01T01:00:00.25+01:00") == base + 250_000_000
    assert format_timestamp(base + 500_000_000) == "2024-01-01T00:00:00.5Z"
    assert format_timestamp(base) == "2024-01-01T00:00:00Z"


def test_detach_keys() -> None:
    keys = parse_detach_keys("")
    assert keys == b"\x10\x11"
    m = DetachMatcher(keys)
    assert m.feed(b"ab\x10") == (b"ab", False)
    assert m.feed(b"x\x10") == (b"\x10x", False)
    assert m.feed(b"\x11rest") == (b"", True)
    assert DetachMatcher(parse_detach_keys("a,ctrl-x")).feed(b"zza\x18") == (b"zz", True)
    with pytest.raises(errdefs.InvalidArgument, match="Invalid detach keys"):
        parse_detach_keys("ctrl-1,foo")


def test_mount_specs() -> None:
    mps = parse_mounts({"Binds": ["/srv/data:/data:ro", "/x:/y"]})
    assert mps[0] == {"Type": "bind", "Source": "/srv/data", "Destination": "/data", "Mode": "ro",
                      "RW": False, "Propagation": "rprivate"}  # fmt: skip
    assert mps[1]["RW"]
    for bad in ("nodst", "/a:rel", "/a:/b:bogus"):
        with pytest.raises(errdefs.InvalidArgument):
            parse_mounts({"Binds": [bad]})
    with pytest.raises(errdefs.InvalidArgument, match="bind source path does not exist"):
        parse_mounts({"Mounts": [{"Type": "bind", "Source": "/no/such/dir/x", "Target": "/x"}]})


def test_resolv_conf_drops_loopback() -> None:
    host = "search lan\nnameserver 127.0.0.53\nnameserver 10.0.0.1\noptions edns0\n"
    assert resolv_conf(host, {}) == "search lan\nnameserver 10.0.0.1\noptions edns0\n"
    assert resolv_conf(host, {"Dns": ["1.1.1.1"]}) == "search lan\noptions edns0\nnameserver 1.1.1.1\n"


# ---- rootfs lookups with hostile symlinks ------------------------------------------------------


def _rootfs(tmp: Path) -> Path:
    root = tmp / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n# comment\n"
    )
    (root / "etc/group").write_text("root:x:0:\napp:x:1000:\nwheel:x:10:app,other\n")
    (root / "bin/busybox").write_bytes(b"\x7fELF")
    os.chmod(root / "bin/busybox", 0o755)
    os.symlink("busybox", root / "bin/sh")
    os.symlink("/bin/busybox", root / "bin/abs")
    (root / "bin/data").write_text("x")
    return root


def test_lookup_user(tmp_path: Path) -> None:
    root = str(_rootfs(tmp_path))
    assert lookup_user(root, "").uid == 0
    u = lookup_user(root, "app")
    assert (u.uid, u.gid, u.additional_gids, u.home) == (1000, 1000, (10,), "/home/app")
    assert lookup_user(root, "1000:wheel").gid == 10
    assert lookup_user(root, "4242").uid == 4242 and lookup_user(root, "4242").gid == 0
    assert lookup_user(root, "app", ["root"]).additional_gids == (10, 0)
    with pytest.raises(errdefs.InvalidArgument, match="unable to find user nobody: no matching entries"):
        lookup_user(root, "nobody")
    with pytest.raises(errdefs.InvalidArgument, match="unable to find group nogroup"):
        lookup_user(root, "app:nogroup")


def test_hostile_symlinks_stay_inside_rootfs(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("evil:x:0:0::/:/bin/sh\n")
    os.unlink(root / "etc/passwd")
    # absolute and relative escapes both resolve inside the rootfs (where nothing exists)
    os.symlink(str(secret), root / "etc/passwd")
    assert resolve_in_root(str(root), "/etc/passwd") == str(root) + str(secret)
    assert read_file_in_root(str(root), "/etc/passwd") is None
    with pytest.raises(errdefs.InvalidArgument, match="unable to find user evil"):
        lookup_user(str(root), "evil")
    os.unlink(root / "etc/passwd")
    os.symlink("../../../../../../" + str(secret), root / "etc/passwd")
    assert read_file_in_root(str(root), "/etc/passwd") is None
    # a symlink loop is refused, a FIFO is not read
    os.unlink(root / "etc/passwd")
    os.symlink("/etc/passwd", root / "etc/passwd")
    with pytest.raises(errdefs.InvalidArgument, match="too many levels"):
        read_file_in_root(str(root), "/etc/passwd")
    os.unlink(root / "etc/passwd")
    os.mkfifo(root / "etc/passwd")
    assert read_file_in_root(str(root), "/etc/passwd") is None
    # /etc itself a symlink to the host's /etc: still the rootfs' own
    os.unlink(root / "etc/passwd")
    os.rename(root / "etc", root / "etc.real")
    os.symlink("/etc.real", root / "etc")
    (root / "etc.real/passwd").write_text("inside:x:7:7::/:/bin/sh\n")
    assert lookup_user(str(root), "inside").uid == 7


def test_find_executable(tmp_path: Path) -> None:
    root = str(_rootfs(tmp_path))
    env = ["PATH=/usr/bin:/bin"]
    assert find_executable(root, "sh", env) == "/bin/sh"
    assert find_executable(root, "/bin/abs", env) == "/bin/abs"
    cases = [
        ("nosuchcmd", 'exec: "nosuchcmd": executable file not found in $PATH', 127),
        ("/bin/nope", 'exec: "/bin/nope": stat /bin/nope: no such file or directory', 127),
        ("/bin/data", 'exec: "/bin/data": permission denied', 126),
        ("/bin", 'exec: "/bin": is a directory', 126),
    ]
    for cmd, text, code in cases:
        with pytest.raises(ExecError) as e:
            find_executable(root, cmd, env)
        assert (e.value.message, e.value.exit_code) == (text, code)
