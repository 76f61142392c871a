"""Client side of berth's gRPC: channels to unix or TCP addresses, and errdefs-only calls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc

from grpckit.errors import from_rpc_error, rpc_errors, translate_errors, unary, wrap_stream
from grpckit.server import MAX_MESSAGE_BYTES

__all__ = [
    "from_rpc_error",
    "normalize_address",
    "open_channel",
    "rpc_errors",
    "stub",
    "translate_errors",
    "unary",
    "wrap_stream",
]


def normalize_address(address: str) -> str:
    """Return the gRPC target for a berth address.

    ``unix:///p`` and ``unix:/p`` pass through, a bare absolute path becomes ``unix:///p``,
    ``tcp://host:port`` becomes ``host:port``; anything else is taken as a gRPC target.
    """
    if address.startswith("unix:"):
        return address
    if address.startswith("/"):
        return "unix://" + address
    if address.startswith("tcp://"):
        return address[len("tcp://"):]
    return address


def open_channel(
    address: str,
    *,
    tls: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """Open a channel to a berth service.

    Args:
        address: ``unix:///run/berth/berthd.sock``, a socket path, or ``[tcp://]host:port``.
        tls: Channel credentials for TCP with (mutual) TLS; None for plaintext.
        options: Extra channel options, applied after berth's defaults.

    Returns:
        A grpc.aio channel allowing 64 MiB messages each way. It connects lazily: an
        unreachable address shows as ``errdefs.Unavailable`` on the first wrapped call.

    Resource handling:
        The caller closes it with ``await channel.close()`` (or ``async with``).
    """
    target = normalize_address(address)
    opts: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        *options,
    ]
    if tls is not None:
        return grpc.aio.secure_channel(target, tls, options=opts)
    return grpc.aio.insecure_channel(target, options=opts)


def stub(factory: Callable[[grpc.aio.Channel], Any], channel: grpc.aio.Channel) -> Any:
    """Build a generated stub (``images_pb2_grpc.ImagesStub``) on ``channel``.

    The generated ``*_pb2_grpc.py`` carry no type hints; going through here keeps
    ``mypy --strict`` quiet about the untyped call in one place.
    """
    return factory(channel)
