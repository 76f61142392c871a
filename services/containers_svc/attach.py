"""Attach plumbing over conmon's attach socket: detach-key matching, stdin pump, frame reading."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import anyio

import errdefs

__all__ = ["DetachMatcher", "parse_detach_keys", "pump_stdin", "recv_packet"]

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
PACKET = 8192  # conmon's STDIO_BUF_SIZE: stdin packets no larger than this
_CTRL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(keys: str) -> bytes:
    """Bytes of a Docker detach sequence ("ctrl-p,ctrl-q", "a,ctrl-x").

    Raises:
        errdefs.InvalidArgument: ``Invalid detach keys (x) provided``.
    """
    out = bytearray()
    for part in (keys or DEFAULT_DETACH_KEYS).split(","):
        if part.startswith("ctrl-") and len(part) == 6:
            ch = part[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in _CTRL:
                out.append(_CTRL[ch])
            else:
                raise errdefs.InvalidArgument(f"Invalid detach keys ({keys}) provided")
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise errdefs.InvalidArgument(f"Invalid detach keys ({keys}) provided")
    return bytes(out)


class DetachMatcher:
    """Finds the detach sequence in a byte stream split anywhere; holds back a partial match."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = b""

    def feed(self, chunk: bytes) -> tuple[bytes, bool]:
        """Bytes to forward now, and whether the sequence was completed (forward nothing after)."""
        out = bytearray()
        held = self._held
        for b in chunk:
            cand = held + bytes([b])
            if self.keys.startswith(cand):
                held = cand
                if held == self.keys:
                    self._held = b""
                    return bytes(out), True
                continue
            # mismatch: release the held bytes, then retry this byte as a new start
            out += held
            held = b""
            if self.keys[:1] == bytes([b]):
                held = bytes([b])
                if held == self.keys:
                    self._held = b""
                    return bytes(out), True
            else:
                out.append(b)
        self._held = held
        return bytes(out), False

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held


async def send_all(sock: socket.socket, data: bytes) -> None:
    """Send ``data`` as packets of at most PACKET bytes (non-blocking socket)."""
    for i in range(0, len(data), PACKET):
        part = data[i : i + PACKET]
        while True:
            try:
                sock.send(part)
                break
            except BlockingIOError:
                await anyio.wait_writable(sock)


async def recv_packet(sock: socket.socket) -> bytes:
    """One packet from conmon ("" at EOF); first byte names the stream (2 stdout, 3 stderr)."""
    while True:
        try:
            return sock.recv(PACKET + 1)
        except BlockingIOError:
            await anyio.wait_readable(sock)
        except OSError:
            return b""


async def pump_stdin(
    sock: socket.socket, stdin: AsyncIterator[bytes], close_on_eof: bool, keys: bytes,
    detached: anyio.Event,
) -> None:
    """Forward ``stdin`` to the container until it ends or carries the detach keys.

    On the detach keys the read side is shut down so the output reader ends (detach); at the
    end of stdin the write side is shut down when ``close_on_eof`` (StdinOnce), which makes
    conmon close the container's stdin.
    """
    matcher = DetachMatcher(keys)
    try:
        async for chunk in stdin:
            data, hit = matcher.feed(chunk)
            if data:
                await send_all(sock, data)
            if hit:
                detached.set()
                sock.shutdown(socket.SHUT_RD)
                return
        rest = matcher.flush()
        if rest:
            await send_all(sock, rest)
        if close_on_eof:
            sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
