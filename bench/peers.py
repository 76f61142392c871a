"""The engines `make bench` compares: berthd, dockerd (with containerd) and podman's API service.

Each engine gets its own socket, data and exec roots under one short base directory, and its own
bridge and subnet, so the three sit side by side without touching each other or the host's own
networks. Only the PIDs started here are signalled; `stop()` unmounts what is left under the base
directory and deletes the bridge it made.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _sub in ("libs", "services"):
    if str(REPO / _sub) not in sys.path:
        sys.path.insert(0, str(REPO / _sub))

from testkit.berthd import BerthdProcess, mounts_under  # noqa: E402

__all__ = ["BerthEngine", "DockerdEngine", "Engine", "PodmanEngine", "rss_kib"]

START_TIMEOUT = 60.0


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _wait_socket(path: Path, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    env = {**os.environ, "DOCKER_HOST": f"unix://{path}"}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        if path.exists():
            ping = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                  env=env, capture_output=True, text=True, timeout=30)
            if ping.returncode == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer on {path}:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _unmount_under(base: Path) -> None:
    for mp in sorted(mounts_under(base), key=lambda p: len(str(p)), reverse=True):
        subprocess.run(["umount", "-l", str(mp)], capture_output=True, check=False)


def _links() -> list[str]:
    return os.listdir("/sys/class/net")


def _nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
    return {line.removeprefix("table ").strip() for line in out.splitlines() if line.startswith("table ")}


_BASE_CHAINS = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}


def _drop_cni_tables(before: set[str]) -> None:
    """Delete the iptables-nft tables podman's CNI plugins made during the run, and only those."""
    for table in _nft_tables() - before:
        listing = subprocess.run(["nft", "list", "table", *table.split()], capture_output=True,
                                 text=True, check=False).stdout
        chains = {ln.split()[1] for ln in listing.splitlines() if ln.strip().startswith("chain ")}
        if all(c.startswith("CNI-") or c in _BASE_CHAINS for c in chains):
            subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True, check=False)


@dataclass
class Engine:
    """One engine under test: a name, its DOCKER_HOST, and the PIDs whose memory it costs."""

    name: str
    base: Path
    host: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def engine_pids(self) -> list[int]:
        """The engine's own long-lived processes (not per-container monitors)."""
        return [p.pid for p in self.procs if p.poll() is None]


class BerthEngine(Engine):
    """A fresh berthd, embedded mode, SQLite, on a temp data root."""

    def __init__(self, base: Path) -> None:
        super().__init__("berth", base)
        self.daemon = BerthdProcess(base / "berth")

    def start(self) -> None:
        self.daemon.start()
        self.host = self.daemon.host

    def stop(self) -> None:
        self.daemon.cleanup()

    def engine_pids(self) -> list[int]:
        return [self.daemon.pid] if self.daemon.pid else []


