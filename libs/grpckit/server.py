"""grpc.aio server bootstrap: error interceptor, health, reflection, unix/TCP listeners.

Servicers never map errors: they raise errdefs exceptions (or anything else, which is a bug)
and the interceptor here turns them into a status plus ``berth-error-kind`` trailing metadata,
for unary and streaming handlers alike.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import socket
import stat
import tempfile
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import grpc
from anyio.abc import TaskStatus
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import errdefs
from grpckit.errors import to_status, unwrap_exception

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ErrorInterceptor",
    "bound_port",
    "build_server",
    "serve_grpc",
    "set_serving",
]

log = logging.getLogger("grpckit.server")

#: Largest message either side sends or accepts (64 MiB); bulk data goes in chunked streams.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

SOCKET_MODE = 0o660

# (add_XServicer_to_server, servicer) as grpc_tools generates them.
ServicerPair = tuple[Callable[[Any, grpc.aio.Server], None], Any]


async def _report(context: grpc.aio.ServicerContext, method: str, exc: BaseException) -> None:
    """Abort the call with the status ``exc`` maps to; raises ``grpc.aio.AbortError``."""
    leaf = unwrap_exception(exc)
    code, details, trailing = to_status(leaf)
    if isinstance(leaf, errdefs.EngineError):
        log.debug("%s failed: %s: %s", method, leaf.kind, leaf.message)
    else:
        log.error("unhandled error in %s", method, exc_info=exc)
    await context.abort(code, details, trailing)


def _passthrough(exc: BaseException) -> bool:
    # AbortError: the handler (or we) already set the status. Cancellation: the client went.
    return isinstance(exc, grpc.aio.AbortError | anyio.get_cancelled_exc_class())


def _wrap_unary_response(
    behavior: Callable[..., Awaitable[Any]], method: str
) -> Callable[..., Any]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except BaseException as exc:
            if _passthrough(exc) or not isinstance(exc, Exception | BaseExceptionGroup):
                raise
            await _report(context, method, exc)
            raise  # unreachable: abort raised

    return wrapped


def _wrap_stream_response(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def gen(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async with contextlib.aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        yield response
            except BaseException as exc:
                if _passthrough(exc) or not isinstance(exc, Exception | BaseExceptionGroup):
                    raise
                await _report(context, method, exc)

        return gen
    # A coroutine that writes with context.write() and returns None.
    return _wrap_unary_response(behavior, method)


def _is_async(behavior: Any) -> bool:
    return inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Turns exceptions escaping async handlers into statuses with ``berth-error-kind``.

    ``EngineError`` keeps its code and message; any other exception becomes INTERNAL and is
    logged with its traceback. Sync handlers (none of berth's) are left alone.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None and _is_async(handler.unary_unary):
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary_response(handler.unary_unary, method), **kw)
        if handler.stream_unary is not None and _is_async(handler.stream_unary):
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary_response(handler.stream_unary, method), **kw)
        if handler.unary_stream is not None and _is_async(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream_response(handler.unary_stream, method), **kw)
        if handler.stream_stream is not None and _is_async(handler.stream_stream):
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream_response(handler.stream_stream, method), **kw)
        return handler


@dataclass
class _ServerState:
    health: Any  # grpc_health.v1.health.aio.HealthServicer
    service_names: list[str]
    port: int
    socket_path: str | None = None
    socket_ino: int | None = None


_STATES: weakref.WeakKeyDictionary[grpc.aio.Server, _ServerState] = weakref.WeakKeyDictionary()


def _unix_path(address: str) -> str | None:
    if address.startswith("unix://"):
        return address[len("unix://"):]
    if address.startswith("unix:"):
        return address[len("unix:"):]
    return None


def _socket_in_use(path: str) -> bool:
    """Whether something still accepts connections on the unix socket at ``path``."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
    except FileNotFoundError:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def _bind_unix(server: grpc.aio.Server, path: str, tls: grpc.ServerCredentials | None) -> int:
    """Bind ``path`` so that the socket never exists there with a mode other than 0660.

    gRPC binds inside its core with the umask's mode, so bind in a private 0700 directory
    beside the target, chmod, then rename into place (the rename also replaces a stale socket).
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    if _socket_in_use(path):
        raise errdefs.AlreadyExists(f"another server is listening on unix://{path}")
    if os.path.lexists(path) and not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise errdefs.InvalidArgument(f"{path} exists and is not a socket")
    private = tempfile.mkdtemp(prefix=".bind-", dir=parent)  # 0700
    staging = os.path.join(private, "s.sock")
    try:
        address = "unix://" + staging
        port = (server.add_secure_port(address, tls) if tls is not None
                else server.add_insecure_port(address))
        os.chmod(staging, SOCKET_MODE)
        os.replace(staging, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(staging)
        os.rmdir(private)
    return int(port)


def build_server(
    servicers: Iterable[ServicerPair],
    address: str,
    service_names: Sequence[str],
    tls: grpc.ServerCredentials | None = None,
) -> grpc.aio.Server:
    """Build a grpc.aio server with berth's error interceptor, health and reflection, bound.

    Args:
        servicers: ``(add_XServicer_to_server, servicer)`` pairs.
        address: ``unix:///path/x.sock`` (parent dir created, socket mode 0660) or a TCP
            address ``host:port`` / ``tcp://host:port`` (port 0 picks one, see ``bound_port``).
        service_names: Full proto service names served (``berthapi.images.v1.Images``); each
            reports SERVING in gRPC health once started, and is listed by reflection.
        tls: Server credentials (mutual TLS between hosts); None for plaintext.

    Returns:
        The server, not started yet: run it with ``serve_grpc``.

    Raises:
        errdefs.AlreadyExists: a live server already listens on the unix socket.
        errdefs.InvalidArgument: the socket path is taken by a non-socket file.
        RuntimeError: gRPC could not bind the address.
    """
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor()],
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),  # a second server on the same TCP port must fail
        ],
    )
    for add_fn, servicer in servicers:
        add_fn(servicer, server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)

    path = _unix_path(address)
    if path is not None:
        port = _bind_unix(server, path, tls)
        state = _ServerState(health_servicer, names, port, os.path.abspath(path),
                             os.stat(path).st_ino)
    else:
        target = address[len("tcp://"):] if address.startswith("tcp://") else address
        port = (server.add_secure_port(target, tls) if tls is not None
                else server.add_insecure_port(target))
        state = _ServerState(health_servicer, names, int(port))
    _STATES[server] = state
    return server


def bound_port(server: grpc.aio.Server) -> int:
    """Return the TCP port the server was bound to (useful after asking for port 0)."""
    return _STATES[server].port


async def set_serving(server: grpc.aio.Server, service_name: str, serving: bool) -> None:
    """Set one service's gRPC health status ("" is the whole server)."""
    status = (health_pb2.HealthCheckResponse.SERVING if serving
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    await _STATES[server].health.set(service_name, status)


async def serve_grpc(
    server: grpc.aio.Server,
    *,
    grace: float = 5.0,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Start ``server``, report readiness, and serve until cancelled.

    Use as ``await tg.start(serve_grpc, server)``: it returns once the server accepts calls
    and every service reports SERVING.

    Resource handling:
        On cancellation, health flips to NOT_SERVING, in-flight calls get ``grace`` seconds,
        then the server stops and its unix socket file is removed.
    """
    state = _STATES[server]
    await server.start()
    try:
        for name in ["", *state.service_names]:
            await set_serving(server, name, True)
        task_status.started()
        # NOTE: not server.wait_for_termination(): cancelling it cancels the future that
        # server.stop() awaits too, and stop() would then fail with CancelledError.
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await state.health.enter_graceful_shutdown()
            await server.stop(grace)
            _remove_socket(state)


def _remove_socket(state: _ServerState) -> None:
    # Only our own socket: a successor may already have replaced it.
    if state.socket_path is None:
        return
    with contextlib.suppress(OSError):
        if os.lstat(state.socket_path).st_ino == state.socket_ino:
            os.unlink(state.socket_path)
