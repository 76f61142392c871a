"""Raw attach/exec/logs streams: Docker's 8-byte multiplexed frames, detach keys, stdin pumping."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

from anyio.streams.memory import MemoryObjectSendStream

import errdefs
from gateway_svc.http import HijackedStream

__all__ = [
    "DEFAULT_DETACH_KEYS",
    "MULTIPLEXED",
    "RAW_STREAM",
    "STDERR",
    "STDIN",
    "STDOUT",
    "SYSTEMERR",
    "DetachScanner",
    "FrameDecoder",
    "encode_frame",
    "parse_detach_keys",
    "pump_stdin",
]

STDIN: Final = 0
STDOUT: Final = 1
STDERR: Final = 2
SYSTEMERR: Final = 3

RAW_STREAM: Final = "application/vnd.docker.raw-stream"
MULTIPLEXED: Final = "application/vnd.docker.multiplexed-stream"

#: ``ctrl-p,ctrl-q``, what moby uses when neither the request nor the config names keys.
DEFAULT_DETACH_KEYS: Final = b"\x10\x11"

_HEADER = struct.Struct(">BxxxI")
_MAX_PAYLOAD: Final = 0xFFFFFFFF
# ctrl-@ .. ctrl-_ (moby term.ToBytes): letters map to 1..26, the punctuation to 0 and 27..31.
_CTRL_PUNCT: Final = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def encode_frame(stream: int, data: bytes) -> bytes:
    """Frame ``data`` for ``stream`` (0 stdin, 1 stdout, 2 stderr, 3 systemerr).

    Returns ``b""`` for empty data: an empty frame means nothing to clients.
    """
    out = bytearray()
    view = memoryview(data)
    for start in range(0, len(view), _MAX_PAYLOAD):
        part = view[start : start + _MAX_PAYLOAD]
        out += _HEADER.pack(stream, len(part))
        out += part
    return bytes(out)


class FrameDecoder:
    """Incremental decoder of a multiplexed stream (the inverse of :func:`encode_frame`)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """Add ``data`` and yield every ``(stream, payload)`` now complete."""
        self._buf += data
        while len(self._buf) >= _HEADER.size:
            stream, size = _HEADER.unpack_from(self._buf)
            end = _HEADER.size + size
            if len(self._buf) < end:
                return
            payload = bytes(self._buf[_HEADER.size : end])
            del self._buf[:end]
            yield stream, payload

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a whole frame."""
        return len(self._buf)


def parse_detach_keys(spec: str) -> bytes:
    """Turn ``ctrl-p,ctrl-q`` / ``a,ctrl-x`` into the byte sequence to watch for.

    ``""`` gives :data:`DEFAULT_DETACH_KEYS`.

    Raises:
        errdefs.InvalidArgument: ``Invalid detach keys (<spec>) provided`` (moby's text).
    """
    if spec == "":
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        if len(key) == 1 and key.isascii():
            out.append(ord(key))
            continue
        if len(key) == 6 and key[:5].lower() == "ctrl-":
            ch = key[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
                continue
            if ch in _CTRL_PUNCT:
                out.append(_CTRL_PUNCT[ch])
                continue
        raise errdefs.InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class DetachScanner:
    """Find the detach sequence in client input, however the bytes are chunked.

    Bytes that might begin the sequence are held back until the next chunk tells; a
    mismatch releases them in order, so input is never lost or reordered.
    """

    def __init__(self, keys: bytes) -> None:
        self._keys = keys
        self._pos = 0  # how many bytes of ``keys`` matched so far (held back)

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Return ``(bytes to forward, detached)``; after a detach the rest is dropped."""
        if not self._keys:
            return data, False
        out = bytearray()
        todo = bytearray(data)
        i = 0
        while i < len(todo):
            b = todo[i]
            i += 1
            if b == self._keys[self._pos]:
                self._pos += 1
                if self._pos == len(self._keys):
                    self._pos = 0
                    return bytes(out), True
            elif self._pos:
                # Release the first held byte and rescan the rest: the sequence may
                # start inside what was held ("aab" in "aaab").
                held = self._keys[: self._pos]
                self._pos = 0
                out.append(held[0])
                todo[i - 1 : i - 1] = held[1:]
                i -= 1
            else:
                out.append(b)
        return bytes(out), False

    def flush(self) -> bytes:
        """Release bytes held back (at end of input)."""
        held, self._pos = self._keys[: self._pos], 0
        return held


async def pump_stdin(
    conn: HijackedStream, sink: MemoryObjectSendStream[bytes], detach_keys: bytes | None
) -> bool:
    """Copy client bytes into ``sink`` until the client half-closes or types the detach keys.

    Args:
        conn: the hijacked connection.
        sink: the container's stdin.
        detach_keys: the sequence that detaches (TTY sessions), or None to copy verbatim.

    Returns:
        True when the detach keys were seen, False at client EOF.

    Resource handling:
        At client EOF ``sink`` is closed, which ends the stdin iterator (the backend closes
        the container's stdin). After a detach it is left open: the caller detaches from
        the backend first, so the detach does not look like end of input.
    """
    scanner = DetachScanner(detach_keys) if detach_keys else None
    async for chunk in conn:
        if scanner is not None:
            chunk, detached = scanner.feed(chunk)
            if chunk:
                await sink.send(chunk)
            if detached:
                return True
        else:
            await sink.send(chunk)
    if scanner is not None and (rest := scanner.flush()):
        await sink.send(rest)
    await sink.aclose()
    return False
