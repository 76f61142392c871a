"""ContainersService: container records and their lifecycle under conmon + crun (no transport here).

The service keeps every record of this node in memory (it is the only writer of ``ctr_*``) and
writes each change through the store before publishing its event. ``run()`` owns the task group
of the exit monitor: one watcher per running container polls conmon's exit file, records the
exit, applies AutoRemove and the restart policy. Containers never stop with the service: conmon
is their parent, and ``run()``'s reconcile re-adopts them at the next start.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal as _signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

import errdefs
from containers_svc import links, runspec
from containers_svc.api import (
    ZERO_TIME,
    AttachOptions,
    CommitRequest,
    ContainerRecord,
    ContainerState,
    CreateRequest,
    CreateResult,
    ExecConfig,
    ExecRecord,
    LogEntry,
    LogsOptions,
    OutputFrame,
    PathStat,
    PruneResult,
    TopResult,
    WaitEvent,
)
from containers_svc.archive import ContainerFiles
from containers_svc.attach import parse_detach_keys, pump_stdin, recv_packet
from containers_svc.checks import check_create
from containers_svc.config import (
    RestartBackoff,
    command_of,
    merge_image_config,
    network_settings_for,
    normalize_host_config,
    parse_signal,
    restart_policy,
    should_restart,
    validate_host_config,
)
from containers_svc.execs import ExecManager
from containers_svc.health import HEALTH_STATUSES, HealthMonitor, validate_healthcheck
from containers_svc.logrotate import (
    LogLocks,
    merge_log_config,
    prepare_log,
    read_log,
    rotate_loop,
    settings_of,
)
from containers_svc.logs import format_timestamp
from containers_svc.names import generate_name, validate_name
from containers_svc.rootfs import ExecError
from containers_svc.stats import cgroup_dirs, stats_stream
from containers_svc.store import ContainerStore, StoredContainer, name_conflict
from containers_svc.top import top
from containers_svc.update import (
    apply_update,
    blkio_weight_supported,
    lift_pids_limit,
    oci_resources,
    verify_update,
)
from dockerapi import filters as dfilters
from events_svc.bus import EventsAPI
from events_svc.model import Event
from images_svc.api import CommitOptions, ImagesAPI
from images_svc.model import Change
from networks_svc import shapes as net_shapes
from networks_svc.api import NetworksAPI
from networks_svc.model import AttachRequest, AttachResult
from ocirun import OciRuntime, build_oci_spec, connect_attach_path
from volumes_svc.api import VolumesAPI

__all__ = ["ContainersService"]

log = logging.getLogger(__name__)

WATCH_POLL = 0.05  # exit-file polling interval
KILL_WAIT = 10.0  # how long a SIGKILL may take to show as an exit
ATTACH_GRACE = 2.0  # how long start waits for pending attachers to connect
_LIST_FILTERS = {"ancestor", "before", "exited", "health", "id", "isolation", "is-task", "label",
                 "name", "network", "publish", "expose", "since", "status", "volume"}  # fmt: skip
_STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


def _now() -> str:
    return format_timestamp(time.time_ns())


class _Shot:
    """A one-time broadcast carrying an exit code."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value = 0

    def fire(self, value: int) -> None:
        self.value = value
        self.event.set()


@dataclass(eq=False)
class _Ctr:
    """One container as the service tracks it in memory."""

    stored: StoredContainer
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    exit_shot: _Shot = field(default_factory=_Shot)
    removed: _Shot = field(default_factory=_Shot)
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    gen: int = 0  # run generation: a watcher only records the exit of its own run
    sock_open: bool = False  # conmon's attach socket accepts connections (created .. exit)
    pending_attach: int = 0
    started_mono: float = 0.0
    watch_scope: anyio.CancelScope | None = None
    restart_scope: anyio.CancelScope | None = None
    gone: bool = False

    @property
    def rec(self) -> ContainerRecord:
        return self.stored.record

    @property
    def id(self) -> str:
        return self.stored.record.id

    @property
    def name(self) -> str:
        return self.stored.record.name.removeprefix("/")

    def active(self) -> bool:
        st = self.rec.state
        return st.running or st.restarting


def _map_runtime_error(message: str, cmd: str) -> tuple[str, int]:
    """Docker's text and exit code for a failed runtime create/start (moby translateContainerdStartErr)."""
    low = message.lower()
    if "executable file" in low and "not found" in low:
        return f'exec: "{cmd}": executable file not found in $PATH', 127
    if "no such file or directory" in low and cmd.lower() in low:
        return f'exec: "{cmd}": stat {cmd}: no such file or directory', 127
    if "permission denied" in low:
        return f'exec: "{cmd}": permission denied', 126
    if "not a directory" in low:
        return (message + ": Are you trying to mount a directory onto a file (or vice-versa)? Check if "
                "the specified host path exists and is the expected type"), 127  # fmt: skip
    return message, 128


def _restart_at_boot(ctr: _Ctr) -> bool:
    """moby restore: ShouldRestart of a fresh restart manager, for containers started before.

    A manual stop is forgotten by ``always`` (Docker restarts those on daemon start) but
    remembered by ``unless-stopped``; ``on-failure`` keeps its persisted retry count.
    """
    rec = ctr.rec
    if rec.state.started_at in ("", ZERO_TIME):
        return False
    pol = restart_policy(rec.host_config)
    if pol.name == "always":
        return True
    if pol.name == "unless-stopped":
        return not ctr.stored.manual_stop
    if pol.name == "on-failure":
        limit = pol.maximum_retry_count
        return rec.state.exit_code != 0 and (limit == 0 or rec.restart_count < limit)
    return False


def _conmon_alive(pid: int | None, cid: str) -> bool:
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"conmon" in cmdline and cid.encode() in cmdline


def _dir_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _on_networks(rec: ContainerRecord, wanted: list[str]) -> bool:
    """ps --filter network=<name or id prefix>."""
    nets = (rec.network_settings or {}).get("Networks") or {}
    return any(w == name or (ep or {}).get("NetworkID", "").startswith(w)
               for name, ep in nets.items() for w in wanted if w)  # fmt: skip


def _exposed_ports(rec: ContainerRecord) -> set[str]:
    """Container ports, exposed or published ("80/tcp"), as moby's snapshot keeps them."""
    ports = set((rec.config.get("ExposedPorts") or {}).keys())
    return ports | set(((rec.network_settings or {}).get("Ports") or {}).keys())


def _published_ports(rec: ContainerRecord) -> set[str]:
    """Host ports with their protocol ("8080/tcp") of the published bindings."""
    out: set[str] = set()
    for port, binds in ((rec.network_settings or {}).get("Ports") or {}).items():
        proto = port.partition("/")[2] or "tcp"
        out |= {f"{b['HostPort']}/{proto}" for b in binds or [] if b.get("HostPort")}
    return out


def _port_match(have: set[str], wanted: list[str]) -> bool:
    """publish/expose filter values: ``80``, ``80/udp``, ``8000-8080/tcp`` (tcp by default)."""
    for w in wanted:
        spec, _, proto = w.partition("/")
        lo, _, hi = spec.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise errdefs.InvalidArgument(f"invalid port filter value {w!r}") from None
        if any(f"{p}/{proto or 'tcp'}" in have for p in range(first, last + 1)):
            return True
    return False


