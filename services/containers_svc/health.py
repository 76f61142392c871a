"""Healthchecks (Config.Healthcheck): one probe runner per running container, moby's state machine.

Each probe is an exec session through the ExecManager (so ``docker events`` shows exec_create /
exec_start / exec_die as with dockerd); a probe that outlives its timeout is SIGKILLed. State lives
in ``State.Health`` ({Status, FailingStreak, Log}) of the container record, saved after every
probe so inspect shows it after a restart of berthd. A probe that ends while the container's init
is already gone (a stop in progress) is not counted (moby drops results after the stop).
Paused containers are not probed. A (re)started or re-adopted container starts over as
``starting`` with its log kept (moby initHealthMonitor).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.abc

import errdefs
from containers_svc.api import ContainerRecord, ExecConfig
from containers_svc.execs import ExecManager
from containers_svc.logs import format_timestamp
from dockerapi.timefmt import rfc3339_seconds

__all__ = [
    "HealthMonitor",
    "HealthSettings",
    "apply_result",
    "go_duration",
    "probe_command",
    "settings_of",
    "validate_healthcheck",
]

log = logging.getLogger(__name__)

_S = 1_000_000_000
DEFAULT_INTERVAL = 30 * _S
DEFAULT_TIMEOUT = 30 * _S
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5 * _S
DEFAULT_RETRIES = 3
MAX_OUTPUT = 4096
MAX_LOG = 5
EXEC_START_WAIT = 30.0  # moby: a probe whose exec does not start within this fails
KILL_WAIT = 5.0
HEALTH_STATUSES = ("starting", "healthy", "unhealthy", "none")


def probe_command(config: Mapping[str, Any]) -> list[str] | None:
    """The argv a probe runs, or None when there is no healthcheck (absent, empty or NONE)."""
    hc = config.get("Healthcheck") or {}
    test = list(hc.get("Test") or [])
    if not test:
        return None
    kind = test[0]
    if kind == "CMD" and len(test) > 1:
        return test[1:]
    if kind == "CMD-SHELL" and len(test) > 1:
        shell = list(config.get("Shell") or []) or ["/bin/sh", "-c"]
        return [*shell, *test[1:]]
    return None  # NONE, or a type moby ignores with a warning


def validate_healthcheck(config: Mapping[str, Any]) -> None:
    """moby validateHealthCheck on the request's Config.

    Raises:
        errdefs.InvalidArgument: ``Interval in Healthcheck cannot be less than 1ms`` etc.
    """
    hc = config.get("Healthcheck")
    if not isinstance(hc, Mapping):
        if hc is not None:
            raise errdefs.InvalidArgument("Healthcheck must be an object")
        return
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        value = hc.get(key) or 0
        if not isinstance(value, int):
            raise errdefs.InvalidArgument(f"{key} in Healthcheck must be an integer (nanoseconds)")
        if value != 0 and value < 1_000_000:
            raise errdefs.InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    retries = hc.get("Retries") or 0
    if not isinstance(retries, int) or retries < 0:
        raise errdefs.InvalidArgument("Retries in Healthcheck cannot be negative")
    test = hc.get("Test")
    if test is not None and (not isinstance(test, list) or not all(isinstance(t, str) for t in test)):
        raise errdefs.InvalidArgument("Test in Healthcheck must be a list of strings")


class HealthSettings:
    """Config.Healthcheck with Docker's defaults, in nanoseconds."""

    def __init__(self, hc: Mapping[str, Any]) -> None:
        self.interval = int(hc.get("Interval") or 0) or DEFAULT_INTERVAL
        self.timeout = int(hc.get("Timeout") or 0) or DEFAULT_TIMEOUT
        self.start_period = int(hc.get("StartPeriod") or 0) or DEFAULT_START_PERIOD
        self.start_interval = int(hc.get("StartInterval") or 0) or DEFAULT_START_INTERVAL
        retries = int(hc.get("Retries") or 0)
        self.retries = retries if retries > 0 else DEFAULT_RETRIES

    def next_interval(self, since_start_ns: int, status: str) -> int:
        """moby monitor getInterval: start_interval while starting within the start period."""
        if since_start_ns >= self.start_period:
            return self.interval
        remaining = self.start_period - since_start_ns
        if remaining < self.interval:
            return remaining
        return self.start_interval if status == "starting" else self.interval


def settings_of(config: Mapping[str, Any]) -> HealthSettings:
    return HealthSettings(config.get("Healthcheck") or {})


def go_duration(ns: int) -> str:
    """Go's time.Duration.String for whole ms values: 1s, 1.5s, 500ms, 1m30s, 1h0m0s."""
    if ns < _S:
        ms, rem = divmod(ns, 1_000_000)
        return f"{ms}ms" if not rem else f"{ns / 1_000_000:g}ms"
    hours, rest = divmod(ns, 3600 * _S)
    minutes, rest = divmod(rest, 60 * _S)
    secs = f"{rest / _S:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs


def apply_result(
    health: dict[str, Any], result: dict[str, Any], settings: HealthSettings, started_at_ns: int
) -> None:
    """moby handleProbeResult: append to the log (last 5), update the streak and the status."""
    entries = list(health.get("Log") or [])
    entries.append(result)
    health["Log"] = entries[-MAX_LOG:]
    if result["ExitCode"] == 0:
        health["FailingStreak"] = 0
        health["Status"] = "healthy"
        return
    count = True
    if health.get("Status") == "starting":
        # Failures within the start period do not count while it never succeeded.
        start_ns = int(rfc3339_seconds(result["Start"]) * _S)
        if start_ns - started_at_ns < settings.start_period:
            count = False
    if count:
        health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
        if health["FailingStreak"] >= settings.retries:
            health["Status"] = "unhealthy"


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rpartition(b")")[2].split()[:1] != [b"Z"]


