"""ContainersService with real busybox containers under conmon + crun (needs root)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

import errdefs
from containers_svc.api import AttachOptions, LogsOptions, WaitEvent
from containers_svc.service import ContainersService
from events_svc.model import Event

from .conftest import Env, req

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


async def logs_text(svc: ContainersService, cid: str) -> str:
    return b"".join([e.data async for e in svc.container_logs(cid, LogsOptions())]).decode()


async def wait_for(svc: ContainersService, cid: str, condition: str = "not-running") -> int:
    events: list[WaitEvent] = []
    with anyio.fail_after(30):
        async for ev in svc.wait_container(cid, condition):
            events.append(ev)
    assert events[0].registered and not events[-1].registered
    return events[-1].status_code


async def test_echo_hi_logs_and_exit_code(svc: ContainersService, env: Env) -> None:
    seen: list[Event] = []

    async def collect() -> None:
        async for ev in env.events.subscribe(0, 0, {"type": ["container"]}):
            seen.append(ev)

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        await anyio.sleep(0.01)
        cid = (await svc.create_container(req("echo", "hi", name="hello"))).id
        rec = await svc.get_container("hello")
        assert rec.id == cid and rec.name == "/hello" and rec.path == "echo" and rec.args == ["hi"]
        assert rec.state.status == "created"
        await svc.start_container(cid)
        assert await wait_for(svc, cid) == 0
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert await logs_text(svc, cid) == "hi\n"
    rec = await svc.get_container(cid[:12])
    assert rec.state.status == "exited" and rec.state.exit_code == 0 and not rec.state.running
    assert rec.state.finished_at != "0001-01-01T00:00:00Z"
    assert [e.action for e in seen] == ["create", "start", "die"]
    assert seen[-1].attributes["exitCode"] == "0" and seen[-1].attributes["name"] == "hello"
    with pytest.raises(errdefs.NotModified):
        await svc.stop_container(cid, None, "")
    await svc.remove_container(cid, False, False, False)
    with pytest.raises(errdefs.NotFound):
        await svc.get_container(cid)


async def test_exit_code_and_next_exit_registered_before_start(svc: ContainersService) -> None:
    cid = (await svc.create_container(req("sh", "-c", "exit 3"))).id
    it = svc.wait_container(cid, "next-exit")
    first = await anext(it)
    assert first.registered
    await svc.start_container(cid)
    with anyio.fail_after(30):
        last = await anext(it)
    assert last.status_code == 3
    assert (await svc.get_container(cid)).state.exit_code == 3
    await svc.remove_container(cid, False, False, False)


async def test_stop_escalates_to_sigkill(svc: ContainersService) -> None:
    cid = (await svc.create_container(req("sleep", "100"))).id
    await svc.start_container(cid)
    assert (await svc.get_container(cid)).state.running
    with pytest.raises(errdefs.NotModified):
        await svc.start_container(cid)
    with pytest.raises(errdefs.Conflict, match="You cannot remove a running container"):
        await svc.remove_container(cid, False, False, False)
    start = anyio.current_time()
    with anyio.fail_after(20):
        await svc.stop_container(cid, 1, "")
    assert anyio.current_time() - start >= 1.0
    rec = await svc.get_container(cid)
    assert rec.state.status == "exited" and rec.state.exit_code == 137
    await svc.remove_container(cid, False, False, False)


async def test_kill_and_force_remove(svc: ContainersService) -> None:
    cid = (await svc.create_container(req("sleep", "100"))).id
    await svc.start_container(cid)
    with pytest.raises(errdefs.InvalidArgument, match="Invalid signal"):
        await svc.kill_container(cid, "SIGNOPE")
    await svc.kill_container(cid, "KILL")
    assert (await svc.get_container(cid)).state.exit_code == 137
    with pytest.raises(errdefs.Conflict, match="is not running"):
        await svc.kill_container(cid, "")
    await svc.start_container(cid)
    await svc.pause_container(cid)
    assert (await svc.get_container(cid)).state.status == "paused"
    with pytest.raises(errdefs.Conflict, match="already paused"):
        await svc.pause_container(cid)
    await svc.unpause_container(cid)
    with anyio.fail_after(20):
        await svc.remove_container(cid, True, False, False)
    with pytest.raises(errdefs.NotFound):
        await svc.get_container(cid)
    assert not (svc._data_root / "containers" / cid).exists()


async def test_auto_remove_and_wait_removed(svc: ContainersService) -> None:
    cid = (await svc.create_container(req("sh", "-c", "exit 5", host_config={"AutoRemove": True}))).id
    it = svc.wait_container(cid, "removed")
    assert (await anext(it)).registered
    await svc.start_container(cid)
    with anyio.fail_after(30):
        assert (await anext(it)).status_code == 5
    with pytest.raises(errdefs.NotFound):
        await svc.get_container(cid)


async def test_restart_policy_on_failure_2(svc: ContainersService) -> None:
    hc = {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}
    cid = (await svc.create_container(req("sh", "-c", "echo run; exit 1", host_config=hc))).id
    await svc.start_container(cid)
    with anyio.fail_after(30):
        while True:
            rec = await svc.get_container(cid)
            if rec.state.status == "exited" and rec.restart_count == 2:
                break
            await anyio.sleep(0.05)
    await anyio.sleep(0.5)  # no third restart
    rec = await svc.get_container(cid)
    assert rec.restart_count == 2 and rec.state.status == "exited" and rec.state.exit_code == 1
    assert (await logs_text(svc, cid)) == "run\n" * 3
    await svc.remove_container(cid, False, False, False)


async def test_no_such_command_is_127(svc: ContainersService) -> None:
    cid = (await svc.create_container(req("nosuchcmd"))).id
    with pytest.raises(errdefs.InvalidArgument) as e:
        await svc.start_container(cid)
    assert e.value.message == 'exec: "nosuchcmd": executable file not found in $PATH'
    st = (await svc.get_container(cid)).state
    assert (st.status, st.exit_code, st.error) == ("exited", 127, e.value.message)
    cid2 = (await svc.create_container(req("/etc/passwd"))).id
    with pytest.raises(errdefs.InvalidArgument, match="permission denied"):
        await svc.start_container(cid2)
    assert (await svc.get_container(cid2)).state.exit_code == 126


async def test_attach_output_and_stdin(svc: ContainersService) -> None:
    cid = (await svc.create_container(req("sh", "-c", "echo a; sleep 1; echo b"))).id
    frames = []
    attach = svc.attach_container(cid, AttachOptions(), None)
    assert (await anext(attach)).ready

    async def reader() -> None:
        async for f in attach:
            frames.append((f.stream, f.data))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await svc.start_container(cid)
        with anyio.fail_after(20):
            await wait_for(svc, cid)
    assert b"".join(d for _, d in frames) == b"a\nb\n" and {s for s, _ in frames} == {1}

    cid = (await svc.create_container(req("cat", OpenStdin=True, StdinOnce=True, AttachStdin=True))).id

    async def stdin() -> AsyncIterator[bytes]:
        yield b"hello "
        await anyio.sleep(0.1)
        yield b"world\n"

    out = b""
    attach = svc.attach_container(cid, AttachOptions(stdin=True), stdin())
    assert (await anext(attach)).ready
    async with anyio.create_task_group() as tg:

        async def read_all() -> None:
            nonlocal out
            async for f in attach:
                out += f.data

        tg.start_soon(read_all)
        await svc.start_container(cid)
        with anyio.fail_after(20):
            assert await wait_for(svc, cid) == 0  # stdin closed at its end (StdinOnce): cat exits
    assert out == b"hello world\n"


async def test_reconcile_readopts_running_container(env: Env) -> None:
    first = env.service()
    async with anyio.create_task_group() as tg:
        await tg.start(first.run)
        cid = (await first.create_container(req("sh", "-c", "sleep 1.5; exit 7"))).id
        await first.start_container(cid)
        pid = (await first.get_container(cid)).state.pid
        tg.cancel_scope.cancel()  # the service goes away; the container must not
    assert (await env.runtime.state(cid))["status"] == "running"
    second = env.service()
    async with anyio.create_task_group() as tg:
        await tg.start(second.run)
        rec = await second.get_container(cid)
        assert rec.state.running and rec.state.pid == pid
        assert await wait_for(second, cid) == 7
        assert (await second.get_container(cid)).state.status == "exited"
        await second.remove_container(cid, False, False, False)
        tg.cancel_scope.cancel()
