"""Containers through the real docker CLI: run, ps, inspect, logs, stop, kill, wait, rm."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from testkit.berthd import DockerCLI


def _name() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cleanup(docker: DockerCLI):  # type: ignore[no-untyped-def]
    names: list[str] = []
    yield names
    for n in names:
        docker("rm", "-f", n, check=False)


def test_run_rm_echo(docker: DockerCLI, busybox_image: str) -> None:
    res = docker("run", "--rm", "busybox", "echo", "hello from berth")
    assert res.stdout == "hello from berth\n"


def test_exit_codes(docker: DockerCLI, busybox_image: str) -> None:
    assert docker("run", "--rm", "busybox", "sh", "-c", "exit 3", check=False).returncode == 3
    res = docker("run", "--rm", "busybox", "nosuchcmd", check=False)
    assert res.returncode == 127, res.stderr
    assert "executable file not found" in res.stderr
    res = docker("run", "--rm", "busybox", "/etc/passwd", check=False)
    assert res.returncode == 126, res.stderr


def test_user_names_resolve_in_the_image(docker: DockerCLI, busybox_image: str) -> None:
    """-u takes names from the image's /etc/passwd (looked up at start, not at create)."""
    out = docker("run", "--rm", "-u", "nobody", busybox_image, "id").stdout
    assert out.startswith("uid=65534(nobody) gid=65534(nobody)")
    bad = docker("run", "--rm", "-u", "no-such-user", busybox_image, "id", check=False)
    assert bad.returncode != 0
    assert "unable to find user no-such-user: no matching entries in passwd file" in bad.stderr


def test_stdout_stderr_apart_and_logs(docker: DockerCLI, busybox_image: str, cleanup: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    res = docker("run", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2")
    assert res.stdout == "out\n" and res.stderr == "err\n"
    logs = docker("logs", name)
    assert logs.stdout == "out\n" and logs.stderr == "err\n"
    tail = docker("logs", "--tail", "1", "-t", name)
    assert tail.stdout == "" or tail.stdout.endswith(" out\n")


def test_stdin_round_trip(docker: DockerCLI, busybox_image: str) -> None:
    data = "".join(f"line {i}\n" for i in range(1000))
    res = docker("run", "--rm", "-i", "busybox", "cat", input=data)
    assert res.stdout == data


def test_detached_lifecycle(docker: DockerCLI, busybox_image: str, cleanup: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    cid = docker("run", "-d", "--name", name, "--label", "role=test", "busybox", "sleep", "300")\
        .stdout.strip()
    assert len(cid) == 64
    ps = docker("ps", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout
    assert f"{cid} {name} Up" in ps
    info = json.loads(docker("inspect", name).stdout)[0]
    assert info["State"]["Running"] is True and info["State"]["Pid"] > 0
    assert info["Name"] == f"/{name}" and info["Config"]["Labels"] == {"role": "test"}
    assert docker("ps", "-q", "--filter", "label=role=test", "--no-trunc").stdout.split() == [cid]
    res = docker("rm", name, check=False)
    assert res.returncode != 0
    assert "You cannot remove a running container" in res.stderr
    res = docker("run", "-d", "--name", name, "busybox", "true", check=False)
    assert res.returncode == 125
    assert f'Conflict. The container name "/{name}" is already in use by container "{cid}"' in res.stderr
    t0 = time.monotonic()
    docker("stop", "-t", "1", name)
    assert time.monotonic() - t0 < 10
    info = json.loads(docker("inspect", name).stdout)[0]
    assert info["State"]["Running"] is False and info["State"]["ExitCode"] == 137
    assert "Exited (137)" in docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
    res = docker("stop", name)  # already stopped: 304, the CLI still prints the name
    assert res.stdout.strip() == name
    docker("rm", name)
    cleanup.remove(name)
    res = docker("inspect", name, check=False)
    assert res.returncode != 0 and f"No such object: {name}" in res.stderr


def test_kill_and_wait(docker: DockerCLI, busybox_image: str, cleanup: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    docker("kill", "-s", "KILL", name)
    assert docker("wait", name).stdout.strip() == "137"
    res = docker("kill", name, check=False)
    assert res.returncode != 0 and "is not running" in res.stderr


def test_security_defaults(docker: DockerCLI, busybox_image: str) -> None:
    out = docker("run", "--rm", "busybox", "grep", "-E", "Cap(Inh|Prm|Eff|Bnd|Amb)",
                 "/proc/self/status").stdout
    caps = dict(line.split(":\t") for line in out.strip().splitlines())
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == "00000000a80425fb"
    assert caps["CapInh"] == caps["CapAmb"] == "0000000000000000"
    res = docker("run", "--rm", "busybox", "sh", "-c", "echo 1 > /proc/sys/kernel/sysrq", check=False)
    assert res.returncode != 0


def test_run_rm_removes(docker: DockerCLI, busybox_image: str) -> None:
    name = _name()
    docker("run", "--rm", "--name", name, "busybox", "true")
    assert docker("ps", "-aq", "--filter", f"name={name}").stdout.strip() == ""


def test_ps_json_shape(docker: DockerCLI, busybox_image: str, cleanup: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    docker("create", "--name", name, "busybox", "echo", "x y")
    [row] = [json.loads(line) for line in
             docker("ps", "-a", "--filter", f"name={name}", "--format", "{{json .}}").stdout.splitlines()]
    assert row["Names"] == name and row["State"] == "created" and row["Status"] == "Created"
    assert row["Command"].startswith('"echo')
    assert row["Image"] == "busybox"


def test_ps_network_port_filters(docker: DockerCLI, busybox_image: str, cleanup: list[str]) -> None:
    """ps --filter network / publish / expose / is-task / isolation, as dockerd answers them."""
    net = _name()
    docker("network", "create", net)
    try:
        web, plain = _name(), _name()
        cleanup += [web, plain]
        docker("run", "-d", "--name", web, "--network", net, "-p", "127.0.0.1::80", "--expose", "9000/udp",
               busybox_image, "sleep", "600")
        docker("run", "-d", "--name", plain, busybox_image, "sleep", "600")
        host_port = docker("port", web, "80/tcp").stdout.strip().rsplit(":", 1)[1]

        def names(*flt: str) -> set[str]:
            args = [a for f in flt for a in ("--filter", f)]
            return set(docker("ps", "-a", "--format", "{{.Names}}", *args).stdout.split()) & {web, plain}

        assert names(f"network={net}") == {web}
        assert names("network=bridge") == {plain}
        net_id = docker("network", "inspect", "-f", "{{.Id}}", net).stdout.strip()
        assert names(f"network={net_id[:12]}") == {web}
        assert names(f"publish={host_port}") == {web}
        assert names(f"publish={host_port}/udp") == set()
        assert names("expose=80") == {web}
        assert names("expose=9000/udp") == {web}
        assert names("expose=8990-9010/udp") == {web}
        assert names("expose=81") == set()
        assert names("is-task=true") == set()
        assert names("is-task=false") == {web, plain}
        assert names("isolation=default") == {web, plain}
    finally:
        for n in cleanup:
            docker("rm", "-f", n, check=False)
        docker("network", "rm", net, check=False)
