"""The containers service's contract: ContainersService in-process, ContainersClient over gRPC.

Records stay close to the Engine API: Config, HostConfig and NetworkingConfig are carried as the
JSON objects Docker defines (validated and normalised by the service), so the gateway only shapes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from images_svc.model import Change

__all__ = [
    "ZERO_TIME",
    "AttachOptions",
    "CommitRequest",
    "ContainerRecord",
    "ContainerState",
    "ContainersAPI",
    "CreateRequest",
    "CreateResult",
    "ExecConfig",
    "ExecRecord",
    "LogEntry",
    "LogsOptions",
    "OutputFrame",
    "PathStat",
    "PruneResult",
    "TopResult",
    "WaitEvent",
]

ZERO_TIME = "0001-01-01T00:00:00Z"  # Docker's "never" for StartedAt/FinishedAt


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """POST /containers/create, decoded but not yet validated."""

    name: str  # "" -> a generated adjective_noun name
    config: dict[str, Any]  # Docker's ContainerConfig (Image, Cmd, Entrypoint, Env, Tty, ...)
    host_config: dict[str, Any]  # Docker's HostConfig
    networking_config: dict[str, Any]  # Docker's NetworkingConfig
    platform: str = ""  # "linux/amd64" or ""
    api_version: str = "1.50"  # the request's API version, for version-gated defaults


@dataclass(frozen=True, slots=True)
class CreateResult:
    """201 body of POST /containers/create."""

    id: str
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ContainerState:
    """Docker's ContainerState."""

    status: str = "created"  # created|running|paused|restarting|removing|exited|dead
    running: bool = False
    paused: bool = False
    restarting: bool = False
    oom_killed: bool = False
    dead: bool = False
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    health: dict[str, Any] | None = None  # {"Status", "FailingStreak", "Log"} when configured


