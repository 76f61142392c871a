"""Wait, logs and attach over real sockets (flushing, framing, half-close, detach), plus the codecs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import pytest

import errdefs
from containers_svc.api import ContainerState, LogEntry, OutputFrame, WaitEvent
from dockerapi.timefmt import rfc3339_seconds
from gateway_svc import container_shapes as shapes
from gateway_svc.routes.containers import log_line
from gateway_svc.streams import DetachScanner, FrameDecoder, encode_frame, parse_detach_keys

from .client import connect, read_until_eof
from .conftest import ServeFn
from .containers_fake import FakeContainers, make_router
from .test_containers_routes import create

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake() -> FakeContainers:
    return FakeContainers()


@pytest.fixture
async def api(serving: ServeFn, fake: FakeContainers) -> AsyncIterator[Path]:
    async with serving(make_router(fake)) as path:
        yield path


def frames(data: bytes) -> list[tuple[int, bytes]]:
    dec = FrameDecoder()
    out = list(dec.feed(data))
    assert dec.pending == 0
    return out


async def read_head(stream: anyio.abc.ByteStream) -> tuple[bytes, bytes]:
    """Read up to the end of the response head; return (head, bytes after it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += await stream.receive()
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


# --- codecs ---------------------------------------------------------------------------------

def test_frame_roundtrip_and_header_layout() -> None:
    assert encode_frame(1, b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert encode_frame(2, b"") == b""
    data = encode_frame(1, b"a" * 70000) + encode_frame(2, b"err")
    dec = FrameDecoder()
    got = list(dec.feed(data[:5])) + list(dec.feed(data[5:9000])) + list(dec.feed(data[9000:]))
    assert got == [(1, b"a" * 70000), (2, b"err")] and dec.pending == 0


@pytest.mark.parametrize(("spec", "keys"), [
    ("", b"\x10\x11"), ("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-a", b"\x01"), ("a,b", b"ab"),
    ("CTRL-Z,ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", b"\x1a\x00\x1b\x1c\x1d\x1e\x1f"),
])
def test_parse_detach_keys(spec: str, keys: bytes) -> None:
    assert parse_detach_keys(spec) == keys


@pytest.mark.parametrize("spec", ["ctrl-", "ctrl-1", "ab", "a,,b", "ctrl-pp"])
def test_parse_detach_keys_rejects(spec: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=r"Invalid detach keys \(.*\) provided"):
        parse_detach_keys(spec)


def test_detach_scanner_across_chunks_and_partial_matches() -> None:
    s = DetachScanner(b"\x10\x11")
    assert s.feed(b"ab\x10") == (b"ab", False)
    assert s.feed(b"x") == (b"\x10x", False)  # held byte released in order
    assert s.feed(b"\x10") == (b"", False)
    assert s.feed(b"\x11rest") == (b"", True)
    s = DetachScanner(b"aab")
    assert s.feed(b"aaab") == (b"a", True)
    s = DetachScanner(b"ab")
    assert s.feed(b"xa") == (b"x", False)
    assert s.flush() == b"a"


def test_human_duration_and_status_text() -> None:
    assert [shapes.human_duration(s) for s in (0.5, 1, 5, 59, 60, 119, 120, 3599, 3600, 7200,
                                               86400 * 3, 86400 * 20, 86400 * 90, 86400 * 800)] == [
        "Less than a second", "1 second", "5 seconds", "59 seconds", "About a minute",
        "About a minute", "2 minutes", "59 minutes", "About an hour", "2 hours", "3 days",
        "2 weeks", "3 months", "2 years"]
    t0 = "2026-01-01T00:00:00.123456789Z"
    now = rfc3339_seconds(t0) + 5.5
    assert shapes.status_text(ContainerState(), now) == "Created"
    assert shapes.status_text(ContainerState("running", True, started_at=t0), now) == "Up 5 seconds"
    assert shapes.status_text(ContainerState("paused", True, True, started_at=t0), now + 120) == \
        "Up 2 minutes (Paused)"
    assert shapes.status_text(ContainerState("exited", exit_code=3, started_at=t0, finished_at=t0),
                              now - 2) == "Exited (3) 3 seconds ago"
    assert shapes.status_text(ContainerState("restarting", True, restarting=True, exit_code=1,
                                             started_at=t0, finished_at=t0), now) == \
        "Restarting (1) 5 seconds ago"
    healthy = ContainerState("running", True, started_at=t0, health={"Status": "healthy"})
    assert shapes.status_text(healthy, now) == "Up 5 seconds (healthy)"
    starting = ContainerState("running", True, started_at=t0, health={"Status": "starting"})
    assert shapes.status_text(starting, now) == "Up 5 seconds (health: starting)"
    assert shapes.status_text(ContainerState("dead", dead=True, started_at=t0), now) == "Dead"
    assert shapes.status_text(ContainerState("removing", started_at=t0), now) == "Removal In Progress"


def test_command_text_and_wait_result() -> None:
    assert shapes.command_text("sh", ["-c", "echo hi"]) == "sh -c 'echo hi'"
    assert shapes.command_text("top", []) == "top"
    assert shapes.wait_result(WaitEvent(status_code=3)) == b'{"StatusCode":3,"Error":null}\n'
    assert shapes.wait_result(WaitEvent(status_code=1, error="x")) == \
        b'{"StatusCode":1,"Error":{"Message":"x"}}\n'


def test_log_line_timestamps_and_framing() -> None:
    e = LogEntry("stderr", b"oops\n", 1_700_000_000_000_000_042)
    assert log_line(e, True, False) == b"2023-11-14T22:13:20.000000042Z oops\n"
    assert frames(log_line(e, False, True)) == [(2, b"oops\n")]


# --- wait -----------------------------------------------------------------------------------

async def test_wait_flushes_headers_before_the_result(api: Path, fake: FakeContainers) -> None:
    await create(api, "w")
    await fake.start_container("w")
    async with connect(api) as c:
        await c.request("POST", "/v1.50/containers/w/wait?condition=next-exit")
        head = await c.response_head()  # arrives while the container still runs
        assert head.status_code == 200
        assert fake.last() == ("wait", "w", "next-exit")
        fake.exit("w", 3)
        body = b""
        while (chunk := await c.next_chunk()) is not None:
            body += chunk
    assert body == b'{"StatusCode":3,"Error":null}\n'


async def test_wait_error_message_and_conditions(api: Path, fake: FakeContainers) -> None:
    await create(api, "w")
    await fake.start_container("w")
    async with connect(api) as c:
        await c.request("POST", "/v1.29/containers/w/wait?condition=bogus")  # < 1.30 ignores it
        await c.response_head()
        fake.exit("w", 99)
        assert await c.next_chunk() == b'{"StatusCode":99,"Error":{"Message":"oops"}}\n'
    assert fake.last() == ("wait", "w", "not-running")
    async with connect(api) as c:
        await c.request("POST", "/containers/w/wait?condition=bogus")
        r = await c.reply()
    assert r.status == 400 and json.loads(r.body) == {"message": 'invalid condition: "bogus"'}


# --- logs -----------------------------------------------------------------------------------

async def test_logs_multiplexed_with_timestamps(api: Path, fake: FakeContainers) -> None:
    await create(api, "l")
    fake.add_log("l", "stdout", b"one\n", 1_700_000_000_000_000_001)
    fake.add_log("l", "stderr", b"two\n", 1_700_000_000_500_000_000)
    async with connect(api) as c:
        await c.request("GET", "/v1.50/containers/l/logs?stdout=1&stderr=1&timestamps=1&tail=all")
        r = await c.reply()
    assert r.status == 200 and r.headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    assert frames(r.body) == [(1, b"2023-11-14T22:13:20.000000001Z one\n"),
                              (2, b"2023-11-14T22:13:20.500000000Z two\n")]
    async with connect(api) as c:
        await c.request("GET", "/v1.41/containers/l/logs?stderr=1&tail=1")
        r = await c.reply()
    assert r.headers["content-type"] == "application/vnd.docker.raw-stream"  # < 1.42
    assert frames(r.body) == [(2, b"two\n")]  # still framed: no tty


async def test_logs_tty_is_raw_and_needs_a_stream(api: Path, fake: FakeContainers) -> None:
    await create(api, "t", Tty=True)
    fake.add_log("t", "stdout", b"raw\r\n", 1)
    async with connect(api) as c:
        await c.request("GET", "/containers/t/logs?stdout=1")
        r = await c.reply()
    assert r.headers["content-type"] == "application/vnd.docker.raw-stream" and r.body == b"raw\r\n"
    async with connect(api) as c:
        await c.request("GET", "/containers/t/logs")
        r = await c.reply()
    assert r.status == 400 and json.loads(r.body) == {"message": "You must choose at least one stream"}


async def test_logs_follow_stops_when_client_disconnects(api: Path, fake: FakeContainers) -> None:
    await create(api, "f")
    await fake.start_container("f")
    fake.add_log("f", "stdout", b"hello\n", 1)
    async with connect(api) as c:
        await c.request("GET", "/containers/f/logs?stdout=1&follow=1")
        head = await c.response_head()
        assert head.status_code == 200
        assert frames(await c.next_chunk() or b"") == [(1, b"hello\n")]
    with anyio.fail_after(5):
        await fake.logs_closed.wait()


# --- attach ---------------------------------------------------------------------------------

ATTACH = (b"POST /v1.50/containers/%s/attach?stream=1&stdout=1&stderr=1%s HTTP/1.1\r\nHost: d\r\n"
          b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")


async def test_attach_non_tty_frames_output_then_closes(api: Path, fake: FakeContainers) -> None:
    cid = await create(api, "a")
    await fake.start_container("a")
    fake.script[cid] = [OutputFrame(1, b"out\n"), OutputFrame(2, b"err\n")]
    stream = await anyio.connect_unix(api)
    async with stream:
        await stream.send(ATTACH % (b"a", b""))
        head, rest = await read_head(stream)
        assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
        assert b"Content-Type: application/vnd.docker.multiplexed-stream" in head
        assert b"Upgrade: tcp" in head and b"Api-Version: 1.50" in head
        body = rest + await read_until_eof(stream)
    assert frames(body) == [(1, b"out\n"), (2, b"err\n")]
    assert fake.attached[0].closed.is_set()


async def test_attach_tty_raw_without_upgrade_is_200(api: Path, fake: FakeContainers) -> None:
    cid = await create(api, "t", Tty=True)
    await fake.start_container("t")
    fake.script[cid] = [OutputFrame(1, b"\x1b[1mhi\r\n")]
    stream = await anyio.connect_unix(api)
    async with stream:
        await stream.send(b"POST /v1.41/containers/t/attach?stream=1&stdout=1 HTTP/1.1\r\n"
                          b"Host: d\r\nContent-Length: 0\r\n\r\n")
        head, rest = await read_head(stream)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Type: application/vnd.docker.raw-stream" in head
        body = rest + await read_until_eof(stream)
    assert body == b"\x1b[1mhi\r\n"


async def test_attach_stdin_half_close_reaches_backend(api: Path, fake: FakeContainers) -> None:
    await create(api, "cat", OpenStdin=True)
    await fake.start_container("cat")
    stream = await anyio.connect_unix(api)
    async with stream:
        await stream.send(ATTACH % (b"cat", b"&stdin=1"))
        head, rest = await read_head(stream)
        assert b"multiplexed-stream" in head
        await stream.send(b"hello ")
        await stream.send(b"world\n")
        await stream.send_eof()  # CloseWrite: stdin ends, output keeps flowing
        body = rest + await read_until_eof(stream)
    assert b"".join(d for s, d in frames(body) if s == 1) == b"hello world\n"
    assert frames(body)[-1] == (2, b"stdin closed\n")
    seen = fake.attached[0]
    assert seen.opts.stdin and seen.stdin == b"hello world\n" and seen.stdin_ended


async def test_attach_tty_detach_keys_end_session(api: Path, fake: FakeContainers) -> None:
    await create(api, "sh", Tty=True, OpenStdin=True)
    await fake.start_container("sh")
    stream = await anyio.connect_unix(api)
    async with stream:
        await stream.send(ATTACH % (b"sh", b"&stdin=1&detachKeys=ctrl-a,x"))
        _, rest = await read_head(stream)
        await stream.send(b"ls\n")
        got = rest
        while got != b"ls\n":
            got += await stream.receive()
        await stream.send(b"\x01")
        await stream.send(b"x")
        with anyio.fail_after(5):
            assert await read_until_eof(stream) == b""  # the server closed the connection
    seen = fake.attached[0]
    with anyio.fail_after(5):
        await seen.closed.wait()
    assert seen.stdin == b"ls\n" and not seen.stdin_ended  # detached, stdin not closed
    assert fake.recs[fake.find("sh").id].state.running


async def test_attach_detach_keys_ignored_without_tty(api: Path, fake: FakeContainers) -> None:
    await create(api, "nt", OpenStdin=True)
    await fake.start_container("nt")
    stream = await anyio.connect_unix(api)
    async with stream:
        await stream.send(ATTACH % (b"nt", b"&stdin=1"))
        _, rest = await read_head(stream)
        await stream.send(b"a\x10\x11b")
        await stream.send_eof()
        body = rest + await read_until_eof(stream)
    assert fake.attached[0].stdin == b"a\x10\x11b"
    assert frames(body)[-1] == (2, b"stdin closed\n")


async def test_attach_errors_before_hijack_are_http(api: Path, fake: FakeContainers) -> None:
    await create(api, "stopped")
    await fake.start_container("stopped")
    fake.exit("stopped", 0)
    async with connect(api) as c:
        await c.request("POST", "/containers/stopped/attach?stream=1&stdout=1",
                        [("Connection", "Upgrade"), ("Upgrade", "tcp")])
        r = await c.reply()
    assert r.status == 409
    assert json.loads(r.body) == {"message": "You cannot attach to a stopped container, start it first"}
    async with connect(api) as c:
        await c.request("POST", "/containers/stopped/attach?stream=1&detachKeys=ctrl-")
        r = await c.reply()
    assert r.status == 400 and json.loads(r.body) == {"message": "Invalid detach keys (ctrl-) provided"}
