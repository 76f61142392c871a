"""Healthchecks: config rules, moby's state machine, and the probe runner over a fake exec manager."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import pytest

import errdefs
from containers_svc.api import ContainerRecord, ContainerState, ExecConfig, ExecRecord, OutputFrame
from containers_svc.config import merge_image_config
from containers_svc.execs import ExecManager
from containers_svc.health import (
    HealthMonitor,
    HealthSettings,
    apply_result,
    go_duration,
    probe_command,
    validate_healthcheck,
)
from containers_svc.logs import format_timestamp

S = 1_000_000_000
MS = 1_000_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_probe_command() -> None:
    assert probe_command({}) is None
    assert probe_command({"Healthcheck": {"Test": ["NONE"]}}) is None
    assert probe_command({"Healthcheck": {"Test": ["CMD", "true", "x"]}}) == ["true", "x"]
    assert probe_command({"Healthcheck": {"Test": ["CMD-SHELL", "exit 1"]}}) == ["/bin/sh", "-c", "exit 1"]
    cfg = {"Healthcheck": {"Test": ["CMD-SHELL", "x"]}, "Shell": ["/bin/bash", "-ec"]}
    assert probe_command(cfg) == ["/bin/bash", "-ec", "x"]


@pytest.mark.parametrize(("hc", "message"), [
    ({"Interval": 10}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Timeout": 999}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"StartPeriod": 1}, "StartPeriod in Healthcheck cannot be less than 1ms"),
    ({"StartInterval": 1}, "StartInterval in Healthcheck cannot be less than 1ms"),
    ({"Retries": -1}, "Retries in Healthcheck cannot be negative"),
])  # fmt: skip
def test_validate(hc: dict[str, Any], message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        validate_healthcheck({"Healthcheck": hc})
    validate_healthcheck({"Healthcheck": {"Test": ["CMD", "true"], "Interval": S}})
    validate_healthcheck({})


def test_defaults_and_intervals() -> None:
    d = HealthSettings({})
    got = (d.interval, d.timeout, d.retries, d.start_period, d.start_interval)
    assert got == (30 * S, 30 * S, 3, 0, 5 * S)
    s = HealthSettings({"Interval": 10 * S, "StartPeriod": 60 * S, "StartInterval": 2 * S})
    assert s.next_interval(0, "starting") == 2 * S
    assert s.next_interval(0, "healthy") == 10 * S
    assert s.next_interval(55 * S, "starting") == 5 * S  # the start period ends first
    assert s.next_interval(61 * S, "starting") == 10 * S


def _result(code: int, at_ns: int) -> dict[str, Any]:
    return {"Start": format_timestamp(at_ns), "End": format_timestamp(at_ns), "ExitCode": code, "Output": ""}


def test_state_machine() -> None:
    t0 = 1_700_000_000 * S
    settings = HealthSettings({"Retries": 2, "StartPeriod": 10 * S})
    h: dict[str, Any] = {"Status": "starting", "FailingStreak": 0, "Log": []}
    apply_result(h, _result(1, t0 + S), settings, t0)  # within the start period: not counted
    assert (h["Status"], h["FailingStreak"]) == ("starting", 0)
    apply_result(h, _result(1, t0 + 11 * S), settings, t0)
    assert (h["Status"], h["FailingStreak"]) == ("starting", 1)
    apply_result(h, _result(2, t0 + 12 * S), settings, t0)
    assert (h["Status"], h["FailingStreak"]) == ("unhealthy", 2)
    apply_result(h, _result(0, t0 + 13 * S), settings, t0)
    assert (h["Status"], h["FailingStreak"]) == ("healthy", 0)
    for i in range(5):
        apply_result(h, _result(1, t0 + (20 + i) * S), settings, t0)
    assert h["Status"] == "unhealthy" and len(h["Log"]) == 5 and h["Log"][-1]["Start"] == format_timestamp(
        t0 + 24 * S)


def test_go_duration() -> None:
    assert [go_duration(v) for v in (S, 30 * S, 500 * MS, 1500 * MS, 90 * S, 3600 * S)] == [
        "1s", "30s", "500ms", "1.5s", "1m30s", "1h0m0s"]


def test_merge_with_the_image_healthcheck() -> None:
    image = {"Healthcheck": {"Test": ["CMD-SHELL", "curl x"], "Interval": 30 * S, "Retries": 5}}
    assert merge_image_config({}, image)["Healthcheck"] == image["Healthcheck"]
    merged = merge_image_config({"Healthcheck": {"Interval": S}}, image)["Healthcheck"]
    assert merged == {"Test": ["CMD-SHELL", "curl x"], "Interval": S, "Retries": 5}
    assert merge_image_config({"Healthcheck": {"Test": ["NONE"]}}, image)["Healthcheck"]["Test"] == ["NONE"]


class FakeExecs:
    """The parts of ExecManager a probe uses; ``code`` None makes the probe hang."""

    def __init__(self, code: int | None, output: bytes = b"") -> None:
        self.code, self.output = code, output
        self.records: dict[str, ExecRecord] = {}
        self.discarded: list[str] = []

    async def create(self, ref: str, config: ExecConfig) -> str:
        eid = f"e{len(self.records)}"
        self.records[eid] = ExecRecord(id=eid, container_id=ref, config=config)
        return eid

    async def start(self, exec_id: str, detach: bool, tty: bool, stdin: Any) -> AsyncIterator[OutputFrame]:
        rec = self.records[exec_id]
        yield OutputFrame(ready=True)
        try:
            if self.output:
                yield OutputFrame(1, self.output)
            if self.code is None:
                await anyio.sleep_forever()
        finally:
            rec.exit_code = 137 if self.code is None else self.code

    async def get(self, exec_id: str) -> ExecRecord:
        return self.records[exec_id]

    def discard(self, exec_id: str) -> None:
        self.discarded.append(exec_id)


def _rec(hc: dict[str, Any]) -> ContainerRecord:
    state = ContainerState(status="running", running=True, pid=1, started_at=format_timestamp(time.time_ns()))
    return ContainerRecord(id="h" * 64, name="/h", created="", path="sh", args=[],
                           config={"Healthcheck": hc}, host_config={}, networking_config={}, image="b",
                           image_id="sha256:x", state=state)  # fmt: skip


@pytest.mark.anyio
async def test_probe_output_exit_code_and_timeout() -> None:
    rec = _rec({"Test": ["CMD", "x"]})

    async def noop(cid: str, *a: str) -> None:
        return None

    async with anyio.create_task_group() as tg:
        ok = FakeExecs(0, b"fine\n")
        mon = HealthMonitor(cast(ExecManager, ok), lambda cid: rec, noop, noop, lambda: tg)
        res = await mon._probe(rec, ["x"], S)
        assert (res["ExitCode"], res["Output"]) == (0, "fine\n") and ok.discarded == ["e0"]
        big = FakeExecs(1, b"y" * 5000)
        mon = HealthMonitor(cast(ExecManager, big), lambda cid: rec, noop, noop, lambda: tg)
        res = await mon._probe(rec, ["x"], S)
        assert res["ExitCode"] == 1 and res["Output"] == "y" * 4096 + "..."
        hang = FakeExecs(None, b"partial")
        mon = HealthMonitor(cast(ExecManager, hang), lambda cid: rec, noop, noop, lambda: tg)
        res = await mon._probe(rec, ["x"], 50 * MS)
        assert res["ExitCode"] == -1
        assert res["Output"] == "Health check exceeded timeout (50ms): partial"


@pytest.mark.anyio
async def test_monitor_goes_unhealthy_publishes_and_stops() -> None:
    rec = _rec({"Test": ["CMD", "false"], "Interval": 10 * MS, "Retries": 2})
    events: list[str] = []
    saves: list[str] = []
    unhealthy = anyio.Event()

    async def publish(cid: str, action: str) -> None:
        events.append(action)
        if action == "health_status: unhealthy":
            unhealthy.set()

    async def save(cid: str) -> None:
        saves.append(cid)

    async with anyio.create_task_group() as tg:
        mon = HealthMonitor(cast(ExecManager, FakeExecs(1)), lambda cid: rec, publish, save, lambda: tg)
        mon.start(rec)
        assert rec.state.health == {"Status": "starting", "FailingStreak": 0, "Log": []}
        with anyio.fail_after(5):
            await unhealthy.wait()
        assert events == ["health_status: unhealthy"]
        mon.stop(rec.id)
        assert not mon.running(rec.id)
    assert rec.state.health is not None and rec.state.health["FailingStreak"] >= 2 and saves
    none = _rec({"Test": ["NONE"]})
    async with anyio.create_task_group() as tg:
        mon = HealthMonitor(cast(ExecManager, FakeExecs(0)), lambda cid: none, publish, save, lambda: tg)
        mon.start(none)
        assert none.state.health is None and not mon.running(none.id)