@dataclass(slots=True)
class ContainerRecord:
    """Everything GET /containers/{id}/json and GET /containers/json are built from."""

    id: str  # 64 hex
    name: str  # with the leading "/"
    created: str  # RFC 3339 with nanoseconds
    path: str  # the executable: first of Entrypoint+Cmd
    args: list[str]  # the rest
    config: dict[str, Any]  # normalised Docker Config (image defaults merged in)
    host_config: dict[str, Any]  # normalised Docker HostConfig
    networking_config: dict[str, Any]
    image: str  # Config.Image as the user gave it ("busybox")
    image_id: str  # "sha256:<hex>"
    state: ContainerState
    restart_count: int = 0
    node_id: str = ""
    log_path: str = ""
    hostname_path: str = ""
    hosts_path: str = ""
    resolv_conf_path: str = ""
    driver: str = "overlay2"
    graph_driver: dict[str, str] = field(default_factory=dict)  # LowerDir, UpperDir, MergedDir, WorkDir
    mounts: list[dict[str, Any]] = field(default_factory=list)  # Docker MountPoint objects
    exec_ids: list[str] = field(default_factory=list)
    size_rw: int | None = None  # only when asked (size=1)
    size_root_fs: int | None = None
    # Docker's NetworkSettings (Networks, SandboxKey, Ports ...); added by the containers service.
    network_settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WaitEvent:
    """One message of a wait: first registered=True (flush the 200 now), then the result."""

    registered: bool = False
    status_code: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class LogsOptions:
    """GET /containers/{id}/logs query."""

    stdout: bool = True
    stderr: bool = True
    follow: bool = False
    since_nano: int = 0
    until_nano: int = 0
    timestamps: bool = False
    tail: int = -1  # -1 = all


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log line (or partial line) as written by the container."""

    stream: str  # "stdout" or "stderr"
    data: bytes  # including the trailing newline when there was one
    time_nano: int


@dataclass(frozen=True, slots=True)
class AttachOptions:
    """POST /containers/{id}/attach query."""

    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    stream: bool = True
    logs: bool = False
    detach_keys: str = ""


@dataclass(frozen=True, slots=True)
class OutputFrame:
    """Output of an attach/exec: stream 1 stdout, 2 stderr (TTY output arrives as stream 1).

    The first frame of every attach is ``OutputFrame(ready=True)``: it means the request was
    accepted, so the gateway may hijack the connection.
    """

    stream: int = 1
    data: bytes = b""
    ready: bool = False


@dataclass(frozen=True, slots=True)
class ExecConfig:
    """POST /containers/{id}/exec body (Docker's ExecConfig)."""

    cmd: list[str]
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    tty: bool = False
    console_size: tuple[int, int] | None = None  # (height, width); 1.42+
    detach_keys: str = ""
    env: list[str] = field(default_factory=list)  # extra "KEY=value", replacing the container's
    privileged: bool = False
    user: str = ""  # the container's Config.User when empty
    working_dir: str = ""  # the container's WorkingDir when empty


@dataclass(slots=True)
class ExecRecord:
    """Everything GET /exec/{id}/json is built from."""

    id: str  # 64 hex
    container_id: str
    config: ExecConfig
    running: bool = False
    exit_code: int | None = None  # None until the process has exited
    pid: int = 0  # host pid while running
    open_stdin: bool = False  # stdio attached at start
    open_stdout: bool = False
    open_stderr: bool = False
    can_remove: bool = False


@dataclass(frozen=True, slots=True)
class PruneResult:
    """POST /containers/prune result."""

    deleted: list[str]
    space_reclaimed: int


@dataclass(frozen=True, slots=True)
class TopResult:
    """GET /containers/{id}/top: ps column titles and one row of values per process."""

    titles: list[str]
    processes: list[list[str]]


@dataclass(frozen=True, slots=True)
class PathStat:
    """Docker's ContainerPathStat (X-Docker-Container-Path-Stat, base64 JSON)."""

    name: str  # base name of the path as asked
    size: int
    mode: int  # Go os.FileMode: type bits high, permissions in the low 9 bits
    mtime: str  # RFC 3339 with nanoseconds
    link_target: str = ""  # symlinks: the target, fully resolved inside the container


class ContainersAPI(Protocol):
    """Everything callers can ask of the containers service.

    Errors are errdefs classes with Docker's texts: NotFound ("No such container: x"),
    AlreadyExists/Conflict ('Conflict. The container name "/x" is already in use by container
    "<id>". You have to remove (or rename) that container to be able to reuse that name.'),
    Conflict ("You cannot remove a running container <id>. Stop the container before attempting
    removal or force remove", "Container <id> is not running"), NotModified (start of a running
    container, stop of a stopped one), InvalidArgument (bad config values).
    """

    async def create_container(self, req: CreateRequest) -> CreateResult: ...

    async def get_container(self, ref: str, size: bool = False) -> ContainerRecord:
        """ref: full id, unique id prefix, or name with or without "/"."""
        ...

    async def list_containers(
        self, all: bool, limit: int, size: bool, filters: dict[str, list[str]]
    ) -> list[ContainerRecord]:
        """Newest first; filters as Docker's ps (id, name, label, status, exited, ancestor, ...)."""
        ...

    async def start_container(self, ref: str) -> None: ...

    async def stop_container(self, ref: str, stop_timeout: int | None, signal: str) -> None:
        """stop_timeout None: the container's StopTimeout (default 10 s); -1 waits forever."""
        ...

    async def restart_container(self, ref: str, stop_timeout: int | None, signal: str) -> None: ...

    async def kill_container(self, ref: str, signal: str) -> None: ...

    async def pause_container(self, ref: str) -> None: ...

    async def unpause_container(self, ref: str) -> None: ...

    def wait_container(self, ref: str, condition: str) -> AsyncIterator[WaitEvent]:
        """condition: "not-running" (default), "next-exit" or "removed"."""
        ...

    async def remove_container(self, ref: str, force: bool, volumes: bool, link: bool) -> None: ...

    async def rename_container(self, ref: str, new_name: str) -> None: ...

    async def resize_container(self, ref: str, height: int, width: int) -> None: ...

    def container_logs(self, ref: str, opts: LogsOptions) -> AsyncIterator[LogEntry]: ...

    def attach_container(
        self, ref: str, opts: AttachOptions, stdin: AsyncIterator[bytes] | None
    ) -> AsyncIterator[OutputFrame]:
        """First yields OutputFrame(ready=True), then output until the container's streams end.

        Resource handling:
            stdin is read until it ends (client half-close) and then the container's stdin is
            closed when StdinOnce is set; closing the returned iterator detaches.
        """
        ...

    async def prune_containers(self, filters: dict[str, list[str]]) -> PruneResult: ...

    async def create_exec(self, ref: str, config: ExecConfig) -> str:
        """Record an exec session in a running container; returns its 64-hex id.

        Raises:
            errdefs.NotFound: no such container.
            errdefs.Conflict: ``container <id> is not running`` / ``container <id> is paused,
                unpause the container before exec``.
            errdefs.InvalidArgument: ``No exec command specified``.
        """
        ...

    def start_exec(
        self, exec_id: str, detach: bool, tty: bool, stdin: AsyncIterator[bytes] | None
    ) -> AsyncIterator[OutputFrame]:
        """First yields OutputFrame(ready=True), then the process output until it exits.

        With ``detach`` the process runs in the background and only the ready frame is yielded.
        A command that cannot run (126/127) is reported as a stdout frame with Docker's message,
        and the exec's ExitCode is set; detached, it raises InvalidArgument instead.

        Resource handling:
            stdin is forwarded until it ends, then the process's stdin is closed. Closing the
            returned iterator detaches; the process keeps running and its exit is still recorded.

        Raises:
            errdefs.NotFound: ``No such exec instance: <id>``.
            errdefs.Conflict: already started, or the container is not running / paused.
        """
        ...

    async def get_exec(self, exec_id: str) -> ExecRecord:
        """Raises errdefs.NotFound ``No such exec instance: <id>``."""
        ...

    async def resize_exec(self, exec_id: str, height: int, width: int) -> None:
        """Set the exec's TTY size (waits briefly for a start in flight)."""
        ...

    async def top_container(self, ref: str, ps_args: str) -> TopResult:
        """Host ``ps`` rows of the container's processes; ps_args "" means "-ef".

        Raises:
            errdefs.Conflict: ``Container <id> is not running`` / ``... is restarting ...``.
            errdefs.InvalidArgument: a ps_args selector other than pid (moby validatePSArgs).
            errdefs.Internal: ps failed (``ps: <its first stderr line>``).
        """
        ...

    def container_stats(self, ref: str, stream: bool, one_shot: bool) -> AsyncIterator[dict[str, Any]]:
        """Docker's stats JSON objects: every second while ``stream``, else one sample (two
        reads one second apart so precpu_stats is filled, unless ``one_shot``). A container
        that is not running gives Docker's zero object."""
        ...

    async def update_container(self, ref: str, update: dict[str, Any]) -> list[str]:
        """docker update: Docker's UpdateConfig (Resources fields + RestartPolicy); zero values
        leave a field unchanged (moby). Applied live to a running container and persisted.
        Returns warnings.

        Raises:
            errdefs.InvalidArgument: bad values, or ``Cannot update container <id>: <why>``.
            errdefs.Internal: the runtime refused (``Cannot update container <id>: <why>``).
        """
        ...

    async def container_changes(self, ref: str) -> list[Change]:
        """docker diff: changes of the container's layer, in walk order (Docker's init-layer
        paths such as /etc/hosts and /dev are never listed)."""
        ...

    def export_container(self, ref: str) -> AsyncIterator[bytes]:
        """docker export: a tar of the container's root filesystem (no volume contents)."""
        ...

    async def stat_archive(self, ref: str, path: str) -> PathStat:
        """HEAD /containers/{id}/archive.

        Raises:
            errdefs.NotFound: ``Could not find the file <path> in container <ref>``.
            errdefs.InvalidArgument: ``path cannot be empty``.
        """
        ...

    def get_archive(self, ref: str, path: str) -> AsyncIterator[PathStat | bytes]:
        """GET /containers/{id}/archive: first the PathStat of ``path``, then the tar bytes.

        Raises:
            errdefs.NotFound: as stat_archive, before the first item.
        """
        ...

    async def put_archive(
        self, ref: str, path: str, data: AsyncIterator[bytes], no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> None:
        """PUT /containers/{id}/archive: extract the tar ``data`` into directory ``path``.

        Raises:
            errdefs.NotFound: ``Could not find the file <path> in container <ref>``.
            errdefs.InvalidArgument: ``extraction point is not a directory``, read-only
                targets, hostile archives.
        """
        ...

    # -- commit (issue 3) --

    async def commit_container(self, ref: str, req: CommitRequest) -> str:
        """docker commit: pause (unless ``req.pause`` is false), snapshot to image, unpause.

        Returns the new image id; publishes the container's ``commit`` event.

        Raises:
            errdefs.NotFound: ``No such container: <ref>``.
            errdefs.InvalidArgument: bad changes or repository name.
        """
        ...


@dataclass(frozen=True, slots=True)
class CommitRequest:
    """POST /commit, decoded."""

    repo: str = ""
    tag: str = ""
    comment: str = ""
    author: str = ""
    pause: bool = True
    changes: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None  # the body's Config; None = the container's
