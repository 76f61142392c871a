"""EventBus: replay, live fan-out, filters, until, slow subscribers."""

from __future__ import annotations

import time

import anyio
import pytest

import errdefs
from events_svc.bus import EventBus, matches
from events_svc.model import Event


def _ev(action: str, actor: str = "a" * 64, type: str = "container", **attrs: str) -> Event:
    return Event(type=type, action=action, actor_id=actor, attributes=attrs)


@pytest.mark.anyio
async def test_replay_then_live_until() -> None:
    bus = EventBus("n" * 32)
    start = time.time_ns()
    await bus.publish(_ev("create", name="web"))
    await bus.publish(_ev("start", name="web"))
    got: list[str] = []

    async def consume() -> None:
        async for ev in bus.subscribe(start, time.time_ns() + 300_000_000, {}):
            got.append(ev.action)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.sleep(0.05)
        await bus.publish(_ev("die", name="web"))
    # The subscription ended by itself at `until`.
    assert got == ["create", "start", "die"]


@pytest.mark.anyio
async def test_filled_in_fields_and_topic() -> None:
    bus = EventBus("n" * 32)
    await bus.publish(_ev("exec_start: sh -c true"))
    [ev] = [e async for e in bus.subscribe(1, time.time_ns(), {})]
    assert ev.node_id == "n" * 32 and ev.time_nano > 0
    assert ev.topic == "/containers/exec_start"


def test_filters() -> None:
    ev = _ev("die", name="web", image="busybox:latest", **{"com.x": "1"})
    assert matches(ev, {"container": ["web"]})
    assert matches(ev, {"container": ["aaaa"]})  # id prefix
    assert not matches(ev, {"container": ["db"]})
    assert matches(ev, {"event": ["die", "stop"], "type": ["container"]})
    assert not matches(ev, {"type": ["image"]})
    assert matches(ev, {"image": ["busybox"]})
    assert matches(ev, {"label": ["com.x=1"]})
    assert not matches(ev, {"label": ["com.x=2"]})
    assert not matches(ev, {"image": ["busybox:other"]})
    img = _ev("tag", actor="sha256:" + "b" * 64, type="image", name="busybox:latest")
    assert matches(img, {"image": ["busybox:latest"]})
    assert matches(img, {"image": ["busybox"]})
    assert matches(img, {"image": ["sha256:" + "b" * 64]})
    assert not matches(img, {"image": ["busybox:1"]})
    assert matches(_ev("exec_start: sh"), {"event": ["exec_start"]})


@pytest.mark.anyio
async def test_unknown_filter_rejected() -> None:
    bus = EventBus("n" * 32)
    with pytest.raises(errdefs.InvalidArgument):
        async for _ in bus.subscribe(0, 1, {"bogus": ["x"]}):
            pass


@pytest.mark.anyio
async def test_slow_subscriber_does_not_block_publishers() -> None:
    bus = EventBus("n" * 32)
    agen = bus.subscribe(0, 0, {}).__aiter__()
    first = anyio.create_task_group()
    async with first as tg:
        async def one() -> None:
            await agen.__anext__()

        tg.start_soon(one)
        await anyio.sleep(0.01)
        with anyio.fail_after(2):
            for i in range(2000):  # far more than the subscriber buffer
                await bus.publish(_ev(f"a{i}"))
    await agen.aclose()
