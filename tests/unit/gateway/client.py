"""Test-side HTTP helpers: raw connections to the server, replies parsed with an h11 client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import h11


class Reply:
    """A parsed HTTP response (test side, parsed with an h11 client connection)."""

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.raw_headers = headers
        self.headers = {k.decode().lower(): v.decode() for k, v in headers}
        self.body = body


class RawClient:
    """A test HTTP/1.1 client on one connection: raw writes, h11-parsed replies."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def request(self, method: str, target: str, headers: list[tuple[str, str]] | None = None,
                      body: bytes = b"") -> None:
        hdrs = [("Host", "docker"), *(headers or [])]
        if body or method in ("POST", "PUT"):
            hdrs.append(("Content-Length", str(len(body))))
        await self.send_raw(self.conn.send(h11.Request(method=method, target=target,
                                                       headers=hdrs)) or b"")
        if body:
            await self.send_raw(self.conn.send(h11.Data(data=body)) or b"")
        await self.send_raw(self.conn.send(h11.EndOfMessage()) or b"")

    async def _event(self) -> object:
        while True:
            ev = self.conn.next_event()
            if ev is h11.NEED_DATA:
                try:
                    data = await self.stream.receive()
                except anyio.EndOfStream:
                    data = b""
                self.conn.receive_data(data)
                continue
            return ev

    async def response_head(self) -> h11.Response:
        ev = await self._event()
        assert isinstance(ev, h11.Response), ev
        return ev

    async def next_chunk(self) -> bytes | None:
        """Next body Data (None at end of message)."""
        ev = await self._event()
        if isinstance(ev, h11.EndOfMessage):
            return None
        assert isinstance(ev, h11.Data), ev
        return bytes(ev.data)

    async def reply(self) -> Reply:
        head = await self.response_head()
        body = b""
        while (chunk := await self.next_chunk()) is not None:
            body += chunk
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return Reply(head.status_code, head.reason, list(head.headers), body)


@asynccontextmanager
async def connect(path: Path) -> AsyncIterator[RawClient]:
    stream = await anyio.connect_unix(path)
    async with stream:
        yield RawClient(stream)


async def fetch(path: Path, method: str, target: str, headers: list[tuple[str, str]] | None = None,
                body: bytes = b"") -> Reply:
    """One request on a fresh connection."""
    async with connect(path) as c:
        await c.request(method, target, headers, body)
        return await c.reply()


async def read_until_eof(stream: anyio.abc.ByteStream) -> bytes:
    out = b""
    while True:
        try:
            out += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return out
