"""Published ports: parse "80/tcp" keys and host-port ranges, reserve host ports by binding them.

A reservation is a bound (never listening) socket held for as long as the port is published, so
neither another container nor another program can take the port meanwhile; the traffic itself
is DNATed to the container by nftables before it could reach the socket.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

import errdefs

__all__ = ["Reservation", "parse_host_range", "parse_port_key", "reserve"]

_KINDS = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


def parse_port_key(key: str) -> tuple[int, str]:
    """ "80/tcp" -> (80, "tcp"); "53" -> (53, "tcp").

    Raises:
        errdefs.InvalidArgument: malformed key or protocol.
    """
    num, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise errdefs.InvalidArgument(f"invalid proto: {proto}")
    if not num.isdigit() or not 0 < int(num) < 65536:
        raise errdefs.InvalidArgument(f"invalid containerPort: {num}")
    return int(num), proto


def parse_host_range(value: str) -> tuple[int, int]:
    """ "" -> (0, 0) (ephemeral); "8080" -> (8080, 8080); "8000-8010" -> (8000, 8010)."""
    if not value:
        return 0, 0
    lo, sep, hi = value.partition("-")
    try:
        a, b = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid hostPort: {value}") from None
    if not (0 <= a <= b < 65536):
        raise errdefs.InvalidArgument(f"invalid hostPort: {value}")
    return a, b


@dataclass(slots=True)
class Reservation:
    """A host port held by a bound socket."""

    proto: str
    host_ip: str
    port: int
    sock: socket.socket | None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _bind(proto: str, host_ip: str, port: int) -> socket.socket:
    kind = _KINDS.get(proto, socket.SOCK_STREAM)
    s = socket.socket(socket.AF_INET, kind)
    try:
        # No SO_REUSEADDR: Linux lets several non-listening sockets share a port with it.
        s.bind((host_ip or "0.0.0.0", port))
    except BaseException:
        s.close()
        raise
    return s


def reserve(proto: str, host_ip: str, lo: int, hi: int) -> Reservation:
    """Hold a port of ``lo..hi`` (0 = any ephemeral port) on ``host_ip``. Blocking-free.

    Raises:
        errdefs.Internal: Docker's "Bind for <ip>:<port> failed: port is already allocated".
    """
    shown = host_ip or "0.0.0.0"
    if proto == "sctp":
        if lo == 0:
            raise errdefs.InvalidArgument("sctp ports need an explicit host port")
        return Reservation(proto, host_ip, lo, None)
    last: OSError | None = None
    for port in [0] if lo == 0 else range(lo, hi + 1):
        try:
            s = _bind(proto, host_ip, port)
        except OSError as e:
            last = e
            continue
        return Reservation(proto, host_ip, s.getsockname()[1], s)
    if last is not None and last.errno not in (errno.EADDRINUSE, errno.EACCES):
        raise errdefs.InvalidArgument(f"Bind for {shown}:{lo} failed: {last.strerror}")
    return_port = lo if lo == hi else f"{lo}-{hi}"
    raise errdefs.Internal(f"Bind for {shown}:{return_port} failed: port is already allocated")
