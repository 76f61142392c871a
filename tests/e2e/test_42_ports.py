"""Published ports: -p forms, -P with EXPOSE, random host ports, conflicts, docker port, reachability.

Servers are busybox httpd in containers; clients are this test on the host (127.0.0.1) and an
echo-peer namespace beside the host (testkit.netpeer), so nothing leaves the machine.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from testkit.berthd import BerthdProcess, DockerCLI
from testkit.fixtures import busybox_rootfs_tar
from testkit.netpeer import OutsidePeer

pytestmark = pytest.mark.needs_root

HTTPD = [
    "sh",
    "-c",
    "mkdir -p /www && echo hello-from-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www",
]


@pytest.fixture
def ctrs(docker: DockerCLI) -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    if ids:
        docker("rm", "-f", *ids, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _host_port(docker: DockerCLI, cid: str, port: str) -> tuple[str, int]:
    line = docker("port", cid, port).stdout.splitlines()[0]
    ip, _, num = line.rpartition(":")
    return ip, int(num)


def test_loopback_publish_with_random_port(docker: DockerCLI, ctrs: list[str], busybox_image: str) -> None:
    cid = docker("run", "-d", "--hostname", "web1", "-p", "127.0.0.1::80", "busybox", *HTTPD).stdout.strip()
    ctrs.append(cid)
    ip, port = _host_port(docker, cid, "80/tcp")
    assert ip == "127.0.0.1" and 1024 < port < 65536
    assert _get(f"http://127.0.0.1:{port}/").strip() == "hello-from-web1"
    ports = json.loads(docker("inspect", cid).stdout)[0]["NetworkSettings"]["Ports"]
    assert ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    ps = docker("ps", "--filter", f"id={cid}", "--format", "{{.Ports}}").stdout.strip()
    assert ps == f"127.0.0.1:{port}->80/tcp"
    # Stopped: the port is released and no longer answers.
    docker("stop", "-t", "1", cid)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    assert json.loads(docker("inspect", cid).stdout)[0]["NetworkSettings"]["Ports"] == {}


def test_fixed_port_conflict_and_ranges(docker: DockerCLI, ctrs: list[str], busybox_image: str) -> None:
    port = _free_port()
    a = docker(
        "run", "-d", "--hostname", "fixed", "-p", f"127.0.0.1:{port}:80", "busybox", *HTTPD
    ).stdout.strip()
    ctrs.append(a)
    assert _get(f"http://127.0.0.1:{port}/").strip() == "hello-from-fixed"
    res = docker("run", "-d", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "30", check=False)
    assert res.returncode != 0 and "port is already allocated" in res.stderr
    # A port some other program holds is refused the same way.
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        taken = s.getsockname()[1]
        res = docker("run", "-d", "-p", f"{taken}:80", "busybox", "sleep", "30", check=False)
        assert res.returncode != 0 and "port is already allocated" in res.stderr
    lo = _free_port()
    b = docker(
        "run",
        "-d",
        "-p",
        f"127.0.0.1:{lo}-{lo + 20}:80/tcp",
        "-p",
        "127.0.0.1::53/udp",
        "busybox",
        "sleep",
        "60",
    ).stdout.strip()
    ctrs.append(b)
    _ip, got = _host_port(docker, b, "80/tcp")
    assert lo <= got <= lo + 20
    _ip, udp = _host_port(docker, b, "53/udp")
    assert udp > 0


def test_publish_all_exposed(docker: DockerCLI, ctrs: list[str], busybox_image: str) -> None:
    cid = docker(
        "run", "-d", "--hostname", "pall", "--expose", "80", "--expose", "81", "-P", "busybox", *HTTPD
    ).stdout.strip()
    ctrs.append(cid)
    ports = json.loads(docker("inspect", cid).stdout)[0]["NetworkSettings"]["Ports"]
    assert set(ports) == {"80/tcp", "81/tcp"} and all(ports[k] for k in ports)
    _ip, port = _host_port(docker, cid, "80/tcp")
    assert _get(f"http://127.0.0.1:{port}/").strip() == "hello-from-pall"


def test_all_addresses_vs_loopback_from_another_namespace(docker: DockerCLI, ctrs: list[str],
                                                          busybox_image: str) -> None:  # fmt: skip
    with OutsidePeer() as peer:
        every = docker("run", "-d", "--hostname", "every", "-p", "80", "busybox", *HTTPD).stdout.strip()
        ctrs.append(every)
        local = docker(
            "run", "-d", "--hostname", "local", "-p", "127.0.0.1::80", "busybox", *HTTPD
        ).stdout.strip()
        ctrs.append(local)
        _ip, p_every = _host_port(docker, every, "80/tcp")
        _ip, p_local = _host_port(docker, local, "80/tcp")
        # From the host, both answer on 127.0.0.1.
        assert _get(f"http://127.0.0.1:{p_every}/").strip() == "hello-from-every"
        assert _get(f"http://127.0.0.1:{p_local}/").strip() == "hello-from-local"
        # From the peer namespace, through the host's address on that link: only the 0.0.0.0 one.
        code = (
            "import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())"
        )
        ok = peer.exec("python3", "-c", code, f"http://{peer.host_addr}:{p_every}/", check=False)
        assert ok.returncode == 0 and ok.stdout.strip() == "hello-from-every", ok.stderr
        no = peer.exec("python3", "-c", code, f"http://{peer.host_addr}:{p_local}/", check=False)
        assert no.returncode != 0
        # Hairpin: a container reaches a published port through the host's address.
        gw = json.loads(docker("inspect", every).stdout)[0]["NetworkSettings"]["Gateway"]
        res = docker(
            "run",
            "--rm",
            "busybox",
            "timeout",
            "10",
            "wget",
            "-O",
            "-",
            f"http://{gw}:{p_every}/",
            check=False,
        )
        assert res.stdout.strip() == "hello-from-every", res.stderr


def _netns_mounts(proc: BerthdProcess) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4] for line in f if str(proc.exec_root / "netns") in line]


def test_kill9_keeps_networking_and_restart_cleans_up(fresh_berthd: BerthdProcess) -> None:
    d = fresh_berthd
    d.docker("import", "--change", 'CMD ["sh"]', str(busybox_rootfs_tar()), "busybox:latest")
    d.docker("network", "create", "keep")
    cid = d.docker("run", "-d", "--hostname", "kept", "--network", "keep", "-p", "127.0.0.1::80", "busybox",
                   *HTTPD).stdout.strip()  # fmt: skip
    _ip, port = _host_port(d.docker, cid, "80/tcp")
    assert _get(f"http://127.0.0.1:{port}/").strip() == "hello-from-kept"
    d.kill9()
    # The container, its netns, veth and DNAT outlive the daemon...
    assert _get(f"http://127.0.0.1:{port}/").strip() == "hello-from-kept"
    # ...and a half-made sandbox left by the crash is removed at the next start.
    stale = d.exec_root / "netns" / ("f" * 64)
    stale.write_text("")
    d.start()
    assert not stale.exists()
    assert _get(f"http://127.0.0.1:{port}/").strip() == "hello-from-kept"
    doc = json.loads(d.docker("inspect", cid).stdout)[0]["NetworkSettings"]
    assert doc["Ports"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    # The port stays taken across the restart.
    res = d.docker("run", "-d", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "5", check=False)
    assert res.returncode != 0 and "port is already allocated" in res.stderr
    assert len(_netns_mounts(d)) == 1
    d.docker("rm", "-f", cid)
    assert _netns_mounts(d) == []
    links = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    assert sum(1 for link in json.loads(links) if link.get("ifalias") == f"berth:{d.nft_table}"
               and str(link.get("ifname", "")).startswith("veth")) == 0  # fmt: skip
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
