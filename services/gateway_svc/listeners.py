"""API listeners of the gateway: ``unix://`` sockets (0660 root:docker) and ``tcp://`` with TLS.

Usage::

    listeners = await open_listeners(["unix:///run/berth/berth.sock"], tls=None)
    async with anyio.create_task_group() as tg:
        await tg.start(serve, listeners, HttpServer(router, server_version="0.1.0"))

A unix socket is bound inside a private 0700 directory, chmodded and chowned there and
renamed into place before ``listen(2)``: the path never exists with another mode
(SECURITY-NOTES A8). Plain TCP is refused unless ``allow_insecure_tcp`` is set.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import socket
import ssl
import stat
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSListener

import errdefs

__all__ = ["DEFAULT_SOCKET_GROUP", "TlsConfig", "UnixListener", "open_listeners", "serve"]

log = logging.getLogger("berth.gateway.listeners")

DEFAULT_SOCKET_GROUP = "docker"
_BACKLOG = 4096
_SOCKET_MODE = 0o660

ConnectionHandler = Callable[[anyio.abc.ByteStream], Awaitable[None]]


@dataclass(frozen=True)
class TlsConfig:
    """TLS settings of ``tcp://`` listeners (dockerd's ``--tls*`` flags).

    Attributes:
        cert: server certificate (``--tlscert``), PEM.
        key: server private key (``--tlskey``), PEM.
        ca: CA bundle that client certificates must chain to (``--tlscacert``).
        verify: require and verify client certificates (``--tlsverify``).
    """

    cert: str
    key: str
    ca: str | None = None
    verify: bool = False

    def server_context(self) -> ssl.SSLContext:
        """Build the server SSLContext (TLS 1.2+; client certs required when ``verify``).

        Raises:
            errdefs.InvalidArgument: ``verify`` without ``ca``, or unreadable files.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert, self.key)
            if self.verify:
                if not self.ca:
                    raise errdefs.InvalidArgument("--tlsverify needs --tlscacert")
                ctx.load_verify_locations(cafile=self.ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise errdefs.InvalidArgument(f"could not load TLS configuration: {exc}") from None
        return ctx


class _QuietTLSListener(TLSListener):
    """TLSListener that logs a failed handshake in one line instead of a traceback."""

    @staticmethod
    async def handle_handshake_error(exc: BaseException, stream: Any) -> None:
        await anyio.aclose_forcefully(stream)
        if isinstance(exc, anyio.get_cancelled_exc_class()) or not isinstance(exc, Exception):
            raise exc
        log.warning("TLS handshake failed: %s", exc)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        # Expose the TCP listener's address/port too (TLSListener hides them).
        return {**self.listener.extra_attributes, **super().extra_attributes}


class UnixListener(anyio.abc.Listener[anyio.abc.ByteStream]):
    """A unix socket listener that removes its socket file when closed.

    Accepted connections are wrapped as transport-based anyio streams
    (``SocketStream.from_socket``): anyio's raw ``UNIXSocketStream`` can raise
    ``InvalidStateError`` in the loop when a pending receive is cancelled just as data
    arrives (its reader callback sets a cancelled future).
    """

    def __init__(self, sock: socket.socket, path: str, inode: int) -> None:
        self._sock = sock
        self.path = path
        self._inode = inode
        self._closed = False

    async def accept(self) -> anyio.abc.SocketStream:
        """Wait for and return the next connection.

        Raises:
            anyio.ClosedResourceError: the listener was closed.
        """
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                conn, _ = self._sock.accept()
            except BlockingIOError:
                await anyio.wait_readable(self._sock)
                continue
            except OSError as exc:
                if self._closed:
                    raise anyio.ClosedResourceError from None
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept on %s failed: %s", self.path, exc)
                    await anyio.sleep(0.1)
                    continue
                raise
            conn.setblocking(False)
            return await anyio.abc.SocketStream.from_socket(conn)

    async def serve(
        self,
        handler: Callable[[anyio.abc.ByteStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        async with AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(anyio.create_task_group())
            while True:
                try:
                    stream = await self.accept()
                except anyio.ClosedResourceError:
                    return
                task_group.start_soon(handler, stream)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        anyio.notify_closing(self._sock)
        self._sock.close()
        await anyio.to_thread.run_sync(self._unlink)

    def _unlink(self) -> None:
        try:
            # Only remove our own socket, not one a newer daemon put there since.
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {
            SocketAttribute.family: lambda: socket.AF_UNIX,
            SocketAttribute.local_address: lambda: self.path,
            SocketAttribute.raw_socket: lambda: self._sock,
        }


def _socket_gid(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        log.warning("group %r not found; API socket %s", group, "owned by root's group")
        return 0


def _remove_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise errdefs.InvalidArgument(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody answers: stale from a previous run
        return
    finally:
        probe.close()
    raise errdefs.AlreadyExists(f"another daemon is already listening on {path}")


def _bind_unix(path: str, gid: int) -> tuple[socket.socket, int]:
    """Bind, chmod 0660, chown root:<gid>, move into place, listen (blocking)."""
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, mode=0o755, exist_ok=True)
    _remove_stale(path)
    tmpdir = tempfile.mkdtemp(prefix=".b", dir=parent)  # 0700: nobody else can reach it
    tmp = os.path.join(tmpdir, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(tmp)
        except OSError as exc:
            if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL) or len(tmp) > 107:
                raise errdefs.InvalidArgument(f"socket path too long: {path}") from None
            raise
        os.chmod(tmp, _SOCKET_MODE)
        try:
            os.chown(tmp, 0, gid)
        except PermissionError:
            log.warning("cannot chown %s to root:%d (not running as root)", path, gid)
        os.rename(tmp, path)
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        os.rmdir(tmpdir)
    sock.setblocking(False)
    return sock, os.stat(path).st_ino


def _split_tcp(host: str, tls: bool) -> tuple[str | None, int]:
    parts = urlsplit(host)
    try:
        port = parts.port
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid port in {host!r}") from None
    if parts.path not in ("", "/"):
        raise errdefs.InvalidArgument(f"invalid TCP address {host!r}: no path allowed")
    # dockerd's defaults: 2376 with TLS, 2375 without.
    return (parts.hostname or None), (port if port is not None else (2376 if tls else 2375))


async def open_listeners(
    hosts: Sequence[str],
    tls: TlsConfig | None = None,
    *,
    allow_insecure_tcp: bool = False,
    socket_group: str = DEFAULT_SOCKET_GROUP,
) -> list[anyio.abc.Listener[anyio.abc.ByteStream]]:
    """Open one listener per ``-H`` address.

    Args:
        hosts: ``unix:///path`` or ``tcp://host:port`` (``tcp://:2376`` = all addresses).
        tls: TLS for TCP listeners; ``verify`` requires client certificates from ``ca``.
        allow_insecure_tcp: permit TCP without TLS (anyone who can connect is root).
        socket_group: group owning unix sockets; missing group falls back to gid 0.

    Returns:
        Listeners yielding anyio byte streams (TLS already negotiated for TLS listeners).

    Raises:
        errdefs.InvalidArgument: unknown scheme, bad address, TCP without TLS (unless
            allowed), unusable TLS files.
        errdefs.AlreadyExists: a live daemon already answers on a unix socket path.
        OSError: bind failures (address in use, permissions).

    Resource handling:
        On error, listeners opened so far are closed. The caller owns the result and
        must ``aclose()`` each listener (``serve`` does).
    """
    opened: list[anyio.abc.Listener[anyio.abc.ByteStream]] = []
    try:
        for host in hosts:
            opened.append(
                await _open_one(host, tls, allow_insecure_tcp=allow_insecure_tcp,
                                socket_group=socket_group)
            )
    except BaseException:
        for listener in opened:
            await listener.aclose()
        raise
    return opened


async def _open_one(
    host: str, tls: TlsConfig | None, *, allow_insecure_tcp: bool, socket_group: str
) -> anyio.abc.Listener[anyio.abc.ByteStream]:
    scheme, sep, rest = host.partition("://")
    if not sep:
        raise errdefs.InvalidArgument(f"invalid host {host!r}: expected unix:// or tcp://")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise errdefs.InvalidArgument(f"invalid host {host!r}: unix path must be absolute")
        gid = _socket_gid(socket_group)
        sock, inode = await anyio.to_thread.run_sync(_bind_unix, rest, gid)
        log.info("API listening on %s", rest)
        return UnixListener(sock, rest, inode)
    if scheme == "tcp":
        address, port = _split_tcp(host, tls is not None)
        if tls is None and not allow_insecure_tcp:
            raise errdefs.InvalidArgument(
                f"refusing to listen on {host} without TLS: anyone who can reach it gets root "
                "on this host; use --tlsverify with --tlscacert/--tlscert/--tlskey, or pass "
                "the explicit insecure-TCP opt-out"
            )
        tcp = await anyio.create_tcp_listener(local_host=address, local_port=port, backlog=_BACKLOG)
        if tls is None:
            log.warning("API listening on %s WITHOUT TLS: unauthenticated root access", host)
            return tcp
        if not tls.verify:
            log.warning("API listening on %s with TLS but without client verification", host)
        ctx = tls.server_context()
        # standard_compatible: close_notify on close (bounded by the HTTP layer's timeout).
        return _QuietTLSListener(tcp, ctx, standard_compatible=True, handshake_timeout=10)
    if scheme == "fd":
        raise errdefs.InvalidArgument("fd:// socket activation is not supported")
    raise errdefs.InvalidArgument(f"invalid host {host!r}: unsupported scheme {scheme!r}")


async def serve(
    listeners: Sequence[anyio.abc.Listener[anyio.abc.ByteStream]],
    app: ConnectionHandler,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve connections from every listener with ``app`` until cancelled.

    Reports readiness with ``task_status.started()`` once all listeners accept; use
    ``await task_group.start(serve, listeners, server)``.

    Resource handling:
        Closes every listener (and removes unix socket files) when it returns.
    """

    async def handle(stream: anyio.abc.ByteStream) -> None:
        try:
            await app(stream)
        except Exception:
            log.exception("unhandled error in connection handler")

    try:
        async with anyio.create_task_group() as tg:
            for listener in listeners:
                tg.start_soon(listener.serve, handle, tg)
            task_status.started()
    finally:
        with anyio.CancelScope(shield=True):
            for listener in listeners:
                try:
                    await listener.aclose()
                except Exception:
                    log.debug("error closing listener", exc_info=True)
