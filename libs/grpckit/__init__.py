"""grpckit: berth's grpc.aio plumbing: servers, channels, error mapping, metadata keys."""

from __future__ import annotations

from grpckit import metadata
from grpckit.client import normalize_address, open_channel, stub
from grpckit.errors import (
    from_rpc_error,
    rpc_errors,
    to_status,
    translate_errors,
    unary,
    unwrap_exception,
    wrap_stream,
)
from grpckit.server import (
    MAX_MESSAGE_BYTES,
    ErrorInterceptor,
    bound_port,
    build_server,
    serve_grpc,
    set_serving,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ErrorInterceptor",
    "bound_port",
    "build_server",
    "from_rpc_error",
    "metadata",
    "normalize_address",
    "open_channel",
    "rpc_errors",
    "serve_grpc",
    "set_serving",
    "stub",
    "to_status",
    "translate_errors",
    "unary",
    "unwrap_exception",
    "wrap_stream",
]
