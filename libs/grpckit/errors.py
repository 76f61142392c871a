"""Mapping between errdefs exceptions and gRPC statuses, both directions, in one place.

The server side turns an exception into ``(code, details, trailing metadata)`` with the kind in
``berth-error-kind``; the client side turns a failed call back into the same errdefs class, so
``NotModified`` and ``Conflict`` (both FAILED_PRECONDITION) survive every hop.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar, cast

import grpc

import errdefs
from grpckit import metadata

__all__ = [
    "Metadata",
    "from_rpc_error",
    "rpc_errors",
    "to_status",
    "translate_errors",
    "unary",
    "unwrap_exception",
    "wrap_stream",
]

Metadata = tuple[tuple[str, str], ...]
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def unwrap_exception(exc: BaseException) -> BaseException:
    """Return the single leaf of (nested) exception groups of one exception, else ``exc``.

    Task groups wrap a service's ``NotFound`` in an ExceptionGroup; the kind must still show.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str, Metadata]:
    """Return the gRPC status an exception is reported as.

    Args:
        exc: Any exception a handler raised.

    Returns:
        ``(code, details, trailing_metadata)``. An ``EngineError`` keeps its code and message
        and its kind goes into ``berth-error-kind``; anything else is Internal with a generic
        text (the caller logs the traceback).
    """
    exc = unwrap_exception(exc)
    if isinstance(exc, errdefs.EngineError):
        return exc.grpc_code, exc.message, ((metadata.ERROR_KIND, exc.kind),)
    return (
        grpc.StatusCode.INTERNAL,
        f"internal error: {type(exc).__name__}: {exc}",
        ((metadata.ERROR_KIND, errdefs.Internal.kind),),
    )


def _trailing_kind(err: grpc.RpcError) -> str | None:
    getter = getattr(err, "trailing_metadata", None)
    if getter is None:
        return None
    try:
        trailing = getter()
    except Exception:  # a half-built error object must not mask the original
        return None
    for key, value in trailing or ():
        if key == metadata.ERROR_KIND:
            return value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")
    return None


def from_rpc_error(err: grpc.RpcError) -> errdefs.EngineError:
    """Return the errdefs exception a failed call stands for.

    The ``berth-error-kind`` trailing metadata decides when present; otherwise the bare code
    does (``errdefs.from_grpc_code``). A call that never reached a server (connection refused,
    socket missing) is ``Unavailable``.
    """
    code: grpc.StatusCode = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details: str = (err.details() if hasattr(err, "details") else None) or ""
    kind = _trailing_kind(err)
    if kind is not None:
        return errdefs.by_kind(kind)(details)
    if code is grpc.StatusCode.UNAVAILABLE:
        return errdefs.Unavailable(f"service unavailable: {details}" if details else
                                   "service unavailable")
    return errdefs.from_grpc_code(code)(details or code.name)


@contextlib.contextmanager
def rpc_errors() -> Iterator[None]:
    """Context manager: a ``grpc.RpcError`` raised inside leaves as its errdefs exception."""
    try:
        yield
    except grpc.RpcError as err:
        raise from_rpc_error(err) from err


async def unary(call: Awaitable[T]) -> T:
    """Await a unary call (or any awaitable RPC) so that it fails only with errdefs errors."""
    with rpc_errors():
        return await call


async def wrap_stream(call: AsyncIterable[T]) -> AsyncIterator[T]:
    """Iterate a streaming call so that it fails only with errdefs errors.

    Resource handling:
        Closing this generator early (``aclose``, break out of ``aclosing``) cancels the call.
    """
    try:
        with rpc_errors():
            async for item in call:
                yield item
    finally:
        cancel = getattr(call, "cancel", None)
        if cancel is not None:
            cancel()  # no-op when the call already finished


def translate_errors(fn: F) -> F:
    """Decorate an async client method or async generator so it raises only errdefs errors."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def gen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async for item in wrap_stream(fn(*args, **kwargs)):
                yield item

        return cast(F, gen_wrapper)

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with rpc_errors():
            return await fn(*args, **kwargs)

    return cast(F, wrapper)
