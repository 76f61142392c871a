"""OciRuntime: a thin, stateless conmon + crun/runc driver (podman's OCIRuntime shape, no state logic).

conmon is every container's parent. It double-forks and calls setsid(), so berth (or any caller) may
die while containers keep running; all state lives in files:

    <exec_root>/runtime/<crun|runc>/        the runtime's --root (its state.json per container)
    <exec_root>/containers/<id>/conmon.pid  conmon's pid
    <exec_root>/containers/<id>/pidfile     the container's init pid (host pid namespace)
    <exec_root>/containers/<id>/exits/<id>  exit code as decimal text, written atomically by conmon
                                            when the container exits (128+N for signal N)
    <exec_root>/containers/<id>/oom         present if the container was OOM-killed
    <bundle>/attach                         conmon's SOCK_SEQPACKET attach socket (see below)
    <bundle>/ctl                            FIFO: "1 <rows> <cols>\\n" resizes the tty (conmon ctl)

Logs use conmon's ``k8s-file`` driver, one line per chunk::

    2024-01-01T00:00:00.123456789+00:00 stdout F hello world
    <RFC3339Nano timestamp> <stdout|stderr> <F = full line | P = partial, continued> <bytes>

Attach socket: each packet read starts with one byte naming the stream (2 stdout, 3 stderr) followed
by payload; bytes written go to the container's stdin (needs ``stdin=True``). Its path may exceed the
108-byte sun_path limit: connect with :func:`connect_attach_path` which goes through /proc/self/fd.

Cgroup hybrid hosts (cgroup v1 controllers plus cgroup2 on /sys/fs/cgroup/unified): crun 1.8 refuses
them ("cgroups in hybrid mode not supported"). Every crun invocation (conmon's create/exec and our
state/kill/pause/resume/update/delete) then runs as
``unshare --mount --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec crun …'``:
a throwaway private mount namespace that lives only as long as that crun process, so no mount
changes reach the host and no long-lived namespace pins other containers' rootfs mounts. crun sees a
plain v1 layout. runc (which handles hybrid) is the fallback when crun or unshare is missing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal as _signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

import errdefs

from .host import HostFacts, detect_host_facts

__all__ = [
    "ContainerPaths",
    "ExecSession",
    "OciRuntime",
    "connect_attach_path",
    "parse_k8s_log_line",
]

log = logging.getLogger(__name__)

_UNIFIED = "/sys/fs/cgroup/unified"


@dataclass(frozen=True)
class ContainerPaths:
    """Where conmon keeps one container's runtime files (under the exec root)."""

    dir: Path

    @property
    def conmon_pid_file(self) -> Path:
        return self.dir / "conmon.pid"

    @property
    def pid_file(self) -> Path:
        return self.dir / "pidfile"

    @property
    def exit_dir(self) -> Path:
        return self.dir / "exits"

    @property
    def exit_file(self) -> Path:
        return self.exit_dir / self.dir.name

    @property
    def oom_file(self) -> Path:
        return self.dir / "oom"


