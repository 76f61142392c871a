"""Run a real berthd on a throwaway data root for e2e tests and benchmarks, and drive it.

`BerthdProcess(base_dir)` lays out ``data/``, ``exec/`` (the API socket lives there),
``docker-config/`` and ``berthd.log`` under `base_dir`. Keep `base_dir` short (``/tmp/berth-xxxx``):
a unix socket path must fit in 108 bytes.

Resource handling: the helper only ever signals the PID it started. `cleanup()` stops the daemon,
unmounts whatever is still mounted under `base_dir` (overlay snapshots, netns bind mounts) and only
then removes the data and exec roots; it refuses to delete through a mount that would not go away.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    import docker as dockerpy

__all__ = [
    "DOCKER_CLI",
    "BerthdError",
    "BerthdProcess",
    "DockerCLI",
    "default_berthd_path",
    "mounts_under",
]

DOCKER_CLI = Path("/usr/local/bin/docker")
REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
# The type of `BerthdProcess.docker` as handed to tests.
DockerCLI = Callable[..., "subprocess.CompletedProcess[Any]"]
# DOCKER_* settings of the caller's shell would point the CLI at another engine.
_DOCKER_ENV_DROP = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_API_VERSION",
    "DOCKER_CONFIG",
)


def _routed() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True,
                         check=False).stdout  # fmt: skip
    nets = []
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        if word[:1].isdigit():
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.IPv4Network(word if "/" in word else word + "/32", strict=False))
    return nets


_SLOTS_TAKEN: set[int] = set()


def _network_slot() -> tuple[str, str, str]:
    """(bridge name, --bip, --default-address-pool) for one test daemon.

    The slot i (0..255) is random among those whose addresses no route uses yet: the bridge gets
    10.200.i.1/24, new networks come from 10.(201 + i/16).(i%16*16).0/20 in /24s.
    """
    routed = _routed()
    slots = [i for i in range(256) if i not in _SLOTS_TAKEN] or list(range(256))
    random.shuffle(slots)
    for i in slots:
        bip = ipaddress.IPv4Network(f"10.200.{i}.0/24")
        pool = ipaddress.IPv4Network(f"10.{201 + i // 16}.{i % 16 * 16}.0/20")
        if not any(bip.overlaps(r) or pool.overlaps(r) for r in routed):
            break
    _SLOTS_TAKEN.add(i)  # daemons of this process not started yet have no routes to see
    return f"btk{os.getpid() % 1000:03d}{i:03d}", f"10.200.{i}.1/24", f"base={pool},size=24"


class BerthdError(RuntimeError):
    """berthd did not start, did not answer, or did not stop cleanly."""


def default_berthd_path() -> Path:
    """``$BERTH_TEST_BERTHD`` if set, else the running venv's berthd, else the repo's `.venv`."""
    override = os.environ.get("BERTH_TEST_BERTHD")
    if override:
        return Path(override)
    for candidate in (Path(sys.prefix) / "bin" / "berthd", REPO_ROOT / ".venv" / "bin" / "berthd"):
        if candidate.exists():
            return candidate
    raise BerthdError(f"berthd not found in {sys.prefix}/bin or {REPO_ROOT}/.venv/bin")


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path` in this mount namespace, deepest first."""
    root = os.path.realpath(path)
    found: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            mp = _unescape_mountinfo(line.split()[4])
            if mp == root or mp.startswith(root + "/"):
                found.append(Path(mp))
    return sorted(set(found), key=lambda p: (len(p.parts), str(p)), reverse=True)


def _unmount_all(path: Path) -> None:
    for mp in mounts_under(path):
        if subprocess.run(["umount", "-R", str(mp)], capture_output=True).returncode != 0:
            # Busy (a leftover process holds it): detach it so the tree can still be removed.
            subprocess.run(["umount", "-l", str(mp)], capture_output=True)