class HealthMonitor:
    """Runs probes for running containers that have a healthcheck.

    Args:
        execs: the exec machinery probes run through.
        get: container id -> its live record (None once removed).
        publish: (container id, action) -> publishes a container event.
        save: container id -> persists the record.
        task_group: the service's task group (raises errdefs.Unavailable when not running).
    """

    def __init__(
        self,
        execs: ExecManager,
        get: Callable[[str], ContainerRecord | None],
        publish: Callable[[str, str], Awaitable[None]],
        save: Callable[[str], Awaitable[None]],
        task_group: Callable[[], anyio.abc.TaskGroup],
    ) -> None:
        self._execs = execs
        self._get = get
        self._publish = publish
        self._save = save
        self._task_group = task_group
        self._scopes: dict[str, anyio.CancelScope] = {}

    def running(self, cid: str) -> bool:
        """Whether a probe runner is active for ``cid``."""
        return cid in self._scopes

    def start(self, rec: ContainerRecord) -> None:
        """(Re)start probing ``rec`` from ``starting``; a no-op without a healthcheck."""
        self.stop(rec.id)
        if probe_command(rec.config) is None:
            return
        old = rec.state.health or {}
        rec.state.health = {"Status": "starting", "FailingStreak": 0, "Log": list(old.get("Log") or [])}
        scope = anyio.CancelScope()
        self._scopes[rec.id] = scope
        self._task_group().start_soon(self._run, rec.id, scope)

    def stop(self, cid: str) -> None:
        """Stop probing (the container stopped or went away); its State.Health stays as it is."""
        scope = self._scopes.pop(cid, None)
        if scope is not None:
            scope.cancel()

    async def _run(self, cid: str, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                rec = self._get(cid)
                if rec is None or not rec.state.running or rec.state.health is None:
                    break
                settings = settings_of(rec.config)
                started_ns = int(rfc3339_seconds(rec.state.started_at) * _S) or time.time_ns()
                status = str(rec.state.health.get("Status") or "starting")
                wait = settings.next_interval(time.time_ns() - started_ns, status)
                await anyio.sleep(wait / _S)
                rec = self._get(cid)
                if rec is None or not rec.state.running or rec.state.health is None:
                    break
                if rec.state.paused or rec.state.restarting:
                    continue
                cmd = probe_command(rec.config)
                if cmd is None:
                    break
                pid = rec.state.pid
                result = await self._probe(rec, cmd, settings.timeout)
                health = rec.state.health
                if health is None or self._scopes.get(cid) is not scope or not _alive(pid):
                    break
                before = health.get("Status")
                apply_result(health, result, settings, started_ns)
                await self._save(cid)
                if before != health["Status"]:
                    await self._publish(cid, f"health_status: {health['Status']}")
        if self._scopes.get(cid) is scope:
            del self._scopes[cid]

    async def _probe(self, rec: ContainerRecord, cmd: list[str], timeout_ns: int) -> dict[str, Any]:
        """One probe run: HealthcheckResult {Start, End, ExitCode, Output}."""
        start = time.time_ns()

        def result(code: int, output: str) -> dict[str, Any]:
            return {"Start": format_timestamp(start), "End": format_timestamp(time.time_ns()),
                    "ExitCode": code, "Output": output}  # fmt: skip

        cfg = ExecConfig(cmd=cmd, attach_stdin=False, attach_stdout=True, attach_stderr=True, tty=False,
                         user=str(rec.config.get("User") or ""),
                         working_dir=str(rec.config.get("WorkingDir") or ""))  # fmt: skip
        try:
            exec_id = await self._execs.create(rec.id, cfg)
        except errdefs.EngineError as e:
            return result(-1, e.message)
        out = bytearray()
        truncated = False
        timed_out = False
        frames = self._execs.start(exec_id, False, False, None)
        try:
            with anyio.move_on_after(EXEC_START_WAIT + timeout_ns / _S) as outer:
                it = aiter(frames)
                first = await anext(it, None)  # ready: the exec is being launched
                with anyio.move_on_after(timeout_ns / _S) as inner:
                    if first is not None:
                        async for frame in it:
                            if frame.ready or not frame.data:
                                continue
                            keep = MAX_OUTPUT - len(out)
                            out += frame.data[: max(0, keep)]
                            truncated = truncated or len(frame.data) > keep
                timed_out = inner.cancelled_caught
            timed_out = timed_out or outer.cancelled_caught
        except errdefs.EngineError as e:
            self._execs.discard(exec_id)
            return result(-1, e.message)
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
        text = out.decode(errors="replace") + ("..." if truncated else "")
        if timed_out:
            await self._kill(exec_id)
            self._execs.discard(exec_id)
            msg = f"Health check exceeded timeout ({go_duration(timeout_ns)})"
            return result(-1, f"{msg}: {text}" if text else msg)
        code = await self._exit_code(exec_id)
        self._execs.discard(exec_id)
        if code is None:
            return result(-1, f"healthcheck for container {rec.id} has no exit code")
        return result(code, text)

    async def _exit_code(self, exec_id: str, wait: float = KILL_WAIT) -> int | None:
        with anyio.move_on_after(wait):
            while True:
                rec = await self._execs.get(exec_id)
                if rec.exit_code is not None:
                    return rec.exit_code
                await anyio.sleep(0.02)
        return None

    async def _kill(self, exec_id: str) -> None:
        """SIGKILL a probe that ran out of time and wait (briefly) for its exit to be recorded."""
        try:
            rec = await self._execs.get(exec_id)
        except errdefs.NotFound:
            return
        if rec.pid and rec.exit_code is None:
            try:
                os.kill(rec.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        await self._exit_code(exec_id)
