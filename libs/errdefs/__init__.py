"""berth's one error taxonomy, carried unchanged across gRPC and HTTP hops.

Domain code raises these with Docker's wording and never picks a status itself::

    EngineError
    ├── InvalidArgument      INVALID_ARGUMENT     400
    ├── NotFound             NOT_FOUND            404
    ├── AlreadyExists        ALREADY_EXISTS       409
    ├── Conflict             FAILED_PRECONDITION  409
    ├── NotModified          FAILED_PRECONDITION  304
    ├── Unauthenticated      UNAUTHENTICATED      401
    ├── PermissionDenied     PERMISSION_DENIED    403
    ├── Unavailable          UNAVAILABLE          503
    ├── NotImplemented_      UNIMPLEMENTED        501
    ├── Canceled             CANCELLED            499
    ├── DeadlineExceeded     DEADLINE_EXCEEDED    500
    ├── Internal             INTERNAL             500
    └── Unknown              UNKNOWN              500

Conflict and NotModified share a gRPC code, so the kind itself travels in the
``berth-error-kind`` trailing metadata (see grpckit) and is restored on the far side.
"""

from __future__ import annotations

from typing import ClassVar

import grpc

__all__ = [
    "AlreadyExists",
    "Canceled",
    "Conflict",
    "DeadlineExceeded",
    "EngineError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "NotImplemented_",
    "NotModified",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
    "Unknown",
    "by_kind",
    "from_grpc_code",
]


class EngineError(Exception):
    """Base of every error berth reports to a client; ``message`` is shown verbatim."""

    kind: ClassVar[str] = "Unknown"
    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(EngineError):
    """Raised when a request is malformed or names an unsupported option."""

    kind = "InvalidArgument"
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class NotFound(EngineError):
    """Raised when the named object does not exist ("No such image: x")."""

    kind = "NotFound"
    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class AlreadyExists(EngineError):
    """Raised when a name or id is already taken."""

    kind = "AlreadyExists"
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409


class Conflict(EngineError):
    """Raised when the object's state forbids the operation (image in use, ...)."""

    kind = "Conflict"
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409


class NotModified(EngineError):
    """Raised when the operation is a no-op (start a running container): HTTP 304."""

    kind = "NotModified"
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 304


class Unauthenticated(EngineError):
    """Raised when credentials are missing or rejected."""

    kind = "Unauthenticated"
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class PermissionDenied(EngineError):
    """Raised when the caller may not do this."""

    kind = "PermissionDenied"
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class Unavailable(EngineError):
    """Raised when a peer service cannot be reached."""

    kind = "Unavailable"
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class NotImplemented_(EngineError):
    """Raised for endpoints berth does not provide (swarm, plugins)."""

    kind = "NotImplemented"
    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501


class Canceled(EngineError):
    """Raised when the client went away."""

    kind = "Canceled"
    grpc_code = grpc.StatusCode.CANCELLED
    http_status = 499


class DeadlineExceeded(EngineError):
    """Raised when an operation ran out of time."""

    kind = "DeadlineExceeded"
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 500


class Internal(EngineError):
    """Raised for bugs and unexpected failures; details go to the log."""

    kind = "Internal"
    grpc_code = grpc.StatusCode.INTERNAL
    http_status = 500


class Unknown(EngineError):
    """Raised when a peer reported an error of no known kind."""

    kind = "Unknown"
    grpc_code = grpc.StatusCode.UNKNOWN
    http_status = 500


_BY_KIND: dict[str, type[EngineError]] = {
    cls.kind: cls
    for cls in (
        InvalidArgument, NotFound, AlreadyExists, Conflict, NotModified, Unauthenticated,
        PermissionDenied, Unavailable, NotImplemented_, Canceled, DeadlineExceeded, Internal,
        Unknown,
    )
}

# For peers that send a bare code without the kind metadata; FAILED_PRECONDITION means
# Conflict here (moby maps it to 400, which loses the meaning).
_BY_CODE: dict[grpc.StatusCode, type[EngineError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: NotImplemented_,
    grpc.StatusCode.CANCELLED: Canceled,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
}


def by_kind(kind: str) -> type[EngineError]:
    """Return the class for a kind name; unknown names give ``Unknown``."""
    return _BY_KIND.get(kind, Unknown)


def from_grpc_code(code: grpc.StatusCode) -> type[EngineError]:
    """Return the class a bare gRPC code stands for."""
    return _BY_CODE.get(code, Unknown)