class DockerdEngine(Engine):
    """Debian's dockerd 20.10 on its own containerd, bridge `bbench0` (10.252.0.0/24), no iptables."""

    BRIDGE = "bbench0"
    CIDR = "10.252.0.1/24"

    def __init__(self, base: Path) -> None:
        super().__init__("dockerd", base / "d")
        self._made_bridge = False

    def start(self) -> None:
        b = self.base
        for d in ("ctrd-root", "ctrd-state", "data", "exec"):
            (b / d).mkdir(parents=True, exist_ok=True)
        (b / "containerd.toml").write_text(
            'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
        (b / "daemon.json").write_text("{}\n")
        if not Path(f"/sys/class/net/{self.BRIDGE}").exists():
            for cmd in (["ip", "link", "add", self.BRIDGE, "type", "bridge"],
                        ["ip", "addr", "add", self.CIDR, "dev", self.BRIDGE],
                        ["ip", "link", "set", self.BRIDGE, "up"]):
                subprocess.run(cmd, check=True, capture_output=True)
            self._made_bridge = True
        sock = b / "ctrd.sock"
        log = b / "containerd.log"
        with log.open("ab") as out:
            self.procs.append(subprocess.Popen(
                ["containerd", "--config", str(b / "containerd.toml"), "--root", str(b / "ctrd-root"),
                 "--state", str(b / "ctrd-state"), "--address", str(sock)],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + START_TIMEOUT
        while not sock.exists():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError(f"containerd did not start:\n{_tail(log)}")
            time.sleep(0.1)
        api = b / "dockerd.sock"
        log = b / "dockerd.log"
        with log.open("ab") as out:
            self.procs.append(subprocess.Popen(
                ["dockerd", "--host", f"unix://{api}", "--containerd", str(sock),
                 "--data-root", str(b / "data"), "--exec-root", str(b / "exec"),
                 "--pidfile", str(b / "dockerd.pid"), "--config-file", str(b / "daemon.json"),
                 "--bridge", self.BRIDGE, "--iptables=false", "--ip-masq=false",
                 "--default-ulimit", "nofile=1024:4096"],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True))
        self.host = f"unix://{api}"
        _wait_socket(api, self.procs[1], "dockerd", log)

    def stop(self) -> None:
        if self.host:
            env = {**os.environ, "DOCKER_HOST": self.host}
            ids = subprocess.run(["docker", "ps", "-aq"], env=env, capture_output=True, text=True,
                                 check=False).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], env=env, capture_output=True, check=False)
        for p in reversed(self.procs):
            _terminate(p)
        _unmount_under(self.base)
        if self._made_bridge:
            subprocess.run(["ip", "link", "del", self.BRIDGE], capture_output=True, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


class PodmanEngine(Engine):
    """podman 4.3's Docker-compatible service, cgroupfs + runc, its own storage and CNI network."""

    def __init__(self, base: Path) -> None:
        super().__init__("podman", base / "p")
        self.insecure: list[str] = []  # host:port of loopback registries (podman does not assume it)
        self._links_before = set(_links())
        self._tables_before = _nft_tables()

    def _env(self) -> dict[str, str]:
        b = self.base
        return {**os.environ, "CONTAINERS_CONF": str(b / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(b / "storage.conf"),
                "CONTAINERS_REGISTRIES_CONF": str(b / "registries.conf")}

    def start(self) -> None:
        b = self.base
        for d in ("storage", "run", "tmp", "cni", "volumes"):
            (b / d).mkdir(parents=True, exist_ok=True)
        nofile = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        # The service lowers its own nproc limit to 32768; children may not ask for more.
        nproc = min(32768, resource.getrlimit(resource.RLIMIT_NPROC)[1])
        (b / "containers.conf").write_text(
            "[containers]\n"
            # podman 4.3 asks for nproc 1048576 and swaps unequal nofile soft/hard: pin both to the
            # host's hard limits (no CAP_SYS_RESOURCE here).
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            'log_driver = "k8s-file"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            'runtime = "runc"\n'
            f'tmp_dir = "{b / "tmp"}"\n'
            f'volume_path = "{b / "volumes"}"\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'network_config_dir = "{b / "cni"}"\n'
            'default_network = "benchpod"\n'
            'default_subnet = "10.253.0.0/24"\n')
        (b / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{b / "storage"}"\nrunroot = "{b / "run"}"\n')
        (b / "registries.conf").write_text(
            'unqualified-search-registries = ["docker.io"]\n'
            + "".join(f'[[registry]]\nlocation = "{h}"\ninsecure = true\n' for h in self.insecure))
        api = b / "podman.sock"
        log = b / "podman.log"
        with log.open("ab") as out:
            self.procs.append(subprocess.Popen(
                ["podman", "system", "service", "--time=0", f"unix://{api}"],
                env=self._env(), stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                start_new_session=True))
        self.host = f"unix://{api}"
        _wait_socket(api, self.procs[0], "podman system service", log)

    def stop(self) -> None:
        if self.host:
            subprocess.run(["podman", "rm", "-fa", "-t", "0"], env=self._env(), capture_output=True,
                           check=False, timeout=300)
        for p in self.procs:
            _terminate(p)
        for dev in set(_links()) - self._links_before:
            if dev.startswith("cni-podman"):  # the bridge podman's CNI config made for this run
                subprocess.run(["ip", "link", "del", dev], capture_output=True, check=False)
        _drop_cni_tables(self._tables_before)
        _unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
