"""Exec sessions (docker exec): records, start under ``conmon --exec``, output, resize, events.

Output is read from the session's k8s-file log rather than conmon's attach socket: the process
starts before anyone can connect to the socket, and the log holds every byte from the first
one. The socket is used only for stdin. Records outlive the process (inspect reads ExitCode);
a container lists in ExecIDs only its sessions that have not exited (moby's behaviour), and
they are all forgotten when the container is removed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

import errdefs
from containers_svc import runspec
from containers_svc.api import ContainerRecord, ExecConfig, ExecRecord, LogsOptions, OutputFrame
from containers_svc.attach import pump_stdin, recv_packet
from containers_svc.logs import read_log
from containers_svc.rootfs import ExecError, find_executable, lookup_user
from events_svc.bus import EventsAPI
from events_svc.model import Event
from ocirun import ExecSession, OciRuntime, connect_attach_path
from ocirun.spec import build_exec_process

__all__ = ["ExecManager"]

log = logging.getLogger(__name__)

LOG_POLL = 0.02  # how often a session's log is polled for new output
RESIZE_WAIT = 10.0  # moby waits this long for a start in flight before resizing
READER_WAIT = 30.0  # how long the files of a finished session wait for its reader
_OCI_PREFIX = "OCI runtime exec failed: exec failed: unable to start container process: "


@dataclass(eq=False)
class _Exec:
    rec: ExecRecord
    started: bool = False
    launched: anyio.Event = field(default_factory=anyio.Event)  # set once started or failed
    done: anyio.Event = field(default_factory=anyio.Event)  # set after the exit is recorded
    read: anyio.Event = field(default_factory=anyio.Event)  # the attached reader finished
    exec_dir: Path | None = None


def _replace_env(base: list[str], extra: list[str]) -> list[str]:
    """moby ReplaceOrAppendEnvValues: ``extra`` entries override same-named ``base`` entries."""
    out = list(base)
    index = {e.split("=", 1)[0]: i for i, e in enumerate(out)}
    for e in extra:
        key = e.split("=", 1)[0]
        if key in index:
            out[index[key]] = e
        else:
            index[key] = len(out)
            out.append(e)
    return out


def _command_text(cfg: ExecConfig) -> str:
    return " ".join(cfg.cmd)


def _runtime_failure(message: str) -> tuple[str, int]:
    """Docker's exit code for an exec the runtime refused: always 126 (``run`` gives 127 for a
    missing command, an exec does not: moby's ContainerExecStart records 126 for any failure)."""
    return f"OCI runtime exec failed: {message}: unknown", 126


