"""The gRPC metadata keys berth uses; the only place they are defined."""

from __future__ import annotations

from typing import Final

__all__ = ["API_VERSION", "ERROR_KIND", "NODE_ID", "REQUEST_ID"]

#: Trailing metadata: the errdefs kind of a failed call ("NotModified", "Conflict", ...).
ERROR_KIND: Final = "berth-error-kind"
#: Request metadata: an id that follows one client request across every hop, for logs.
REQUEST_ID: Final = "berth-request-id"
#: Request metadata: the Docker Engine API version the gateway negotiated ("1.50").
API_VERSION: Final = "berth-api-version"
#: Request/response metadata: the node a call is meant for or was answered by.
NODE_ID: Final = "berth-node-id"
