"""RFC 6455 WebSocket over a hijacked connection: the handshake answer and framing (attach/ws)."""

from __future__ import annotations

import base64
import hashlib
import logging
import struct

import errdefs
from gateway_svc.http import HijackedStream, Request

__all__ = ["MAX_PAYLOAD", "WebSocketStream", "accept_key", "encode_frame", "handshake_headers"]

log = logging.getLogger("berth.gateway.websocket")

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_PAYLOAD = 16 << 20  # a client frame larger than this closes the connection (1009)

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()  # RFC 6455 fixes SHA-1


def handshake_headers(req: Request) -> list[tuple[str, str]]:
    """The 101 answer's headers for a WebSocket upgrade request.

    Raises:
        errdefs.InvalidArgument: not a version-13 WebSocket upgrade (x/net/websocket's 400).
    """
    upgrade = (req.headers.get("upgrade") or "").lower()
    key = req.headers.get("sec-websocket-key") or ""
    if upgrade != "websocket" or not key:
        raise errdefs.InvalidArgument("Bad Request: not a websocket handshake")
    if (req.headers.get("sec-websocket-version") or "").strip() != "13":
        raise errdefs.InvalidArgument("Bad Request: unsupported websocket version")
    return [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_key(key))]


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class WebSocketStream(HijackedStream):
    """A HijackedStream whose bytes travel in WebSocket frames.

    ``receive`` returns the payloads of data frames (answering pings, ending at a close frame);
    ``send`` wraps each write in one frame, binary (API 1.28+) or text, as dockerd does.
    """

    def __init__(self, inner: HijackedStream, binary: bool = True) -> None:
        super().__init__(inner.raw)
        self._inner = inner
        self._opcode = OP_BINARY if binary else OP_TEXT
        self._buf = b""
        self._ended = False

    async def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            data = await self._inner.receive()
            if not data:
                return False
            self._buf += data
        return True

    async def _take(self, n: int) -> bytes | None:
        if not await self._fill(n):
            return None
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    async def _read_frame(self) -> tuple[int, bytes] | None:
        head = await self._take(2)
        if head is None:
            return None
        opcode, length, masked = head[0] & 0x0F, head[1] & 0x7F, bool(head[1] & 0x80)
        if length == 126:
            ext = await self._take(2)
            length = struct.unpack("!H", ext)[0] if ext else -1
        elif length == 127:
            ext = await self._take(8)
            length = struct.unpack("!Q", ext)[0] if ext else -1
        if length < 0:
            return None
        if length > MAX_PAYLOAD:
            await self._close(1009)
            return None
        mask = await self._take(4) if masked else b""
        payload = await self._take(length)
        if payload is None or mask is None:
            return None
        if mask:
            payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        return opcode, payload

    async def _close(self, code: int = 1000) -> None:
        if not self._ended:
            self._ended = True
            try:
                await self._inner.send(encode_frame(OP_CLOSE, struct.pack("!H", code)))
            except errdefs.Canceled:
                pass

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """The next data payload from the client; ``b""`` after a close frame or EOF."""
        while True:
            frame = None if self._ended else await self._read_frame()
            if frame is None:
                self._ended = True
                return b""
            opcode, payload = frame
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1000
                await self._close(code)
                return b""
            if opcode == OP_PING:
                await self._inner.send(encode_frame(OP_PONG, payload))
                continue
            if opcode in (OP_TEXT, OP_BINARY, OP_CONT) and payload:
                return payload

    async def send(self, data: bytes) -> None:
        """Send ``data`` as one data frame.

        Raises:
            errdefs.Canceled: the client is gone.
        """
        if data:
            await self._inner.send(encode_frame(self._opcode, data))

    async def send_eof(self) -> None:
        """End of output: a normal close frame (WebSocket has no half-close)."""
        await self._close(1000)

    async def aclose(self) -> None:
        await self._close(1000)
        await self._inner.aclose()