class ExecManager:
    """Exec sessions of this node's containers; the ContainersService delegates to it.

    Args:
        runtime: the OCI driver.
        events: where exec_create/exec_start/exec_die are published.
        resolve: container ref -> its live record (raises errdefs.NotFound).
        bundle_of: container id -> its bundle directory (holds the OCI config.json).
        task_group: the service's task group (raises errdefs.Unavailable when not running).
        linked_env: container record -> its --link variables (dockerd gives them to execs too).
    """

    def __init__(
        self,
        runtime: OciRuntime,
        events: EventsAPI,
        resolve: Callable[[str], ContainerRecord],
        bundle_of: Callable[[str], Path],
        task_group: Callable[[], anyio.abc.TaskGroup],
        linked_env: Callable[[ContainerRecord], list[str]] | None = None,
    ) -> None:
        self._linked_env = linked_env
        self._runtime = runtime
        self._events = events
        self._resolve = resolve
        self._bundle_of = bundle_of
        self._task_group = task_group
        self._execs: dict[str, _Exec] = {}

    # ---- records -------------------------------------------------------------------------------

    def ids_of(self, container_id: str) -> list[str]:
        """Exec ids of a container that have not exited (its ExecIDs), oldest first."""
        return [i for i, e in self._execs.items()
                if e.rec.container_id == container_id and e.rec.exit_code is None]  # fmt: skip

    def forget(self, container_id: str) -> None:
        """Drop every record of a removed container."""
        for i in [i for i, e in self._execs.items() if e.rec.container_id == container_id]:
            del self._execs[i]

    def discard(self, exec_id: str) -> None:
        """Drop one session's record (healthcheck probes: nobody inspects them afterwards)."""
        self._execs.pop(exec_id, None)

    def _get(self, exec_id: str) -> _Exec:
        ex = self._execs.get(exec_id)
        if ex is None:
            raise errdefs.NotFound(f"No such exec instance: {exec_id}")
        return ex

    @staticmethod
    def _check_active(rec: ContainerRecord, ref: str) -> None:
        st = rec.state
        if not st.running:
            raise errdefs.Conflict(f"container {rec.id} is not running")
        if st.paused:
            raise errdefs.Conflict(f"container {ref} is paused, unpause the container before exec")
        if st.restarting:
            raise errdefs.Conflict(
                f"Container {rec.id} is restarting, wait until the container is running"
            )

    async def _publish(self, rec: ContainerRecord, action: str, **extra: str) -> None:
        attrs = {**(rec.config.get("Labels") or {}), "image": rec.config.get("Image", ""),
                 "name": rec.name.removeprefix("/"), **extra}  # fmt: skip
        try:
            await self._events.publish(Event(type="container", action=action, actor_id=rec.id,
                                             attributes=attrs))  # fmt: skip
        except Exception:  # best effort, as the container events
            log.exception("publishing %s of %s failed", action, rec.id)

    async def create(self, ref: str, config: ExecConfig) -> str:
        rec = self._resolve(ref)
        self._check_active(rec, ref)
        if not config.cmd:
            raise errdefs.InvalidArgument("No exec command specified")
        exec_id = secrets.token_hex(32)
        while exec_id in self._execs:
            exec_id = secrets.token_hex(32)
        self._execs[exec_id] = _Exec(ExecRecord(id=exec_id, container_id=rec.id, config=config))
        await self._publish(rec, f"exec_create: {_command_text(config)}", execID=exec_id)
        return exec_id

    async def get(self, exec_id: str) -> ExecRecord:
        return dataclasses.replace(self._get(exec_id).rec)

    # ---- start ---------------------------------------------------------------------------------

    def _process(self, rec: ContainerRecord, cfg: ExecConfig, linked: list[str]) -> dict[str, Any]:
        """The OCI process of the session (blocking: reads the container's files)."""
        # /proc/<pid>/root is the container's own view, bind mounts included.
        root = f"/proc/{rec.state.pid}/root"
        user = lookup_user(root, cfg.user or rec.config.get("User") or "",
                           rec.host_config.get("GroupAdd") or [])  # fmt: skip
        shown = dataclasses.replace(rec, config={**rec.config, "Tty": cfg.tty})
        env = _replace_env(runspec.process_env(shown, user.home, linked), cfg.env)
        cwd = cfg.working_dir or rec.config.get("WorkingDir") or "/"
        find_executable(root, cfg.cmd[0], env, cwd)
        oci = json.loads((self._bundle_of(rec.id) / "config.json").read_text())
        oci.setdefault("process", {})["env"] = []  # env above is complete
        return build_exec_process(
            oci, cfg.cmd, env=env, cwd=cwd, uid=user.uid, gid=user.gid,
            additional_gids=list(user.additional_gids), terminal=cfg.tty, privileged=cfg.privileged,
        )  # fmt: skip

    async def _launch(self, ex: _Exec, rec: ContainerRecord, stdin: bool) -> ExecSession:
        """Start the process; on failure record Docker's exit code and raise ExecError."""
        cfg = ex.rec.config
        try:
            try:
                linked = self._linked_env(rec) if self._linked_env is not None else []
                process = await anyio.to_thread.run_sync(self._process, rec, cfg, linked)
            except ExecError as e:
                raise ExecError(_OCI_PREFIX + e.message + ": unknown", 126) from None
            except errdefs.InvalidArgument as e:
                raise ExecError(_OCI_PREFIX + e.message + ": unknown", 126) from None
            try:
                session = await self._runtime.exec(rec.id, ex.rec.id, process, terminal=cfg.tty,
                                                   stdin=stdin)  # fmt: skip
            except errdefs.Internal as e:
                raise ExecError(*_runtime_failure(e.message)) from None
        except ExecError as e:
            ex.rec.exit_code = e.exit_code
            ex.done.set()
            ex.read.set()
            await self._publish(rec, "exec_die", execID=ex.rec.id, exitCode=str(e.exit_code))
            raise
        finally:
            ex.launched.set()
        ex.exec_dir = session.exec_dir
        ex.rec.running, ex.rec.pid = True, session.pid
        if cfg.tty and cfg.console_size and all(cfg.console_size):
            await self._write_resize(ex, *cfg.console_size)
        return session

    async def _finish(self, ex: _Exec, rec: ContainerRecord, session: ExecSession) -> None:
        """Record the exit, publish exec_die, drop the session's files once read."""
        try:
            code = await session.wait()
        except errdefs.EngineError as e:
            log.warning("exec %s: %s", ex.rec.id, e.message)
            code = 126
        ex.rec.running, ex.rec.pid, ex.rec.exit_code = False, 0, code
        ex.done.set()
        await self._publish(rec, "exec_die", execID=ex.rec.id, exitCode=str(code))
        with anyio.move_on_after(READER_WAIT):
            await ex.read.wait()
        edir = session.exec_dir
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(edir, ignore_errors=True))

    async def start(
        self, exec_id: str, detach: bool, tty: bool, stdin: AsyncIterator[bytes] | None
    ) -> AsyncIterator[OutputFrame]:
        ex = self._get(exec_id)
        if ex.started:
            if ex.rec.exit_code is not None:
                raise errdefs.Conflict(f"Error: Exec command {exec_id} has already run")
            raise errdefs.Conflict(f"Error: Exec command {exec_id} is already running")
        rec = self._resolve(ex.rec.container_id)
        self._check_active(rec, ex.rec.container_id)
        tg = self._task_group()
        cfg = ex.rec.config
        ex.started = True
        with_stdin = cfg.attach_stdin and stdin is not None and not detach
        ex.rec.open_stdin = with_stdin
        ex.rec.open_stdout = cfg.attach_stdout and not detach
        ex.rec.open_stderr = cfg.attach_stderr and not detach
        await self._publish(rec, f"exec_start: {_command_text(cfg)}", execID=exec_id)
        if detach:
            ex.read.set()
            with anyio.CancelScope(shield=True):
                session = await self._launch(ex, rec, stdin=False)  # ExecError is InvalidArgument
                tg.start_soon(self._finish, ex, rec, session)
            yield OutputFrame(ready=True)
            return
        yield OutputFrame(ready=True)
        failure = ""
        # Shielded: once launched, the exit must be recorded even if the client is gone.
        with anyio.CancelScope(shield=True):
            try:
                session = await self._launch(ex, rec, stdin=with_stdin)
            except ExecError as e:
                failure = e.message
            else:
                tg.start_soon(self._finish, ex, rec, session)
        if failure:
            yield OutputFrame(1, (failure + "\r\n").encode())
            return
        scope = anyio.CancelScope()
        sock: socket.socket | None = None
        try:
            if with_stdin and stdin is not None:
                try:
                    sock = await anyio.to_thread.run_sync(connect_attach_path, session.attach_socket)
                except (FileNotFoundError, ConnectionRefusedError):
                    # A quick process (`docker exec -i c echo hi`) may be gone, and conmon with its
                    # socket: nothing to feed, but its output is in the log below.
                    sock = None
                else:
                    sock.setblocking(False)
                    tg.start_soon(self._pump, sock, stdin, scope)
            opts = LogsOptions(stdout=cfg.attach_stdout, stderr=cfg.attach_stderr, follow=True)
            log_path = str(session.log_path or session.exec_dir / "exec.log")
            async for entry in read_log(log_path, opts, lambda: not ex.done.is_set(), poll=LOG_POLL):
                yield OutputFrame(1 if cfg.tty or entry.stream == "stdout" else 2, entry.data)
        finally:
            scope.cancel()
            if sock is not None:
                sock.close()
            ex.read.set()

    @staticmethod
    async def _pump(sock: socket.socket, stdin: AsyncIterator[bytes], scope: anyio.CancelScope) -> None:
        """Forward stdin (closing the process's stdin at its end) and drain what conmon sends back."""

        async def drain() -> None:
            while await recv_packet(sock):
                pass

        with scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain)
                await pump_stdin(sock, stdin, True, b"", anyio.Event())

    # ---- resize --------------------------------------------------------------------------------

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        ex = self._get(exec_id)
        with anyio.move_on_after(RESIZE_WAIT):
            await ex.launched.wait()
        if ex.rec.running:
            await self._write_resize(ex, height, width)

    async def _write_resize(self, ex: _Exec, height: int, width: int) -> None:
        if ex.exec_dir is None:
            return
        ctl = ex.exec_dir / "ctl"

        def write() -> None:
            try:
                fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                return  # the session ended meanwhile
            try:
                os.write(fd, f"1 {height} {width}\n".encode())
            finally:
                os.close(fd)

        await anyio.to_thread.run_sync(write)
