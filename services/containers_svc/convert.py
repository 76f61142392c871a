"""Pure conversions between the containers API records and berthapi.containers.v1 messages.

Config, HostConfig and NetworkingConfig travel as their Docker JSON in the ``*_json`` fields.
NOTE: the proto has no field for GraphDriver or the full NetworkSettings: they are rebuilt on the
client side from ``rootfs_path`` (snapshot dirs are siblings of ``merged``) and the network mode.
"""

from __future__ import annotations

import json
import os
from typing import Any, cast

from berthapi.containers.v1 import containers_pb2 as pb
from containers_svc.api import (
    AttachOptions,
    CommitRequest,
    ContainerRecord,
    ContainerState,
    CreateRequest,
    ExecConfig,
    ExecRecord,
    LogEntry,
    LogsOptions,
    OutputFrame,
    PruneResult,
    WaitEvent,
)
from containers_svc.config import network_settings_for
from networks_svc import convert as net_convert

__all__ = [
    "WAIT_CONDITIONS",
    "attach_options_from_proto",
    "attach_options_to_proto",
    "condition_from_proto",
    "container_from_proto",
    "container_to_proto",
    "create_from_proto",
    "create_to_proto",
    "exec_config_from_proto",
    "exec_config_to_proto",
    "exec_frame_from_proto",
    "exec_frame_to_proto",
    "exec_from_proto",
    "exec_to_proto",
    "frame_from_proto",
    "frame_to_proto",
    "log_entry_from_proto",
    "log_entry_to_proto",
    "logs_options_from_proto",
    "logs_request",
    "prune_from_proto",
    "prune_to_proto",
    "wait_from_proto",
    "wait_to_proto",
]

WAIT_CONDITIONS = {
    "not-running": pb.WAIT_CONDITION_NOT_RUNNING,
    "": pb.WAIT_CONDITION_NOT_RUNNING,
    "next-exit": pb.WAIT_CONDITION_NEXT_EXIT,
    "removed": pb.WAIT_CONDITION_REMOVED,
}
_CONDITION_NAMES: dict[int, str] = {int(v): k for k, v in WAIT_CONDITIONS.items() if k}


def condition_from_proto(value: int) -> str:
    return _CONDITION_NAMES.get(int(value), "not-running")