class BerthdProcess:
    """One berthd started from this process, with a docker CLI and docker-py bound to it."""

    def __init__(
        self,
        base_dir: Path,
        *,
        extra_args: Sequence[str] = (),
        berthd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Lay out the directories; does not start anything.

        Args:
            base_dir: a directory owned by the caller; everything goes below it.
            extra_args: appended to berthd's command line.
            berthd: the executable; `default_berthd_path()` when None.
            env: extra environment for berthd.
        """
        self.base_dir = Path(base_dir)
        self.data_root = self.base_dir / "data"
        self.exec_root = self.base_dir / "exec"
        self.socket_path = self.exec_root / "berth.sock"
        self.log_path = self.base_dir / "berthd.log"
        self.docker_config = self.base_dir / "docker-config"
        self.extra_args = list(extra_args)
        # Networking of its own: a default bridge, a /24 for it and a /20 of pools, so daemons
        # running side by side never share a bridge, an nft table or a subnet.
        self.bridge, self.bip, self.address_pool = _network_slot()
        self._berthd = berthd
        self._env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        # Set by kill9(): containers may have outlived the daemon.
        self._crashed = False
        if len(str(self.socket_path).encode()) > 107:
            raise BerthdError(f"socket path too long for AF_UNIX: {self.socket_path}")

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The DOCKER_HOST value for this daemon."""
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        """PID of the running daemon, None when not running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def command(self) -> list[str]:
        return [
            str(self._berthd or default_berthd_path()),
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "-H",
            self.host,
            *self._network_args(),
            *self.extra_args,
        ]

    def _network_args(self) -> list[str]:
        given = set(self.extra_args)
        out = []
        if not given & {"-b", "--bridge"}:
            out += ["--bridge", self.bridge]
        if "--bip" not in given:
            out += ["--bip", self.bip]
        if "--default-address-pool" not in given:
            out += ["--default-address-pool", self.address_pool]
        return out

    @property
    def nft_table(self) -> str:
        """berth's nft table of this daemon (networks_svc.nft.table_name_for)."""
        return "berth_" + re.sub(r"[^A-Za-z0-9_]", "_", self.bridge)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start berthd and wait until `GET /_ping` answers 200.

        Raises:
            BerthdError: already running, exited early, or no answer within `timeout` seconds
                (the daemon is then killed; the message carries the log tail).
        """
        if self.running:
            raise BerthdError(f"berthd already running (pid {self.pid})")
        for d in (self.data_root, self.exec_root, self.docker_config):
            d.mkdir(parents=True, exist_ok=True)
        # Tests never reach Docker Hub: a pull of an unknown docker.io image must not leave the host.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "BERTH_REGISTRY_HUB": "0", **self._env}
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start: {' '.join(self.command())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                # Own session: a ^C in the test's terminal must not reach the daemon first.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise BerthdError(f"berthd exited with {code} during start\n{self.log_tail()}")
            if self.ping():
                return
            if time.monotonic() > deadline:
                self._kill_and_reap()
                raise BerthdError(
                    f"berthd did not answer /_ping in {timeout:g}s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def ping(self, timeout: float = 2.0) -> bool:
        """True when the API socket answers `GET /_ping` with 200."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(str(self.socket_path))
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: berthd\r\nConnection: close\r\n\r\n")
                head = s.recv(64)
        except OSError:
            return False
        return head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then wait up to `timeout` seconds.

        Raises:
            BerthdError: the daemon needed SIGKILL, or exited non-zero (log tail included).
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_and_reap()
                raise BerthdError(
                    f"berthd ignored SIGTERM for {timeout:g}s and was killed\n{self.log_tail()}"
                ) from None
        self._proc = None
        if proc.returncode != 0:
            raise BerthdError(f"berthd exited with {proc.returncode} on stop\n{self.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL the daemon (crash tests); its mounts and children stay as a crash leaves them."""
        if self.running:
            self._crashed = True
        self._kill_and_reap()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop (cleanly, if it is running) and start again on the same data and exec roots."""
        self.stop()
        self.start(timeout)

    def _kill_and_reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no berthd log)"
        return "--- berthd log tail ---\n" + "\n".join(text.splitlines()[-lines:])

    def cleanup(self) -> None:
        """Remove containers (through the daemon), stop it, unmount and delete data and exec roots.

        After `kill9()` the daemon is started once more so that it removes the containers that
        outlived it; if that start fails, the cleanup goes on without it. The log file and
        `base_dir` itself stay, for the caller to keep or remove.

        Raises:
            BerthdError: from `stop()`, after the cleanup has been done anyway.
        """
        error: BerthdError | None = None
        if not self.running and self._crashed:
            with contextlib.suppress(BerthdError):
                self.start()
        self._crashed = False
        if self.running:
            self._remove_containers()
            try:
                self.stop()
            except BerthdError as exc:
                error = exc
        self._proc = None
        _unmount_all(self.base_dir)
        self._remove_network_leftovers()
        for d in (self.data_root, self.exec_root, self.docker_config):
            if mounts_under(d):
                raise BerthdError(f"still mounted under {d}; not deleting it")
            shutil.rmtree(d, ignore_errors=True)
        if error is not None:
            raise error

    def _remove_network_leftovers(self) -> None:
        # Interfaces this daemon made carry its marker as ifalias; its nft table is its own.
        # Container netns bind mounts lived under the exec root and are unmounted already.
        alias = f"berth:{self.nft_table}"
        try:
            links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True,
                                              text=True, check=False).stdout or "[]")
        except ValueError:
            links = []
        for link in links:
            if link.get("ifalias") == alias:
                subprocess.run(["ip", "link", "del", link["ifname"]], capture_output=True, check=False)
        for family in ("ip", "ip6"):
            cmd = ["nft", "delete", "table", family, self.nft_table]
            subprocess.run(cmd, capture_output=True, check=False)

    def _remove_containers(self) -> None:
        # Containers outlive berthd (conmon is their parent), so ask berthd to remove them first.
        try:
            ids = self.docker("ps", "-aq", check=False, timeout=30).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False, timeout=120)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> BerthdProcess:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- clients -------------------------------------------------------------------------------

    def docker_env(self) -> dict[str, str]:
        """Environment for the docker CLI: this daemon, an isolated config dir, no hints."""
        env = {k: v for k, v in os.environ.items() if k not in _DOCKER_ENV_DROP}
        self.docker_config.mkdir(parents=True, exist_ok=True)
        cfg = self.docker_config / "config.json"
        if not cfg.exists():
            # With no auth in its config the CLI picks a credential helper it finds on PATH (pass,
            # secretservice); one placeholder entry keeps logins in this file, as on a bare host.
            cfg.write_text('{"auths": {"berth-tests.invalid": {}}}\n')
        env.update(
            DOCKER_HOST=self.host,
            DOCKER_CONFIG=str(self.docker_config),
            DOCKER_CLI_HINTS="false",
        )
        return env

    @overload
    def docker(
        self,
        *args: str,
        input: str | bytes | None = None,
        check: bool = True,
        timeout: float | None = 300,
        text: Literal[True] = True,
    ) -> subprocess.CompletedProcess[str]: ...

    @overload
    def docker(
        self,
        *args: str,
        input: str | bytes | None = None,
        check: bool = True,
        timeout: float | None = 300,
        text: Literal[False],
    ) -> subprocess.CompletedProcess[bytes]: ...

    def docker(
        self,
        *args: str,
        input: str | bytes | None = None,
        check: bool = True,
        timeout: float | None = 300,
        text: bool = True,
    ) -> subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]:
        """Run the real docker CLI against this daemon.

        Args:
            args: the CLI arguments, e.g. ``("run", "--rm", "busybox", "true")``.
            input: bytes or text for stdin (stdin is empty otherwise).
            check: raise `subprocess.CalledProcessError` (with stdout/stderr) on a non-zero exit.
            timeout: seconds before `subprocess.TimeoutExpired`.
            text: decode stdout/stderr as UTF-8 (invalid bytes replaced).
        """
        data = input.encode() if isinstance(input, str) else input
        raw = subprocess.run(
            [str(DOCKER_CLI), *args],
            input=data if data is not None else b"",
            capture_output=True,
            env=self.docker_env(),
            timeout=timeout,
            check=False,
        )
        result: subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]
        if text:
            result = subprocess.CompletedProcess(
                raw.args,
                raw.returncode,
                raw.stdout.decode(errors="replace"),
                raw.stderr.decode(errors="replace"),
            )
        else:
            result = raw
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, result.stderr
            )
        return result

    def api_client(self, version: str = "auto", timeout: int = 120) -> dockerpy.DockerClient:
        """A docker-py client for this daemon (API version negotiated unless given)."""
        import docker

        return docker.DockerClient(base_url=self.host, version=version, timeout=timeout)

    def rss_kib(self) -> int:
        """VmRSS of the daemon process in KiB.

        Raises:
            BerthdError: the daemon is not running.
        """
        pid = self.pid
        if pid is None:
            raise BerthdError("berthd is not running")
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise BerthdError(f"no VmRSS in /proc/{pid}/status")