class ContainersService:
    """Implements ContainersAPI on this node.

    Resource handling:
        ``await tg.start(service.run)`` loads and reconciles the records and runs the exit
        monitor until cancelled; cancelling never stops containers.
    """

    def __init__(
        self,
        data_root: str | os.PathLike[str],
        exec_root: str | os.PathLike[str],
        store: ContainerStore,
        images: ImagesAPI,
        events: EventsAPI,
        runtime: OciRuntime,
        node_id: str,
        volumes: VolumesAPI | None = None,
        networks: NetworksAPI | None = None,
        log_defaults: tuple[str, dict[str, str]] = ("json-file", {}),
    ) -> None:
        self._data_root = Path(data_root)
        self._log_defaults = log_defaults  # daemon.json log-driver / log-opts
        self._log_locks = LogLocks()
        self._exec_root = Path(exec_root)
        self._store = store
        self._images = images
        self._events = events
        self._runtime = runtime
        self._node_id = node_id
        self._volumes = volumes
        self._networks = networks
        self._ctrs: dict[str, _Ctr] = {}
        self._names: dict[str, str] = {}  # name without "/" -> id
        self._tg: anyio.abc.TaskGroup | None = None
        self._names_lock = anyio.Lock()
        self._execs = ExecManager(runtime, events, lambda ref: self._resolve(ref).rec, self._bundle,
                                  self._tg_or_fail, linked_env=self._linked_env)  # fmt: skip
        self._files = ContainerFiles(images, self._files_lookup, self._files_publish)
        self._health = HealthMonitor(self._execs, self._health_get, self._health_publish, self._health_save,
                                     self._tg_or_fail)  # fmt: skip

    # ---- start-up ------------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load the records, reconcile them with the machine, then monitor exits until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await self._load()
                await self._reconcile()
                task_status.started()
                await anyio.sleep_forever()
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def _load(self) -> None:
        self._ctrs.clear()
        self._names.clear()
        for stored in await self._store.list_all():
            ctr = _Ctr(stored)
            self._ctrs[ctr.id] = ctr
            self._names[ctr.name] = ctr.id

    async def _reconcile(self) -> None:
        for ctr in list(self._ctrs.values()):
            st = ctr.rec.state
            if st.running or st.restarting:
                code = await self._runtime.read_exit_code(ctr.id)
                conmon = await self._runtime.conmon_pid(ctr.id)
                alive = await anyio.to_thread.run_sync(_conmon_alive, conmon, ctr.id)
                if st.running and code is None and alive:
                    ctr.sock_open = True
                    ctr.gen += 1
                    ctr.started_mono = time.monotonic()
                    self._watch(ctr)
                    log.info("re-adopted running container %s", ctr.id)
                    continue
                if st.restarting and code is None:
                    code = st.exit_code
                err = "" if code is not None else "container monitor (conmon) is gone"
                await self._on_exit(ctr, ctr.gen, 255 if code is None else code, err)
            elif st.status == "exited" and ctr.rec.host_config.get("AutoRemove"):
                await self._remove(ctr)
            elif st.status == "exited" and _restart_at_boot(ctr):
                assert self._tg is not None
                self._tg.start_soon(self._policy_start, ctr)

    async def _policy_start(self, ctr: _Ctr) -> None:
        try:
            await self.start_container(ctr.id)
        except errdefs.EngineError as e:
            log.warning("restart of %s at start-up failed: %s", ctr.id, e)

    # ---- helpers -------------------------------------------------------------------------------

    def _tg_or_fail(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise errdefs.Unavailable("the containers service is not running")
        return self._tg

    def _resolve(self, ref: str) -> _Ctr:
        if not ref:
            raise errdefs.NotFound("No such container: ")
        if ref in self._ctrs:
            return self._ctrs[ref]
        name = ref.removeprefix("/")
        if name in self._names:
            return self._ctrs[self._names[name]]
        if re.fullmatch(r"[0-9a-f]{1,64}", ref):
            hits = [c for cid, c in self._ctrs.items() if cid.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise errdefs.InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise errdefs.NotFound(f"No such container: {ref}")

    def _bundle(self, cid: str) -> Path:
        return self._data_root / "containers" / cid

    async def _save(self, ctr: _Ctr) -> None:
        await self._store.update(ctr.stored)

    async def _publish(self, ctr: _Ctr, action: str, **extra: str) -> None:
        attrs = {**(ctr.rec.config.get("Labels") or {}), "image": ctr.rec.config.get("Image", ""),
                 "name": ctr.name, **extra}  # fmt: skip
        try:
            await self._events.publish(Event(type="container", action=action, actor_id=ctr.id,
                                             attributes=attrs))  # fmt: skip
        except Exception:  # events are best effort: never fail the operation after the commit
            log.exception("publishing %s of %s failed", action, ctr.id)

    # ---- create --------------------------------------------------------------------------------

    async def create_container(self, req: CreateRequest) -> CreateResult:
        cfg_in = dict(req.config or {})
        image_ref = cfg_in.get("Image") or ""
        if not image_ref:
            raise errdefs.InvalidArgument("No image was specified")
        validate_healthcheck(cfg_in)
        img = await self._images.get_image(image_ref)  # NotFound propagates: the CLI pulls on it
        image_cfg = (json.loads(img.config_json or b"{}") or {}).get("config") or {}
        cfg = merge_image_config(cfg_in, image_cfg)
        cfg["Image"] = image_ref
        path, args = command_of(cfg)
        hc_in = dict(req.host_config or {})
        await anyio.to_thread.run_sync(check_create, hc_in)  # types, caps, cpusets: moby's 400s
        hc_in["LogConfig"] = merge_log_config(hc_in.get("LogConfig"), *self._log_defaults)
        hc = normalize_host_config(hc_in)
        warnings = validate_host_config(hc)
        mode = hc["NetworkMode"]
        if mode.startswith("container:"):
            self._resolve(mode.split(":", 1)[1])
        elif self._networks is not None and mode not in ("none", "host"):
            await self._networks.get_network(mode)  # NotFound "network <x> not found"
        elif self._networks is None and mode not in ("none", "bridge", "host"):
            raise errdefs.NotFound(f"network {mode} not found")
        mounts = self._container_mounts(hc, cfg)
        async with self._names_lock:
            if req.name:
                name = validate_name(req.name)
                if name in self._names:
                    raise name_conflict(name, self._names[name])
            else:
                name = generate_name()
                retry = 0
                while name in self._names:
                    retry += 1
                    name = generate_name(retry)
            cid = secrets.token_hex(32)
            while cid in self._ctrs or cid[:12].isdigit():
                cid = secrets.token_hex(32)
            if not cfg.get("Hostname"):
                cfg["Hostname"] = cid[:12]
            bundle = self._bundle(cid)
            rec = ContainerRecord(
                id=cid, name="/" + name, created=_now(), path=path, args=args, config=cfg,
                host_config=hc, networking_config=dict(req.networking_config or {}),
                image=image_ref, image_id=img.id, state=ContainerState(), node_id=self._node_id,
                log_path=str(bundle / "ctr.log"), hostname_path=str(bundle / "hostname"),
                hosts_path=str(bundle / "hosts"), resolv_conf_path=str(bundle / "resolv.conf"),
                mounts=mounts, network_settings=network_settings_for(mode),
            )  # fmt: skip
            # Options the runtime would refuse (caps, ulimits, sysctls, seccomp) fail here, at create.
            await anyio.to_thread.run_sync(self._validate_spec, rec)
            snap = await self._images.prepare_snapshot(cid, img.id, {"berth.container.name": name})
            rec.graph_driver = {"MergedDir": snap.merged_dir, "UpperDir": snap.upper_dir,
                                "WorkDir": snap.work_dir}  # fmt: skip
            ctr = _Ctr(StoredContainer(rec))
            try:
                # Docker counts created and stopped containers as volume users: reference now.
                await self._acquire_volumes(rec)
                if self._networks is not None:  # validates --ip/--alias and records the networks
                    await self._networks.reserve_endpoints(self._attach_request(rec))
                await anyio.Path(bundle).mkdir(parents=True, exist_ok=True)
                await self._store.insert(ctr.stored)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._detach_network(cid, remove=True)
                    await self._release_volumes(rec, remove=True)
                    await self._drop_files(cid)
                raise
            self._ctrs[cid] = ctr
            self._names[name] = cid
        await self._publish(ctr, "create")
        return CreateResult(cid, warnings)

    def _container_mounts(self, hc: dict[str, Any], cfg: dict[str, Any]) -> list[dict[str, Any]]:
        """Binds and Mounts, then --volumes-from, then the image's VOLUMEs (moby's order)."""
        mounts = runspec.parse_mounts(hc)
        dests = {m["Destination"] for m in mounts}
        for spec in hc.get("VolumesFrom") or []:
            ref, rw = runspec.volumes_from(spec)
            src = self._resolve(ref)
            for mp in src.rec.mounts:
                if mp["Type"] not in ("bind", "volume") or mp["Destination"] in dests:
                    continue
                cp = {**runspec.public_mount(mp), **({"RW": rw} if rw is not None else {})}
                if cp["Type"] == "volume":
                    cp.update(CopyData=False, _Driver="", _DriverOpts={}, _Labels={})
                mounts.append(cp)
                dests.add(mp["Destination"])
        for dest in sorted(cfg.get("Volumes") or {}):
            path = os.path.normpath(dest)
            if not path.startswith("/"):
                raise errdefs.InvalidArgument(f"invalid mount path: '{dest}' mount path must be absolute")
            if path not in dests:
                mounts.append(runspec.volume_point("", path, True))
                dests.add(path)
        return mounts

    async def _acquire_volumes(self, rec: ContainerRecord, rootfs: str = "") -> None:
        """Reference (creating when new) every volume of ``rec``; with ``rootfs``, copy up too."""
        acquired: list[str] = []
        try:
            for mp in rec.mounts:
                if mp["Type"] != "volume":
                    continue
                if self._volumes is None:
                    raise errdefs.InvalidArgument("volumes are not available: no volumes service")
                res = await self._volumes.acquire_volume(
                    mp["Name"], rec.id, driver=mp.pop("_Driver", ""),
                    driver_opts=mp.pop("_DriverOpts", None), labels=mp.pop("_Labels", None),
                    copy_up_source=rootfs if rootfs and mp.get("CopyData") else "",
                    copy_up_path=mp["Destination"],
                )  # fmt: skip
                acquired.append(res.volume.name)
                mp["Name"], mp["Source"] = res.volume.name, res.mountpoint
                mp["Driver"] = res.volume.driver or "local"
        except BaseException:
            if not rootfs:
                with anyio.CancelScope(shield=True):
                    for name in acquired:
                        await self._release_one(name, rec.id, True)
            raise

    async def _release_volumes(self, rec: ContainerRecord, remove: bool) -> None:
        for mp in rec.mounts:
            if mp["Type"] == "volume" and mp.get("Name"):
                await self._release_one(mp["Name"], rec.id, remove)

    async def _release_one(self, name: str, cid: str, remove: bool) -> None:
        if self._volumes is None:
            return
        try:
            await self._volumes.release_volume(name, cid, remove=remove)
        except errdefs.EngineError as e:  # never fail a removal over a volume
            log.warning("releasing volume %s of %s: %s", name, cid, e)

    def _validate_spec(self, rec: ContainerRecord) -> None:
        # container:<x> modes join x's namespaces at start, when x must run (as dockerd); at
        # create x may be stopped, so a stand-in pid lets the rest of the spec be checked.
        modes = (str(rec.host_config.get(k) or "") for k in ("NetworkMode", "PidMode", "IpcMode", "UTSMode"))
        joined = {m.split(":", 1)[1]: 1 for m in modes if m.startswith("container:")}
        spec = runspec.build_spec(rec, "/nonexistent-rootfs", joined, check_command=False)
        build_oci_spec(spec, self._runtime.host, runtime=self._runtime.name)

    async def _drop_files(self, cid: str) -> None:
        try:
            await self._images.remove_snapshot(cid)
        except errdefs.NotFound:
            pass
        except errdefs.EngineError as e:
            log.warning("removing snapshot of %s: %s", cid, e)
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(self._bundle(cid), ignore_errors=True))
        self._log_locks.drop(str(self._bundle(cid) / "ctr.log"))

    # ---- get / list ----------------------------------------------------------------------------

    async def get_container(self, ref: str, size: bool = False) -> ContainerRecord:
        ctr = self._resolve(ref)
        return await self._view(ctr, size)

    async def _view(self, ctr: _Ctr, size: bool) -> ContainerRecord:
        rec = ctr.rec
        out = ContainerRecord(**{f: getattr(rec, f) for f in rec.__dataclass_fields__})
        out.state = ContainerState(**{f: getattr(rec.state, f) for f in rec.state.__dataclass_fields__})
        out.exec_ids = self._execs.ids_of(ctr.id)
        out.mounts = [runspec.public_mount(m) for m in rec.mounts]
        if size:
            upper = rec.graph_driver.get("UpperDir", "")
            rw = await anyio.to_thread.run_sync(_dir_size, upper) if upper else 0
            out.size_rw = rw
            try:
                out.size_root_fs = rw + (await self._images.get_image(rec.image_id)).size
            except errdefs.NotFound:
                out.size_root_fs = rw
        return out

    async def list_containers(
        self, all: bool, limit: int, size: bool, filters: dict[str, list[str]]
    ) -> list[ContainerRecord]:
        dfilters.validate(filters, _LIST_FILTERS)
        for v in filters.get("status", []):
            if v not in _STATUSES:
                raise errdefs.InvalidArgument(f"invalid filter 'status={v}'")
        for v in filters.get("health", []):
            if v not in HEALTH_STATUSES:
                raise errdefs.InvalidArgument(f"Unrecognised filter value for health: {v}")
        ctrs = sorted(self._ctrs.values(), key=lambda c: c.rec.created, reverse=True)
        before = self._resolve(filters["before"][0]).rec.created if filters.get("before") else None
        since = self._resolve(filters["since"][0]).rec.created if filters.get("since") else None
        out: list[ContainerRecord] = []
        for ctr in ctrs:
            rec = ctr.rec
            st = rec.state
            if not all and limit <= 0 and not filters.get("status") and not (st.running or st.restarting):
                continue
            if before is not None and rec.created >= before:
                continue
            if since is not None and rec.created <= since:
                continue
            if not self._matches(ctr, filters):
                continue
            out.append(await self._view(ctr, size))
            if limit > 0 and len(out) >= limit:
                break
        return out

    def _matches(self, ctr: _Ctr, f: dict[str, list[str]]) -> bool:
        rec = ctr.rec
        if f.get("id") and not any(rec.id.startswith(v) for v in f["id"]):
            return False
        if f.get("name") and not any(re.search(v, ctr.name) for v in f["name"]):
            return False
        if f.get("label") and not dfilters.match_labels(f["label"], rec.config.get("Labels") or {}):
            return False
        if f.get("status") and rec.state.status not in f["status"]:
            return False
        if f.get("health") and ((rec.state.health or {}).get("Status") or "none") not in f["health"]:
            return False
        if f.get("exited"):
            if rec.state.status != "exited" or str(rec.state.exit_code) not in f["exited"]:
                return False
        if f.get("volume") and not any(v in (m.get("Name"), m.get("Source"), m.get("Destination"))
                                       for m in rec.mounts for v in f["volume"]):  # fmt: skip
            return False
        if f.get("network") and not _on_networks(rec, f["network"]):
            return False
        if f.get("publish") and not _port_match(_published_ports(rec), f["publish"]):
            return False
        if f.get("expose") and not _port_match(_exposed_ports(rec), f["expose"]):
            return False
        if f.get("is-task") and "true" in f["is-task"]:
            return False  # no swarm tasks here
        if f.get("isolation") and (rec.host_config.get("Isolation") or "default") not in f["isolation"]:
            return False
        if f.get("ancestor"):
            img = rec.image
            ok = any(v in (img, img.split(":")[0]) or rec.image_id.removeprefix("sha256:").startswith(
                v.removeprefix("sha256:")) for v in f["ancestor"])  # fmt: skip
            if not ok:
                return False
        return True

    # ---- start ---------------------------------------------------------------------------------

    async def start_container(self, ref: str) -> None:
        ctr = self._resolve(ref)
        async with ctr.lock:
            st = ctr.rec.state
            if st.paused:
                raise errdefs.Conflict("cannot start a paused container, try unpause instead")
            if st.running:
                raise errdefs.NotModified("Container already started")
            if ctr.restart_scope is not None:
                ctr.restart_scope.cancel()
                ctr.restart_scope = None
            ctr.stored.manual_stop = False
            ctr.backoff.reset()
            ctr.rec.restart_count = 0
            await self._start_locked(ctr)
        await self._publish(ctr, "start")

    async def _fail_start(self, ctr: _Ctr, message: str, code: int) -> None:
        st = ctr.rec.state
        st.status, st.running, st.restarting, st.paused, st.pid = "exited", False, False, False, 0
        st.error, st.exit_code = message, code
        await self._detach_network(ctr.id)
        await self._save(ctr)
        if ctr.rec.host_config.get("AutoRemove"):
            # As dockerd: a --rm container whose start failed is removed, which also ends
            # the client's wait?condition=removed. The caller holds ctr.lock, so defer.
            self._tg_or_fail().start_soon(self._remove, ctr)

    async def _start_locked(self, ctr: _Ctr) -> None:
        tg = self._tg_or_fail()
        rec = ctr.rec
        cid = rec.id
        snap = await self._images.mount_snapshot(cid)
        pid_of: dict[str, int] = {}
        hc = rec.host_config
        for key in ("NetworkMode", "PidMode", "IpcMode", "UTSMode"):
            mode = hc.get(key) or ""
            if mode.startswith("container:"):
                other = self._resolve(mode.split(":", 1)[1])
                if not other.rec.state.running:
                    raise errdefs.Conflict(f"cannot join namespace of a non running container: {other.id}")
                pid_of[mode.split(":", 1)[1]] = other.rec.state.pid
        try:
            await self._acquire_volumes(rec, snap.merged_dir)
            net = await self._attach_network(rec)
            await anyio.to_thread.run_sync(runspec.write_etc_files, rec, "/etc/resolv.conf", net)
            linked = self._linked_env(rec)
            spec = await anyio.to_thread.run_sync(
                lambda: runspec.build_spec(rec, snap.merged_dir, pid_of, linked_env=linked)
            )
            oci = await anyio.to_thread.run_sync(
                lambda: build_oci_spec(spec, self._runtime.host, runtime=self._runtime.name)
            )
        except ExecError as e:
            await self._fail_start(ctr, e.message, e.exit_code)
            raise
        except errdefs.EngineError as e:
            await self._fail_start(ctr, e.message, 128)
            raise
        cfg = rec.config
        tty, stdin = bool(cfg.get("Tty")), bool(cfg.get("OpenStdin"))
        logs = settings_of(hc.get("LogConfig"))
        await prepare_log(rec.log_path, logs, self._log_locks.get(rec.log_path))
        try:
            pid = await self._runtime.create(
                cid, self._bundle(cid), oci, log_path=rec.log_path, terminal=tty, stdin=stdin,
                log_size_max=logs.conmon_size_max, log_driver="k8s-file" if logs.readable else "none",
                leave_stdin_open=stdin and not cfg.get("StdinOnce"),
            )  # fmt: skip
        except errdefs.EngineError as e:
            await self._runtime_failed(ctr, e)
        ctr.gen += 1
        ctr.sock_open = True
        # Give attachers waiting for this start (docker run) the chance to connect first.
        for _ in range(int(ATTACH_GRACE / 0.005)):
            if ctr.pending_attach <= 0:
                break
            await anyio.sleep(0.005)
        try:
            await self._runtime.start(cid)
        except errdefs.EngineError as e:
            ctr.sock_open = False
            await self._runtime_failed(ctr, e)
        st = rec.state
        st.status, st.running, st.paused, st.restarting, st.dead = "running", True, False, False, False
        st.pid, st.exit_code, st.error, st.oom_killed = pid, 0, "", False
        st.started_at = _now()
        if self._networks is None:
            rec.network_settings["SandboxKey"] = (
                "" if hc.get("NetworkMode", "").startswith("container:") else f"/proc/{pid}/ns/net"
            )
        ctr.started_mono = time.monotonic()
        await self._save(ctr)
        self._watch(ctr)
        size = hc.get("ConsoleSize") or []
        if tty and len(size) == 2 and size[0] and size[1]:
            await self._resize(ctr, int(size[0]), int(size[1]))
        del tg

    def _linked_env(self, rec: ContainerRecord) -> list[str]:
        """dockerd's legacy link variables, for a container on the default bridge only."""
        if "bridge" not in (rec.network_settings.get("Networks") or {}):
            return []
        env: list[str] = []
        for spec in rec.host_config.get("Links") or []:
            name, alias = links.parse_link(spec)
            try:
                child = self._resolve(name).rec
            except errdefs.NotFound:
                continue
            ep = (child.network_settings.get("Networks") or {}).get("bridge") or {}
            if not child.state.running or not ep.get("IPAddress"):
                continue
            full = f"{rec.name.rstrip('/')}/{alias}"
            env += links.link_env(full, ep["IPAddress"], child.config.get("Env") or [],
                                  child.config.get("ExposedPorts") or {})
        return env

    async def _runtime_failed(self, ctr: _Ctr, e: errdefs.EngineError) -> Any:
        cid = ctr.id
        with anyio.CancelScope(shield=True):
            try:
                await self._runtime.delete(cid, force=True)
            except errdefs.EngineError:
                pass
            message, code = _map_runtime_error(e.message, ctr.rec.path)
            await self._fail_start(ctr, message, code)
        if code in (126, 127):
            raise errdefs.InvalidArgument(message) from None
        raise e

    def _watch(self, ctr: _Ctr) -> None:
        tg = self._tg_or_fail()
        scope = anyio.CancelScope()
        ctr.watch_scope = scope
        tg.start_soon(self._watcher, ctr, ctr.gen, scope)
        self._health.start(ctr.rec)
        try:
            logs = settings_of(ctr.rec.host_config.get("LogConfig"))
        except errdefs.InvalidArgument:
            return
        gen = ctr.gen
        tg.start_soon(rotate_loop, ctr.rec.log_path, logs, lambda: not ctr.gone and ctr.gen == gen,
                      self._log_locks.get(ctr.rec.log_path))

    async def _watcher(self, ctr: _Ctr, gen: int, scope: anyio.CancelScope) -> None:
        with scope:
            code = await self._runtime.wait_exit(ctr.id, poll_interval=WATCH_POLL)
            await self._on_exit(ctr, gen, code, "")

    async def _on_exit(self, ctr: _Ctr, gen: int, code: int, error: str) -> None:
        autoremove = False
        async with ctr.lock:
            if ctr.gone or gen != ctr.gen:
                return
            ctr.gen += 1
            ctr.sock_open = False
            self._health.stop(ctr.id)
            rec = ctr.rec
            st = rec.state
            st.oom_killed = await anyio.Path(self._runtime.paths(ctr.id).oom_file).exists()
            st.running, st.paused, st.pid, st.exit_code = False, False, 0, code
            st.finished_at = _now()
            if error:
                st.error = error
            rec.network_settings["SandboxKey"] = ""
            await self._detach_network(ctr.id)
            pol = restart_policy(rec.host_config)
            restart = should_restart(pol, code, ctr.stored.manual_stop, rec.restart_count)
            delay = ctr.backoff.next_delay(time.monotonic() - ctr.started_mono) if restart else 0.0
            st.restarting = restart
            st.status = "restarting" if restart else "exited"
            await self._save(ctr)
            try:
                await self._runtime.delete(ctr.id)
            except errdefs.EngineError as e:
                if not isinstance(e, errdefs.NotFound):
                    log.warning("deleting runtime state of %s: %s", ctr.id, e)
            if st.oom_killed:
                await self._publish(ctr, "oom")
            ran = int(time.monotonic() - ctr.started_mono) if ctr.started_mono else 0
            await self._publish(ctr, "die", exitCode=str(code), execDuration=str(ran))
            shot, ctr.exit_shot = ctr.exit_shot, _Shot()
            shot.fire(code)
            if restart:
                scope = anyio.CancelScope()
                ctr.restart_scope = scope
                self._tg_or_fail().start_soon(self._restart_later, ctr, delay, scope)
            autoremove = bool(rec.host_config.get("AutoRemove"))
        if autoremove:
            await self._remove(ctr)

    async def _restart_later(self, ctr: _Ctr, delay: float, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep(delay)
            async with ctr.lock:
                if ctr.gone or not ctr.rec.state.restarting or ctr.stored.manual_stop:
                    return
                ctr.restart_scope = None
                ctr.rec.restart_count += 1
                try:
                    await self._start_locked(ctr)
                except errdefs.EngineError as e:
                    log.warning("restart of %s failed: %s", ctr.id, e)
                    return
            await self._publish(ctr, "start")

    # ---- stop / kill / restart / pause ---------------------------------------------------------

    async def _signal(self, ctr: _Ctr, sig: int) -> None:
        try:
            await self._runtime.kill(ctr.id, sig)
        except errdefs.EngineError:
            if await self._runtime.read_exit_code(ctr.id) is None and ctr.rec.state.running:
                raise
        await self._publish(ctr, "kill", signal=str(sig))

    async def _resume_quietly(self, ctr: _Ctr) -> None:
        try:
            await self._runtime.resume(ctr.id)
        except errdefs.EngineError:
            pass
        ctr.rec.state.paused = False

    async def stop_container(self, ref: str, stop_timeout: int | None, signal: str) -> None:
        ctr = self._resolve(ref)
        async with ctr.lock:
            st = ctr.rec.state
            if st.restarting and not st.running:
                if ctr.restart_scope is not None:
                    ctr.restart_scope.cancel()
                    ctr.restart_scope = None
                ctr.stored.manual_stop = True
                st.restarting, st.status = False, "exited"
                await self._save(ctr)
                await self._publish(ctr, "stop")
                return
            if not st.running:
                raise errdefs.NotModified("Container already stopped")
            sig = parse_signal(signal) if signal else runspec.stop_signal(ctr.rec)
            timeout = stop_timeout
            if timeout is None:
                cfg_timeout = ctr.rec.config.get("StopTimeout")
                timeout = 10 if cfg_timeout is None else int(cfg_timeout)
            ctr.stored.manual_stop = True
            await self._save(ctr)
            shot = ctr.exit_shot
            paused = st.paused
        await self._signal(ctr, sig)
        if paused:
            await self._resume_quietly(ctr)
        if timeout < 0:
            await shot.event.wait()
        else:
            with anyio.move_on_after(timeout):
                await shot.event.wait()
        if not shot.event.is_set():
            await self._signal(ctr, _signal.SIGKILL)
            with anyio.move_on_after(KILL_WAIT):
                await shot.event.wait()
            if not shot.event.is_set():
                raise errdefs.Internal(f"container {ctr.id} did not exit after SIGKILL")
        await self._publish(ctr, "stop")

    async def kill_container(self, ref: str, signal: str) -> None:
        ctr = self._resolve(ref)
        sig = parse_signal(signal or "SIGKILL")
        async with ctr.lock:
            st = ctr.rec.state
            if not st.running:
                raise errdefs.Conflict(f"Container {ctr.id} is not running")
            if sig in (_signal.SIGKILL, runspec.stop_signal(ctr.rec)):
                ctr.stored.manual_stop = True
                await self._save(ctr)
            shot = ctr.exit_shot
            paused = st.paused
        await self._signal(ctr, sig)
        if sig == _signal.SIGKILL:
            if paused:
                await self._resume_quietly(ctr)
            with anyio.move_on_after(KILL_WAIT):
                await shot.event.wait()

    async def restart_container(self, ref: str, stop_timeout: int | None, signal: str) -> None:
        ctr = self._resolve(ref)
        if ctr.rec.state.running:
            try:
                await self.stop_container(ctr.id, stop_timeout, signal)
            except errdefs.NotModified:
                pass
        async with ctr.lock:
            if ctr.gone:
                raise errdefs.NotFound(f"No such container: {ref}")
            if ctr.restart_scope is not None:
                ctr.restart_scope.cancel()
                ctr.restart_scope = None
            ctr.stored.manual_stop = False
            if not ctr.rec.state.running:
                ctr.backoff.reset()
                await self._start_locked(ctr)
                started = True
            else:
                started = False
        if started:
            await self._publish(ctr, "start")
        await self._publish(ctr, "restart")

    async def pause_container(self, ref: str) -> None:
        ctr = self._resolve(ref)
        async with ctr.lock:
            st = ctr.rec.state
            if not st.running:
                raise errdefs.Conflict(f"Container {ctr.id} is not running")
            if st.paused:
                raise errdefs.Conflict(f"Container {ctr.id} is already paused")
            await self._runtime.pause(ctr.id)
            st.paused, st.status = True, "paused"
            await self._save(ctr)
        await self._publish(ctr, "pause")

    async def unpause_container(self, ref: str) -> None:
        ctr = self._resolve(ref)
        async with ctr.lock:
            st = ctr.rec.state
            if not st.paused:
                raise errdefs.Conflict(f"Container {ctr.id} is not paused")
            await self._runtime.resume(ctr.id)
            st.paused, st.status = False, "running"
            await self._save(ctr)
        await self._publish(ctr, "unpause")

    # ---- wait ----------------------------------------------------------------------------------

    async def wait_container(self, ref: str, condition: str) -> AsyncIterator[WaitEvent]:
        cond = condition or "not-running"
        if cond not in ("not-running", "next-exit", "removed"):
            raise errdefs.InvalidArgument(f"invalid condition: {cond!r}")
        ctr = self._resolve(ref)
        if cond == "removed":
            removed = ctr.removed
            yield WaitEvent(registered=True)
            await removed.event.wait()
            yield WaitEvent(status_code=removed.value)
            return
        if cond == "not-running" and not ctr.active():
            yield WaitEvent(registered=True)
            yield WaitEvent(status_code=ctr.rec.state.exit_code)
            return
        shot = ctr.exit_shot
        yield WaitEvent(registered=True)
        await shot.event.wait()
        yield WaitEvent(status_code=shot.value)

    # ---- remove / rename / prune ---------------------------------------------------------------

    async def remove_container(self, ref: str, force: bool, volumes: bool, link: bool) -> None:
        if link:
            await self._remove_link(ref)
            return
        ctr = self._resolve(ref)
        async with ctr.lock:
            st = ctr.rec.state
            if st.running or st.restarting:
                if not force:
                    if st.paused:
                        raise errdefs.Conflict(
                            f"You cannot remove a paused container {ctr.id}. Unpause and then stop the "
                            "container before attempting removal or force remove"
                        )
                    if st.restarting and not st.running:
                        raise errdefs.Conflict(
                            f"You cannot remove a restarting container {ctr.id}. Stop the container "
                            "before attempting removal or force remove"
                        )
                    raise errdefs.Conflict(
                        f"You cannot remove a running container {ctr.id}. Stop the container before "
                        "attempting removal or force remove"
                    )
                ctr.stored.manual_stop = True
                if ctr.restart_scope is not None:
                    ctr.restart_scope.cancel()
                    ctr.restart_scope = None
            running, paused, shot = st.running, st.paused, ctr.exit_shot
        if running:
            try:
                await self._signal(ctr, _signal.SIGKILL)
            except errdefs.EngineError as e:
                log.warning("kill of %s before removal: %s", ctr.id, e)
            if paused:
                await self._resume_quietly(ctr)
            with anyio.move_on_after(KILL_WAIT):
                await shot.event.wait()
        await self._remove(ctr, volumes)

    async def _remove_link(self, ref: str) -> None:
        """DELETE ?link=1 of ``parent/alias``: drop the link from the parent (moby's rmLink)."""
        parent_name, alias = links.split_link_name(ref)
        if not parent_name:
            self._resolve(ref)  # No such container first, as dockerd
            # A plain error in moby's rmLink, hence a 500.
            raise errdefs.Internal("Conflict, cannot remove the default link name of the container")
        try:
            parent = self._resolve(parent_name)
        except errdefs.NotFound:
            raise errdefs.NotFound(f"No such container: {ref}") from None
        async with parent.lock:
            specs = list(parent.rec.host_config.get("Links") or [])
            kept = [s for s in specs if links.parse_link(s)[1] != alias]
            if len(kept) == len(specs):
                raise errdefs.NotFound(f"No such container: {ref}")
            parent.rec.host_config["Links"] = kept or None
            await self._save(parent)

    async def _remove(self, ctr: _Ctr, volumes: bool | None = None) -> None:
        """Remove ``ctr``; ``volumes`` (default: AutoRemove) also deletes its anonymous volumes."""
        async with ctr.lock:
            if ctr.gone:
                return
            ctr.gone = True
            self._health.stop(ctr.id)
            for scope in (ctr.watch_scope, ctr.restart_scope):
                if scope is not None:
                    scope.cancel()
            with anyio.CancelScope(shield=True):
                try:
                    await self._runtime.delete(ctr.id, force=True)
                except errdefs.EngineError:
                    pass
                await self._runtime.cleanup_files(ctr.id)
                await self._drop_files(ctr.id)
                rm_vols = bool(ctr.rec.host_config.get("AutoRemove")) if volumes is None else volumes
                await self._release_volumes(ctr.rec, rm_vols)
                await self._detach_network(ctr.id, remove=True)
                await self._store.delete(ctr.id)
                self._ctrs.pop(ctr.id, None)
                self._execs.forget(ctr.id)
                if self._names.get(ctr.name) == ctr.id:
                    del self._names[ctr.name]
                code = ctr.rec.state.exit_code
                ctr.exit_shot.fire(code)
                ctr.removed.fire(code)
                await self._publish(ctr, "destroy")

    async def rename_container(self, ref: str, new_name: str) -> None:
        if not new_name:
            raise errdefs.InvalidArgument("Neither old nor new names may be empty")
        ctr = self._resolve(ref)
        new = validate_name(new_name)
        async with self._names_lock, ctr.lock:
            old = ctr.name
            if new == old:
                raise errdefs.InvalidArgument("Renaming a container with the same name as its current name")
            if new in self._names:
                raise name_conflict(new, self._names[new])
            ctr.rec.name = "/" + new
            try:
                await self._save(ctr)
            except BaseException:
                ctr.rec.name = "/" + old
                raise
            del self._names[old]
            self._names[new] = ctr.id
        await self._publish(ctr, "rename", oldName="/" + old)

    async def prune_containers(self, filters: dict[str, list[str]]) -> PruneResult:
        dfilters.validate(filters, {"until", "label", "label!"})
        until = None
        if filters.get("until"):
            until = dfilters.parse_timestamp_ns(filters["until"][0])
        deleted: list[str] = []
        reclaimed = 0
        for ctr in sorted(self._ctrs.values(), key=lambda c: c.rec.created):
            rec = ctr.rec
            if ctr.active() or ctr.gone:
                continue
            labels = rec.config.get("Labels") or {}
            if filters.get("label") and not dfilters.match_labels(filters["label"], labels):
                continue
            if filters.get("label!") and any(dfilters.match_labels([v], labels) for v in filters["label!"]):
                continue
            if until is not None and dfilters.parse_timestamp_ns(rec.created) >= until:
                continue
            upper = rec.graph_driver.get("UpperDir", "")
            size = await anyio.to_thread.run_sync(_dir_size, upper) if upper else 0
            try:
                await self.remove_container(ctr.id, False, False, False)
            except errdefs.EngineError as e:
                log.warning("prune: %s: %s", ctr.id, e)
                continue
            deleted.append(ctr.id)
            reclaimed += size
        await self._events.publish(
            Event(type="container", action="prune", actor_id="", attributes={"reclaimed": str(reclaimed)})
        )
        return PruneResult(deleted, reclaimed)

    # ---- resize / logs / attach ----------------------------------------------------------------

    async def resize_container(self, ref: str, height: int, width: int) -> None:
        ctr = self._resolve(ref)
        if not ctr.rec.state.running:
            raise errdefs.Conflict(f"Container {ctr.id} is not running")
        await self._resize(ctr, height, width)
        await self._publish(ctr, "resize", height=str(height), width=str(width))

    async def _resize(self, ctr: _Ctr, height: int, width: int) -> None:
        ctl = self._bundle(ctr.id) / "ctl"

        def write() -> None:
            try:
                fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:
                raise errdefs.Conflict(f"cannot resize container {ctr.id}: {e.strerror}") from None
            try:
                os.write(fd, f"1 {height} {width}\n".encode())
            finally:
                os.close(fd)

        await anyio.to_thread.run_sync(write)

    async def container_logs(self, ref: str, opts: LogsOptions) -> AsyncIterator[LogEntry]:
        ctr = self._resolve(ref)
        try:
            readable = settings_of(ctr.rec.host_config.get("LogConfig")).readable
        except errdefs.InvalidArgument:
            readable = True  # a record from before the checks: its log is there
        if not readable:
            raise errdefs.InvalidArgument('configured logging driver does not support reading')

        def running() -> bool:
            return not ctr.gone and ctr.active()

        async for entry in read_log(ctr.rec.log_path, opts, running, self._log_locks.get(ctr.rec.log_path)):
            yield entry

    async def attach_container(
        self, ref: str, opts: AttachOptions, stdin: AsyncIterator[bytes] | None
    ) -> AsyncIterator[OutputFrame]:
        ctr = self._resolve(ref)
        if ctr.rec.state.paused:
            raise errdefs.Conflict(f"container {ref} is paused, unpause the container before attach")
        keys = parse_detach_keys(opts.detach_keys)
        cfg = ctr.rec.config
        tty = bool(cfg.get("Tty"))
        tg = self._tg_or_fail()
        yield OutputFrame(ready=True)
        await self._publish(ctr, "attach")
        if opts.logs:
            async for e in read_log(ctr.rec.log_path, LogsOptions(stdout=opts.stdout, stderr=opts.stderr),
                                    lambda: False, self._log_locks.get(ctr.rec.log_path)):  # fmt: skip
                yield OutputFrame(1 if tty or e.stream == "stdout" else 2, e.data)
        if not opts.stream:
            return
        sock = await self._connect_attach(ctr)
        if sock is None:
            return
        detached = anyio.Event()
        stdin_done = anyio.Event()
        scope = anyio.CancelScope()
        pumping = finished = False
        try:
            sock.setblocking(False)
            if opts.stdin and stdin is not None and cfg.get("OpenStdin"):
                close_on_eof = bool(cfg.get("StdinOnce"))
                pumping = True

                async def pump() -> None:
                    with scope:
                        await pump_stdin(sock, stdin, close_on_eof, keys, detached)
                        stdin_done.set()

                tg.start_soon(pump)
            while True:
                packet = await recv_packet(sock)
                if detached.is_set():
                    finished = True
                    await self._publish(ctr, "detach")  # moby: on the detach keys only
                    return
                if not packet:
                    finished = True
                    return
                kind, payload = packet[0], packet[1:]
                if not payload:
                    continue
                stream = 1 if tty or kind == 2 else 2
                if (stream == 1 and opts.stdout) or (stream == 2 and opts.stderr):
                    yield OutputFrame(stream, payload)
        finally:
            scope.cancel()
            sock.close()
            if pumping and not finished and not stdin_done.is_set() and ctr.rec.state.running:
                # Closed by the consumer with stdin still open: a client that goes away ends its
                # stdin first, so this is the gateway's detach (it matches the keys itself).
                with anyio.CancelScope(shield=True):
                    await self._publish(ctr, "detach")

    async def _connect_attach(self, ctr: _Ctr) -> Any:
        """A connected attach socket once the container has one; None if it went away."""
        registered = False
        try:
            while True:
                if ctr.gone:
                    return None
                if ctr.sock_open:
                    path = self._bundle(ctr.id) / "attach"
                    try:
                        return await anyio.to_thread.run_sync(connect_attach_path, path)
                    except OSError:
                        if ctr.sock_open and ctr.rec.state.running:
                            raise errdefs.Internal(f"cannot attach to container {ctr.id}") from None
                if not registered:
                    ctr.pending_attach += 1
                    registered = True
                await anyio.sleep(0.01)
        finally:
            if registered:
                ctr.pending_attach -= 1

    # ---- networks (networks_svc) -------------------------------------------------------------

    def _attach_request(self, rec: ContainerRecord) -> AttachRequest:
        mode = str(rec.host_config.get("NetworkMode") or "bridge")
        if mode.startswith("container:"):
            mode = "container:" + self._resolve(mode.split(":", 1)[1]).id
        return net_shapes.attach_request(rec.id, rec.name, rec.config, rec.host_config,
                                         rec.networking_config, mode)  # fmt: skip

    async def _attach_network(self, rec: ContainerRecord) -> AttachResult | None:
        """Plug the container in (netns, veths, ports) before its bundle is written."""
        if self._networks is None:
            return None
        res = await self._networks.attach_endpoints(self._attach_request(rec))
        rec.network_settings = net_shapes.network_settings(res, rec.config.get("ExposedPorts") or {})
        return res

    async def _detach_network(self, cid: str, remove: bool = False) -> None:
        if self._networks is None:
            return
        try:
            await self._networks.detach_endpoints(cid, remove=remove)
        except errdefs.EngineError as e:  # never fail an exit or a removal over the network
            log.warning("detaching the network of %s: %s", cid, e)
        ctr = self._ctrs.get(cid)
        if ctr is not None and not remove:
            mode = str(ctr.rec.host_config.get("NetworkMode") or "bridge")
            ctr.rec.network_settings = network_settings_for(mode)

    async def network_changed(self, cid: str, res: AttachResult | None) -> None:
        """The networks service connected/disconnected ``cid``: refresh its NetworkSettings."""
        ctr = self._ctrs.get(cid)
        if ctr is None or res is None:
            return
        async with ctr.lock:
            # The networks it is on show in inspect while not running too (dockerd keeps them).
            eps = net_shapes.endpoints_config(res)
            if eps:
                ctr.rec.networking_config = {**(ctr.rec.networking_config or {}), "EndpointsConfig": eps}
            if ctr.rec.state.running:
                exposed = ctr.rec.config.get("ExposedPorts") or {}
                ctr.rec.network_settings = net_shapes.network_settings(res, exposed)
            await self._save(ctr)

    # ---- exec (containers_svc.execs) -----------------------------------------------------------

    async def create_exec(self, ref: str, config: ExecConfig) -> str:
        return await self._execs.create(ref, config)

    def start_exec(
        self, exec_id: str, detach: bool, tty: bool, stdin: AsyncIterator[bytes] | None
    ) -> AsyncIterator[OutputFrame]:
        return self._execs.start(exec_id, detach, tty, stdin)

    async def get_exec(self, exec_id: str) -> ExecRecord:
        return await self._execs.get(exec_id)

    async def resize_exec(self, exec_id: str, height: int, width: int) -> None:
        await self._execs.resize(exec_id, height, width)

    # ---- top / stats / update / health (containers_svc.top, .stats, .update, .health) ------------

    async def top_container(self, ref: str, ps_args: str) -> TopResult:
        ctr = self._resolve(ref)
        result = await top(ctr.rec, ps_args)
        await self._publish(ctr, "top")
        return result

    async def container_stats(self, ref: str, stream: bool, one_shot: bool) -> AsyncIterator[dict[str, Any]]:
        ctr = self._resolve(ref)

        def get() -> ContainerRecord:
            if ctr.gone:
                raise errdefs.NotFound(f"No such container: {ref}")
            return ctr.rec

        async for doc in stats_stream(get, stream, one_shot):
            yield doc

    async def update_container(self, ref: str, update: dict[str, Any]) -> list[str]:
        ctr = self._resolve(ref)
        warnings = verify_update(update)
        async with ctr.lock:
            rec = ctr.rec
            if ctr.gone or rec.state.dead or rec.state.status == "removing":
                raise errdefs.Conflict(f'Cannot update container {ctr.id}: container is marked for removal '
                                       'and cannot be "update"')  # fmt: skip
            old = rec.host_config
            new = apply_update(ctr.id, old, update)
            weight = int(update.get("BlkioWeight") or 0)
            if weight and not await anyio.to_thread.run_sync(blkio_weight_supported):
                warnings.append("Your kernel does not support Block I/O weight or the cgroup is not mounted. "
                                "Weight discarded.")  # fmt: skip
                new["BlkioWeight"] = old.get("BlkioWeight") or 0
            st = rec.state
            if st.running and not st.restarting:
                try:
                    await self._runtime.update(ctr.id, oci_resources(new))
                    if new.get("PidsLimit") is None and old.get("PidsLimit"):
                        pids_dir = (await anyio.to_thread.run_sync(cgroup_dirs, rec)).get("pids")
                        if pids_dir is not None:
                            await anyio.to_thread.run_sync(lift_pids_limit, pids_dir)
                except errdefs.EngineError as e:
                    raise errdefs.Internal(f"Cannot update container {ctr.id}: {e.message}") from None
                except OSError as e:
                    raise errdefs.Internal(f"Cannot update container {ctr.id}: {e}") from None
            rec.host_config = new
            try:
                await self._save(ctr)
            except BaseException:
                rec.host_config = old
                raise
        await self._publish(ctr, "update")
        return warnings

    def _health_get(self, cid: str) -> ContainerRecord | None:
        ctr = self._ctrs.get(cid)
        return None if ctr is None or ctr.gone else ctr.rec

    async def _health_publish(self, cid: str, action: str) -> None:
        ctr = self._ctrs.get(cid)
        if ctr is not None:
            await self._publish(ctr, action)

    async def _health_save(self, cid: str) -> None:
        ctr = self._ctrs.get(cid)
        if ctr is None or ctr.gone:
            return
        try:
            await self._save(ctr)
        except errdefs.EngineError as e:  # best effort, as moby's health persistence
            log.warning("saving the health of %s: %s", cid, e)

    # ---- diff / export / archive (containers_svc.archive) --------------------------------------

    def _files_lookup(self, ref: str) -> tuple[ContainerRecord, anyio.Lock]:
        ctr = self._resolve(ref)
        return ctr.rec, ctr.lock

    async def _files_publish(self, cid: str, action: str) -> None:
        ctr = self._ctrs.get(cid)
        if ctr is not None:
            await self._publish(ctr, action)

    async def container_changes(self, ref: str) -> list[Change]:
        return await self._files.changes(ref)

    def export_container(self, ref: str) -> AsyncIterator[bytes]:
        return self._files.export(ref)

    async def stat_archive(self, ref: str, path: str) -> PathStat:
        return await self._files.stat_path(ref, path)

    def get_archive(self, ref: str, path: str) -> AsyncIterator[PathStat | bytes]:
        return self._files.get_archive(ref, path)

    async def put_archive(
        self, ref: str, path: str, data: AsyncIterator[bytes], no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> None:
        await self._files.put_archive(ref, path, data, no_overwrite_dir_non_dir, copy_uid_gid)

    # ---- commit (issue 3) ----------------------------------------------------------------------

    async def commit_container(self, ref: str, req: CommitRequest) -> str:
        ctr = self._resolve(ref)
        paused_here = False
        if req.pause and ctr.rec.state.running and not ctr.rec.state.paused:
            try:
                await self.pause_container(ctr.id)
                paused_here = True
            except errdefs.EngineError as e:
                # Most likely exiting right now: its files are about to be still anyway.
                log.warning("commit of %s without pausing: %s", ctr.id[:12], e.message)
        try:
            image_id = await self._images.commit_image(ctr.id, CommitOptions(
                container_config=dict(ctr.rec.config), config=req.config, repo=req.repo,
                tag=req.tag, comment=req.comment, author=req.author, changes=list(req.changes)))
            ref_name = f"{req.repo}:{req.tag or 'latest'}" if req.repo else ""
            # moby's order: pause, commit, unpause (deferred)
            await self._publish(ctr, "commit", comment=req.comment, imageID=image_id, imageRef=ref_name)
        finally:
            if paused_here:
                with anyio.CancelScope(shield=True):
                    try:
                        await self.unpause_container(ctr.id)
                    except errdefs.EngineError as e:
                        log.warning("unpausing %s after commit: %s", ctr.id[:12], e.message)
        return image_id