def _dump(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _load(data: bytes) -> dict[str, Any]:
    if not data:
        return {}
    out: dict[str, Any] = json.loads(data)
    return out


def create_to_proto(req: CreateRequest) -> pb.CreateContainerRequest:
    return pb.CreateContainerRequest(
        name=req.name, config_json=_dump(req.config), host_config_json=_dump(req.host_config),
        networking_config_json=_dump(req.networking_config),
    )  # fmt: skip


def create_from_proto(msg: pb.CreateContainerRequest) -> CreateRequest:
    platform = ""
    if msg.HasField("platform") and msg.platform.os:
        platform = f"{msg.platform.os}/{msg.platform.architecture}".rstrip("/")
    return CreateRequest(
        name=msg.name, config=_load(msg.config_json), host_config=_load(msg.host_config_json),
        networking_config=_load(msg.networking_config_json), platform=platform,
    )  # fmt: skip


def _health_to_proto(h: dict[str, Any]) -> pb.Health:
    return pb.Health(
        status=str(h.get("Status") or ""), failing_streak=int(h.get("FailingStreak") or 0),
        log=[pb.HealthLog(start=str(e.get("Start", "")), end=str(e.get("End", "")),
                          exit_code=int(e.get("ExitCode", 0)), output=str(e.get("Output", "")))
             for e in h.get("Log") or []],
    )  # fmt: skip


def _health_from_proto(m: pb.Health) -> dict[str, Any]:
    return {"Status": m.status, "FailingStreak": m.failing_streak,
            "Log": [{"Start": e.start, "End": e.end, "ExitCode": e.exit_code, "Output": e.output}
                    for e in m.log]}  # fmt: skip


def _state_to_proto(s: ContainerState) -> pb.ContainerState:
    return pb.ContainerState(
        status=s.status, running=s.running, paused=s.paused, restarting=s.restarting,
        oom_killed=s.oom_killed, dead=s.dead, pid=s.pid, exit_code=s.exit_code, error=s.error,
        started_at=s.started_at, finished_at=s.finished_at,
        health=_health_to_proto(s.health) if s.health is not None else None,
    )  # fmt: skip


def _state_from_proto(m: pb.ContainerState) -> ContainerState:
    return ContainerState(
        status=m.status, running=m.running, paused=m.paused, restarting=m.restarting,
        oom_killed=m.oom_killed, dead=m.dead, pid=m.pid, exit_code=m.exit_code, error=m.error,
        started_at=m.started_at, finished_at=m.finished_at,
        health=_health_from_proto(m.health) if m.HasField("health") else None,
    )  # fmt: skip


def container_to_proto(r: ContainerRecord) -> pb.Container:
    net_ports, net_eps = net_convert.settings_json_to_proto(r.network_settings)
    mounts = [
        pb.MountPoint(type=m.get("Type", ""), name=m.get("Name", ""), source=m.get("Source", ""),
                      destination=m.get("Destination", ""), driver=m.get("Driver", ""),
                      mode=m.get("Mode", ""), rw=bool(m.get("RW")), propagation=m.get("Propagation", ""))
        for m in r.mounts
    ]  # fmt: skip
    return pb.Container(
        id=r.id, name=r.name, created=r.created, path=r.path, args=r.args,
        state=_state_to_proto(r.state), image_id=r.image_id, mounts=mounts,
        network_settings=pb.NetworkSettings(sandbox_key=r.network_settings.get("SandboxKey", ""),
                                            ports=net_ports, networks=net_eps),
        restart_count=r.restart_count, driver=r.driver, platform="linux", log_path=r.log_path,
        resolv_conf_path=r.resolv_conf_path, hostname_path=r.hostname_path, hosts_path=r.hosts_path,
        exec_ids=r.exec_ids, size_rw=-1 if r.size_rw is None else r.size_rw,
        size_root_fs=-1 if r.size_root_fs is None else r.size_root_fs, node_id=r.node_id,
        config_json=_dump(r.config), host_config_json=_dump(r.host_config),
        networking_config_json=_dump(r.networking_config), snapshot_id=r.id,
        rootfs_path=r.graph_driver.get("MergedDir", ""),
    )  # fmt: skip


def container_from_proto(m: pb.Container) -> ContainerRecord:
    config = _load(m.config_json)
    host_config = _load(m.host_config_json)
    graph: dict[str, str] = {}
    if m.rootfs_path:
        base = os.path.dirname(m.rootfs_path)
        graph = {"MergedDir": m.rootfs_path, "UpperDir": os.path.join(base, "upper"),
                 "WorkDir": os.path.join(base, "work")}  # fmt: skip
    settings = network_settings_for(host_config.get("NetworkMode") or "bridge")
    settings["SandboxKey"] = m.network_settings.sandbox_key
    if m.network_settings.networks:  # realised by the networks service
        settings.update(net_convert.settings_json_from_proto(
            m.network_settings.ports, m.network_settings.networks, config.get("ExposedPorts") or {}))
    mounts = [
        {"Type": p.type, "Source": p.source, "Destination": p.destination, "Mode": p.mode, "RW": p.rw,
         "Propagation": p.propagation, **({"Name": p.name, "Driver": p.driver} if p.name else {})}
        for p in m.mounts
    ]  # fmt: skip
    return ContainerRecord(
        id=m.id, name=m.name, created=m.created, path=m.path, args=list(m.args), config=config,
        host_config=host_config, networking_config=_load(m.networking_config_json),
        image=config.get("Image", ""), image_id=m.image_id, state=_state_from_proto(m.state),
        restart_count=m.restart_count, node_id=m.node_id, log_path=m.log_path,
        hostname_path=m.hostname_path, hosts_path=m.hosts_path, resolv_conf_path=m.resolv_conf_path,
        driver=m.driver, graph_driver=graph, mounts=mounts, exec_ids=list(m.exec_ids),
        size_rw=None if m.size_rw < 0 else m.size_rw,
        size_root_fs=None if m.size_root_fs < 0 else m.size_root_fs, network_settings=settings,
    )  # fmt: skip


def wait_to_proto(ev: WaitEvent) -> pb.WaitContainerResponse:
    if ev.registered:
        return pb.WaitContainerResponse(registered=True)
    return pb.WaitContainerResponse(result=pb.WaitResult(status_code=ev.status_code, error=ev.error))


def wait_from_proto(m: pb.WaitContainerResponse) -> WaitEvent:
    if m.WhichOneof("msg") == "registered":
        return WaitEvent(registered=True)
    return WaitEvent(status_code=m.result.status_code, error=m.result.error)


def logs_request(ref: str, o: LogsOptions) -> pb.ContainerLogsRequest:
    return pb.ContainerLogsRequest(
        ref=ref, stdout=o.stdout, stderr=o.stderr, follow=o.follow, since_nano=o.since_nano,
        until_nano=o.until_nano, timestamps=o.timestamps, tail=o.tail,
    )  # fmt: skip


def logs_options_from_proto(m: pb.ContainerLogsRequest) -> LogsOptions:
    return LogsOptions(stdout=m.stdout, stderr=m.stderr, follow=m.follow, since_nano=m.since_nano,
                       until_nano=m.until_nano, timestamps=m.timestamps, tail=m.tail)  # fmt: skip


def log_entry_to_proto(e: LogEntry) -> pb.ContainerLogsResponse:
    stream = pb.STD_STREAM_STDERR if e.stream == "stderr" else pb.STD_STREAM_STDOUT
    return pb.ContainerLogsResponse(stream=stream, data=e.data, time_nano=e.time_nano)


def log_entry_from_proto(m: pb.ContainerLogsResponse) -> LogEntry:
    return LogEntry("stderr" if m.stream == pb.STD_STREAM_STDERR else "stdout", m.data, m.time_nano)


def attach_options_to_proto(ref: str, o: AttachOptions) -> pb.AttachOptions:
    return pb.AttachOptions(ref=ref, stdin=o.stdin, stdout=o.stdout, stderr=o.stderr, logs=o.logs,
                            stream=o.stream, detach_keys=o.detach_keys)  # fmt: skip


def attach_options_from_proto(m: pb.AttachOptions) -> AttachOptions:
    return AttachOptions(stdin=m.stdin, stdout=m.stdout, stderr=m.stderr, stream=m.stream, logs=m.logs,
                         detach_keys=m.detach_keys)  # fmt: skip


def frame_to_proto(f: OutputFrame, tty: bool) -> pb.AttachContainerResponse:
    if f.ready:
        return pb.AttachContainerResponse(ready=pb.AttachReady(tty=tty))
    return pb.AttachContainerResponse(output=pb.OutputFrame(stream=cast(Any, f.stream), data=f.data))


def frame_from_proto(m: pb.AttachContainerResponse) -> OutputFrame:
    if m.WhichOneof("msg") == "ready":
        return OutputFrame(ready=True)
    return OutputFrame(stream=m.output.stream, data=m.output.data)


def prune_to_proto(r: PruneResult) -> pb.PruneContainersResponse:
    return pb.PruneContainersResponse(deleted=r.deleted, space_reclaimed=r.space_reclaimed)


def prune_from_proto(m: pb.PruneContainersResponse) -> PruneResult:
    return PruneResult(list(m.deleted), m.space_reclaimed)


def exec_config_to_proto(c: ExecConfig) -> pb.ExecConfig:
    h, w = c.console_size or (0, 0)
    return pb.ExecConfig(
        attach_stdin=c.attach_stdin, attach_stdout=c.attach_stdout, attach_stderr=c.attach_stderr,
        tty=c.tty, console_height=h, console_width=w, detach_keys=c.detach_keys, env=c.env, cmd=c.cmd,
        privileged=c.privileged, user=c.user, working_dir=c.working_dir,
    )  # fmt: skip


def exec_config_from_proto(m: pb.ExecConfig) -> ExecConfig:
    size = (m.console_height, m.console_width) if m.console_height or m.console_width else None
    return ExecConfig(
        cmd=list(m.cmd), attach_stdin=m.attach_stdin, attach_stdout=m.attach_stdout,
        attach_stderr=m.attach_stderr, tty=m.tty, console_size=size, detach_keys=m.detach_keys,
        env=list(m.env), privileged=m.privileged, user=m.user, working_dir=m.working_dir,
    )  # fmt: skip


def exec_to_proto(r: ExecRecord) -> pb.Exec:
    return pb.Exec(
        id=r.id, container_id=r.container_id, config=exec_config_to_proto(r.config), running=r.running,
        exit_code=r.exit_code, pid=r.pid, open_stdin=r.open_stdin, open_stdout=r.open_stdout,
        open_stderr=r.open_stderr, can_remove=r.can_remove,
    )  # fmt: skip


def exec_from_proto(m: pb.Exec) -> ExecRecord:
    return ExecRecord(
        id=m.id, container_id=m.container_id, config=exec_config_from_proto(m.config), running=m.running,
        exit_code=m.exit_code if m.HasField("exit_code") else None, pid=m.pid, open_stdin=m.open_stdin,
        open_stdout=m.open_stdout, open_stderr=m.open_stderr, can_remove=m.can_remove,
    )  # fmt: skip


def exec_frame_to_proto(f: OutputFrame, tty: bool) -> pb.StartExecResponse:
    if f.ready:
        return pb.StartExecResponse(ready=pb.AttachReady(tty=tty))
    return pb.StartExecResponse(output=pb.OutputFrame(stream=cast(Any, f.stream), data=f.data))


def exec_frame_from_proto(m: pb.StartExecResponse) -> OutputFrame:
    if m.WhichOneof("msg") == "ready":
        return OutputFrame(ready=True)
    return OutputFrame(stream=m.output.stream, data=m.output.data)


# -- commit (issue 3) --


def commit_to_proto(ref: str, req: CommitRequest) -> pb.CommitContainerRequest:
    return pb.CommitContainerRequest(
        ref=ref, repo=req.repo, tag=req.tag, comment=req.comment, author=req.author,
        pause=req.pause, changes=req.changes,
        config_json=json.dumps(req.config).encode() if req.config is not None else b"",
    )


def commit_from_proto(msg: pb.CommitContainerRequest) -> CommitRequest:
    return CommitRequest(
        repo=msg.repo, tag=msg.tag, comment=msg.comment, author=msg.author, pause=msg.pause,
        changes=list(msg.changes),
        config=json.loads(msg.config_json) if msg.config_json else None,
    )
