"""RFC 6455 pieces of the gateway: the accept key, server frames, client frame decoding."""

from __future__ import annotations

import os
import struct

import anyio
import pytest
from anyio.streams.stapled import StapledObjectStream

import errdefs
from gateway_svc.http import Headers, HijackedStream, Request
from gateway_svc.websocket import WebSocketStream, accept_key, encode_frame, handshake_headers


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_accept_key_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_headers() -> None:
    ok = Request("GET", "/containers/x/attach/ws", Headers([
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]))
    assert ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") in handshake_headers(ok)
    with pytest.raises(errdefs.InvalidArgument):
        handshake_headers(Request("GET", "/x", Headers([])))


def test_encode_frame_lengths() -> None:
    assert encode_frame(2, b"hi") == b"\x82\x02hi"
    assert encode_frame(1, b"a" * 200)[:4] == b"\x81\x7e" + struct.pack("!H", 200)
    assert encode_frame(2, b"a" * 70000)[:10] == b"\x82\x7f" + struct.pack("!Q", 70000)


def _client_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else b"\xfe" + struct.pack("!H", n))
    return head + mask + body


@pytest.mark.anyio
async def test_stream_reads_data_answers_ping_and_ends_at_close() -> None:
    a, b = anyio.create_memory_object_stream[bytes](16)
    c, d = anyio.create_memory_object_stream[bytes](16)
    raw = StapledObjectStream(c, b)  # server sends on c, reads from b
    wire = (_client_frame(2, b"hello") + _client_frame(9, b"p") + _client_frame(1, b"x" * 300)
            + _client_frame(8, struct.pack("!H", 1000)))
    ws = WebSocketStream(HijackedStream(raw, buffered=wire), binary=True)  # type: ignore[arg-type]
    assert await ws.receive() == b"hello"
    assert await ws.receive() == b"x" * 300
    assert await d.receive() == b"\x8a\x01p"  # the pong
    assert await ws.receive() == b""
    assert await d.receive() == b"\x88\x02" + struct.pack("!H", 1000)  # close echoed
    await ws.send(b"out")  # after close nothing is guaranteed; sending must not raise
    await a.aclose()
