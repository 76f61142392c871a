"""Blocking file objects over other streams: async chunk iterators and peeked-at inputs."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

import anyio.from_thread

__all__ = ["ChunkReader", "PeekedReader"]


class ChunkReader(io.RawIOBase):
    """A blocking file over an async chunk iterator, read from one worker thread.

    Each hop to the event loop gathers up to ``batch`` bytes: a hop costs a GIL hand-over (up to
    the 5 ms switch interval on a busy loop), so small HTTP chunks do not cost one round trip
    each. Reads are served from a memoryview, without copying the rest of the buffer.
    """

    def __init__(self, chunks: AsyncIterator[bytes], batch: int = 1 << 20) -> None:
        self._it = chunks
        self._batch = batch
        self._buf = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    async def _next(self) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while size < self._batch:
            try:
                chunk = await anext(self._it)
            except StopAsyncIteration:
                break
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts) if parts else None

    def readinto(self, b: Any) -> int:
        while not self._buf and not self._eof:
            chunk = anyio.from_thread.run(self._next)
            if chunk is None:
                self._eof = True
            else:
                self._buf = memoryview(chunk)
        view = memoryview(b).cast("B")
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class PeekedReader(io.RawIOBase):
    """Gives back the bytes already read (for sniffing a format), then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)