def parse_k8s_log_line(line: bytes) -> tuple[str, str, bool, bytes]:
    """Split one k8s-file log line into (timestamp, stream, partial, payload without newline)."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    parts += [b""] * (4 - len(parts))
    ts, stream, tag, payload = parts
    return ts.decode(), stream.decode(), tag == b"P", payload


def connect_attach_path(path: str | os.PathLike[str]) -> socket.socket:
    """Connect to a conmon attach socket of any path length (blocking connect; it is local).

    Resource handling: the caller closes the returned socket.
    """
    p = Path(path)
    dfd = os.open(p.parent, os.O_PATH | os.O_CLOEXEC)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            s.connect(f"/proc/self/fd/{dfd}/{p.name}")
        except BaseException:
            s.close()
            raise
        return s
    finally:
        os.close(dfd)


class _SyncPipe:
    """Read end of conmon's _OCI_SYNCPIPE: newline-delimited ``{"data": N, "message": …}``."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        self._buf = b""

    def close_write(self) -> None:
        if self.w >= 0:
            os.close(self.w)
            self.w = -1

    def close(self) -> None:
        self.close_write()
        if self.r >= 0:
            os.close(self.r)
            self.r = -1

    async def read_message(self) -> dict[str, Any] | None:
        """Next JSON message, or None at EOF (conmon gone)."""
        while b"\n" not in self._buf:
            await anyio.wait_readable(self.r)
            try:
                chunk = os.read(self.r, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        msg: dict[str, Any] = json.loads(line)
        return msg


@dataclass
class ExecSession:
    """A process started in a running container by ``conmon --exec``.

    ``pid`` is the exec'd process (host pid namespace). Await :meth:`wait` for its exit code.
    Resource handling: :meth:`wait` (or :meth:`aclose`) releases the pipe to conmon.
    """

    exec_id: str
    pid: int
    exec_dir: Path
    log_path: Path | None
    _pipe: _SyncPipe

    @property
    def attach_socket(self) -> Path:
        return self.exec_dir / "attach"

    async def wait(self) -> int:
        """Exit code of the exec'd process (128+N when killed by signal N).

        Raises:
            errdefs.Internal: conmon went away without reporting.
        """
        try:
            msg = await self._pipe.read_message()
        finally:
            self._pipe.close()
        if msg is None:
            raise errdefs.Internal(f"conmon for exec {self.exec_id} exited without an exit code")
        code = int(msg.get("data", -1))
        if code < 0 and msg.get("message"):
            raise errdefs.Internal(f"exec failed: {msg['message'].strip()}")
        return code

    async def aclose(self) -> None:
        self._pipe.close()


class OciRuntime:
    """The driver. Stateless: every call works from the files under ``exec_root`` alone.

    Callers own state checks (running vs paused, etc.); errors from the runtime surface as
    ``errdefs.NotFound`` (no such runtime container) or ``errdefs.Internal`` with its stderr.
    """

    def __init__(
        self, exec_root: str | os.PathLike[str], host: HostFacts, runtime: str | None = None
    ) -> None:
        """Pick the runtime and how to run it on this host.

        Args:
            exec_root: berth's exec root (``/run/berth``).
            host: detected host facts.
            runtime: ``crun`` or ``runc``; ``None`` picks crun when it can work here, else runc.

        Raises:
            errdefs.Unavailable: no usable OCI runtime or no conmon.
        """
        self.exec_root = Path(exec_root)
        self.host = host
        if host.conmon_path is None:
            raise errdefs.Unavailable("conmon is not installed")
        self.conmon_path = host.conmon_path
        umount = shutil.which("umount")
        crun_ok = "crun" in host.runtimes and (
            host.cgroup_layout != "hybrid" or (host.unshare_path is not None and umount is not None)
        )
        requested = runtime
        if runtime is None:
            runtime = "crun" if crun_ok else "runc"
        if runtime not in host.runtimes:
            raise errdefs.Unavailable(f"OCI runtime {runtime} is not installed")
        if runtime == "crun" and not crun_ok:
            raise errdefs.Unavailable("crun cannot run on this cgroup hybrid host without unshare and umount")
        self.name = runtime
        self.runtime_path = host.runtimes[runtime]
        self.root = self.exec_root / "runtime" / runtime
        prefix: list[str] = []
        if runtime == "crun" and host.cgroup_layout == "hybrid":
            assert host.unshare_path is not None and umount is not None
            script = f'{umount} {_UNIFIED} || exit 125; exec "$0" "$@"'
            prefix = [host.unshare_path, "--mount", "--propagation", "private", "/bin/sh", "-c", script]
            self.strategy = (
                f"cgroup hybrid layout: running crun in a private mount namespace without {_UNIFIED} "
                "(unshare --mount --propagation private per crun call; host mounts untouched)"
            )
        elif runtime == "runc" and host.cgroup_layout == "hybrid":
            why = "as requested" if requested == "runc" else "crun unusable here"
            self.strategy = f"cgroup hybrid layout: using runc ({why}; runc supports hybrid)"
        else:
            self.strategy = f"cgroup {host.cgroup_layout} layout: running {runtime} directly"
        # argv that runs the runtime with its global options: <prefix> runtime --root <root>
        self._argv = [*prefix, self.runtime_path, "--root", str(self.root)]

    @classmethod
    async def detect(cls, exec_root: str | os.PathLike[str], runtime: str | None = None) -> OciRuntime:
        """Detect host facts (in a thread) and build the driver."""
        host = await anyio.to_thread.run_sync(detect_host_facts)
        return cls(exec_root, host, runtime)

    def paths(self, container_id: str) -> ContainerPaths:
        """The per-container file layout under the exec root."""
        return ContainerPaths(self.exec_root / "containers" / container_id)

    @property
    def runtime_argv(self) -> list[str]:
        """The command prefix that runs the runtime (with --root), e.g. for benchmarks."""
        return list(self._argv)

    # ---- helpers -------------------------------------------------------------------------------

    async def _run(self, *args: str, input: bytes | None = None) -> bytes:
        cmd = [*self._argv, *args]
        proc = await anyio.run_process(cmd, input=input, check=False)
        if proc.returncode != 0:
            err = (proc.stderr or b"").decode(errors="replace").strip()
            lowered = err.lower()
            cid = args[-1] if args else ""
            if "does not exist" in lowered or "no such file or directory" in lowered:
                raise errdefs.NotFound(f"No such container: {cid}")
            raise errdefs.Internal(f"{self.name} {args[0]} failed: {err or f'exit status {proc.returncode}'}")
        return proc.stdout or b""

    def _conmon_base(self, container_id: str, cuuid: str, bundle: Path) -> list[str]:
        argv = [
            self.conmon_path, "--api-version", "1",
            "--cid", container_id, "--cuuid", cuuid, "--name", cuuid,
            "--runtime", self._argv[0],
        ]  # fmt: skip
        argv += [f"--runtime-arg={a}" for a in self._argv[1:]]
        argv += [
            "--bundle",
            str(bundle),
            "--full-attach",
            "--socket-dir-path",
            str(bundle),
            "--log-level",
            "error",
        ]
        return argv

    async def _spawn_conmon(
        self,
        argv: list[str],
        pipe: _SyncPipe,
        extra_env: Mapping[str, str] | None = None,
        extra_fds: Sequence[int] = (),
    ) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "_OCI_SYNCPIPE": str(pipe.w)}
        env.update(extra_env or {})
        try:
            proc = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,  # conmon also setsid()s: never in our process group
                pass_fds=(pipe.w, *extra_fds),
            )
        finally:
            pipe.close_write()
        async with proc:
            assert proc.stderr is not None
            err = b""
            async for chunk in proc.stderr:
                err += chunk
            rc = await proc.wait()
        if rc != 0:
            raise errdefs.Internal(f"conmon failed (exit {rc}): {err.decode(errors='replace').strip()}")

    # ---- lifecycle -----------------------------------------------------------------------------

    async def create(
        self,
        container_id: str,
        bundle_dir: str | os.PathLike[str],
        config: Mapping[str, Any] | None = None,
        *,
        log_path: str | os.PathLike[str] | None = None,
        log_size_max: int = -1,
        log_driver: str = "k8s-file",
        terminal: bool = False,
        stdin: bool = False,
        leave_stdin_open: bool = False,
    ) -> int:
        """Create the runtime container under a new conmon; the process waits for :meth:`start`.

        Writes ``config`` to ``<bundle>/config.json`` when given (else it must already be there).
        Between create and start, clients may connect to ``<bundle>/attach`` so no output is lost.

        Returns:
            the container init pid.

        Raises:
            errdefs.Internal: conmon or the runtime failed; the message carries the runtime's error.
        """
        bundle = Path(bundle_dir)
        paths = self.paths(container_id)
        await anyio.to_thread.run_sync(self._prepare_create, bundle, paths, config)
        argv = self._conmon_base(container_id, container_id, bundle)
        argv += [
            "--container-pidfile", str(paths.pid_file), "--conmon-pidfile", str(paths.conmon_pid_file),
            "--exit-dir", str(paths.exit_dir), "--persist-dir", str(paths.dir),
        ]  # fmt: skip
        # conmon insists on a log driver; without a caller path the log goes to the exec dir.
        if log_driver == "none":  # conmon's own "none" driver: output reaches attachers only
            argv += ["--log-path", "none:"]
        else:
            argv += ["--log-path", f"k8s-file:{os.fspath(log_path or paths.dir / 'ctr.log')}"]
        if log_size_max > 0 and log_driver != "none":
            argv += ["--log-size-max", str(log_size_max)]
        if terminal:
            argv.append("--terminal")
        if stdin:
            argv.append("--stdin")
            if leave_stdin_open:
                argv.append("--leave-stdin-open")
        pipe = _SyncPipe()
        try:
            await self._spawn_conmon(argv, pipe)
            msg = await pipe.read_message()
        finally:
            pipe.close()
        if msg is None:
            raise errdefs.Internal(f"conmon for {container_id} exited before reporting the container pid")
        pid = int(msg.get("data", -1))
        if pid <= 0:
            raise errdefs.Internal(f"{self.name} create failed: {str(msg.get('message', '')).strip()}")
        return pid

    @staticmethod
    def _prepare_create(bundle: Path, paths: ContainerPaths, config: Mapping[str, Any] | None) -> None:
        paths.dir.mkdir(parents=True, exist_ok=True)
        paths.exit_dir.mkdir(exist_ok=True)
        for stale in (paths.exit_file, paths.pid_file, paths.conmon_pid_file, paths.oom_file,
                      paths.dir / "exit", bundle / "ctl", bundle / "winsz", bundle / "attach"):  # fmt: skip
            stale.unlink(missing_ok=True)
        if config is not None:
            bundle.mkdir(parents=True, exist_ok=True)
            tmp = bundle / "config.json.tmp"
            tmp.write_text(json.dumps(config))
            os.replace(tmp, bundle / "config.json")

    async def start(self, container_id: str) -> None:
        """Let a created container run its process.

        Raises:
            errdefs.NotFound, errdefs.Internal
        """
        await self._run("start", container_id)

    async def create_and_start(
        self,
        container_id: str,
        bundle_dir: str | os.PathLike[str],
        config: Mapping[str, Any] | None = None,
        *,
        log_path: str | os.PathLike[str] | None = None,
        terminal: bool = False,
        stdin: bool = False,
    ) -> int:
        """:meth:`create` then :meth:`start`; on a failed start the runtime container is deleted.

        Returns:
            the container init pid.
        """
        pid = await self.create(
            container_id, bundle_dir, config, log_path=log_path, terminal=terminal, stdin=stdin
        )
        try:
            await self.start(container_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await self.delete(container_id, force=True)
                except errdefs.EngineError as e:
                    log.warning("cleanup after failed start of %s: %s", container_id, e)
            raise
        return pid

    async def state(self, container_id: str) -> dict[str, Any]:
        """The runtime's ``state`` JSON: id, pid, status (created|running|paused|stopped), bundle …

        Raises:
            errdefs.NotFound: the runtime does not know the container.
        """
        out = await self._run("state", container_id)
        result: dict[str, Any] = json.loads(out)
        return result

    async def kill(
        self, container_id: str, signal: int | str = _signal.SIGTERM, *, all: bool = False
    ) -> None:
        """Send ``signal`` to the init process (``all``: to every process of the container)."""
        sig = signal if isinstance(signal, str) else str(int(signal))
        await self._run("kill", *(["--all"] if all else []), container_id, sig)

    async def pause(self, container_id: str) -> None:
        """Freeze every process of the container (cgroup freezer)."""
        await self._run("pause", container_id)

    async def resume(self, container_id: str) -> None:
        """Thaw a paused container."""
        await self._run("resume", container_id)

    async def delete(self, container_id: str, *, force: bool = False) -> None:
        """Remove the runtime container (``force`` kills it first). Leaves conmon files alone."""
        await self._run("delete", *(["--force"] if force else []), container_id)

    async def update(self, container_id: str, resources: Mapping[str, Any]) -> None:
        """Apply new ``linux.resources`` (OCI JSON: memory, cpu, pids, blockIO) to a live container."""
        path = self.paths(container_id).dir / "update-resources.json"
        await anyio.Path(path).write_text(json.dumps(dict(resources)))
        try:
            await self._run("update", "--resources", str(path), container_id)
        finally:
            await anyio.Path(path).unlink(missing_ok=True)

    async def read_exit_code(self, container_id: str) -> int | None:
        """The exit code conmon recorded, or None while the container has not exited."""
        try:
            text = await anyio.Path(self.paths(container_id).exit_file).read_text()
        except FileNotFoundError:
            return None
        return int(text.strip())

    async def wait_exit(self, container_id: str, *, poll_interval: float = 0.02) -> int:
        """Poll the exit file until conmon writes it; returns the exit code. Cancel to give up."""
        while True:
            code = await self.read_exit_code(container_id)
            if code is not None:
                return code
            await anyio.sleep(poll_interval)

    async def conmon_pid(self, container_id: str) -> int | None:
        """conmon's pid from its pid file, None when absent."""
        try:
            return int((await anyio.Path(self.paths(container_id).conmon_pid_file).read_text()).strip())
        except FileNotFoundError:
            return None

    async def cleanup_files(self, container_id: str) -> None:
        """Remove ``<exec_root>/containers/<id>/`` (after delete)."""
        await anyio.to_thread.run_sync(
            lambda: shutil.rmtree(self.paths(container_id).dir, ignore_errors=True)
        )

    # ---- exec ----------------------------------------------------------------------------------

    async def exec(
        self,
        container_id: str,
        exec_id: str,
        process: Mapping[str, Any],
        *,
        exec_dir: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        terminal: bool = False,
        stdin: bool = False,
    ) -> ExecSession:
        """Start ``process`` (an OCI ``process`` object) in the running container via ``conmon --exec``.

        Output goes to ``log_path`` (k8s-file) and the session's attach socket. Await
        ``session.wait()`` for the exit code.

        Args:
            exec_dir: where conmon keeps this session's files (default
                ``<exec_root>/containers/<id>/exec/<exec_id>``).

        Raises:
            errdefs.Internal: the runtime could not start the process (message from the runtime).
        """
        edir = Path(exec_dir) if exec_dir is not None else self.paths(container_id).dir / "exec" / exec_id
        await anyio.to_thread.run_sync(self._prepare_exec, edir, process)
        argv = self._conmon_base(container_id, exec_id, edir)
        argv += [
            "--exec", "--exec-process-spec", str(edir / "process.json"),
            "--container-pidfile", str(edir / "exec.pid"), "--exit-dir", str(edir),
        ]  # fmt: skip
        argv += ["--log-path", f"k8s-file:{os.fspath(log_path or edir / 'exec.log')}"]
        if terminal:
            argv.append("--terminal")
        if stdin:
            argv.append("--stdin")
        pipe = _SyncPipe()
        try:
            await self._spawn_conmon(argv, pipe)
            msg = await pipe.read_message()
        except BaseException:
            pipe.close()
            raise
        if msg is None:
            pipe.close()
            raise errdefs.Internal(f"conmon for exec {exec_id} exited before reporting a pid")
        pid = int(msg.get("data", -1))
        if pid <= 0:
            # a negative value is -(exit status) of a failed runtime exec
            pipe.close()
            raise errdefs.Internal(f"{self.name} exec failed: {str(msg.get('message', '')).strip()}")
        return ExecSession(exec_id, pid, edir, Path(log_path) if log_path is not None else None, pipe)

    @staticmethod
    def _prepare_exec(edir: Path, process: Mapping[str, Any]) -> None:
        edir.mkdir(parents=True, exist_ok=True)
        for stale in ("ctl", "winsz", "attach", "exec.pid"):
            (edir / stale).unlink(missing_ok=True)
        (edir / "process.json").write_text(json.dumps(dict(process)))
