"""Listeners: unix socket mode/owner, stale and live sockets, TCP refusal, TLS client certs."""

from __future__ import annotations

import grp
import os
import socket
import ssl
import stat
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import pytest

import errdefs
from gateway_svc.http import HttpServer
from gateway_svc.listeners import TlsConfig, open_listeners, serve
from gateway_svc.router import Router

from .client import RawClient

pytestmark = pytest.mark.anyio


def _expected_gid(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return 0


async def test_unix_socket_mode_and_owner(tmp_path: Path) -> None:
    path = tmp_path / "run" / "berth.sock"  # parent created on demand
    listeners = await open_listeners([f"unix://{path}"])
    try:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_uid == 0
        assert st.st_gid == _expected_gid("docker")
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o755
        # No leftovers from the private bind directory.
        assert os.listdir(path.parent) == ["berth.sock"]
    finally:
        for listener in listeners:
            await listener.aclose()
    assert not path.exists()


async def test_unix_socket_group(tmp_path: Path) -> None:
    group = grp.getgrgid(1).gr_name  # "daemon" on Debian: any existing non-root group
    path = tmp_path / "g.sock"
    listeners = await open_listeners([f"unix://{path}"], socket_group=group)
    try:
        assert os.stat(path).st_gid == 1
    finally:
        for listener in listeners:
            await listener.aclose()


async def test_stale_socket_replaced_live_socket_refused(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # file left behind, nobody listening
    listeners = await open_listeners([f"unix://{path}"])
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        with pytest.raises(errdefs.AlreadyExists, match="already listening"):
            await open_listeners([f"unix://{path}"])
    finally:
        for listener in listeners:
            await listener.aclose()


async def test_not_a_socket_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(errdefs.InvalidArgument, match="not a socket"):
        await open_listeners([f"unix://{path}"])
    assert path.read_text() == "x"


async def test_bad_hosts() -> None:
    for host in ["fd://", "http://x", "/var/run/x.sock", "unix://relative", "tcp://h:port"]:
        with pytest.raises(errdefs.InvalidArgument):
            await open_listeners([host], allow_insecure_tcp=True)


async def test_plain_tcp_refused_unless_allowed() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="without TLS"):
        await open_listeners(["tcp://127.0.0.1:0"])
    listeners = await open_listeners(["tcp://127.0.0.1:0"], allow_insecure_tcp=True)
    try:
        port = listeners[0].extra(anyio.abc.SocketAttribute.local_port)
        assert port > 0
    finally:
        for listener in listeners:
            await listener.aclose()


# --- TLS -----------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-subj", f"/CN={name}", cwd=d)


def _make_cert(d: Path, ca: str, name: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem",
             "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
             cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _make_ca(d, "ca")
    _make_ca(d, "evil-ca")
    _make_cert(d, "ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                  "extendedKeyUsage=serverAuth\n")
    _make_cert(d, "ca", "client", "extendedKeyUsage=clientAuth\n")
    _make_cert(d, "evil-ca", "intruder", "extendedKeyUsage=clientAuth\n")
    return d


def _client_ctx(pki: Path, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert is not None:
        ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}-key.pem"))
    return ctx


@pytest.fixture
async def tls_port(pki: Path) -> AsyncIterator[int]:
    tls = TlsConfig(cert=str(pki / "server.pem"), key=str(pki / "server-key.pem"),
                    ca=str(pki / "ca.pem"), verify=True)
    listeners = await open_listeners(["tcp://127.0.0.1:0"], tls)
    port = listeners[0].extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(serve, listeners, HttpServer(Router(server_version="t")))
        yield port
        tg.cancel_scope.cancel()


async def _ping_over_tls(port: int, ctx: ssl.SSLContext) -> int:
    with anyio.fail_after(10):
        stream = await anyio.connect_tcp("127.0.0.1", port, tls=True, ssl_context=ctx,
                                         tls_hostname="localhost")
        async with stream:
            client = RawClient(stream)
            await client.request("GET", "/_ping")
            return (await client.reply()).status


async def test_tls_with_client_cert(tls_port: int, pki: Path) -> None:
    assert await _ping_over_tls(tls_port, _client_ctx(pki, "client")) == 200


@pytest.mark.parametrize("cert", ["intruder", None])
async def test_tls_foreign_or_missing_client_cert_fails(tls_port: int, pki: Path,
                                                        cert: str | None) -> None:
    # With TLS 1.3 the client may finish its side of the handshake before the server
    # rejects the certificate; the failure then shows on the first read.
    with pytest.raises((ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream,
                        ConnectionError)):
        await _ping_over_tls(tls_port, _client_ctx(pki, cert))


async def test_tls_without_verify_accepts_anyone(pki: Path) -> None:
    tls = TlsConfig(cert=str(pki / "server.pem"), key=str(pki / "server-key.pem"))
    listeners = await open_listeners(["tcp://127.0.0.1:0"], tls)
    port = listeners[0].extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(serve, listeners, HttpServer(Router(server_version="t")))
        assert await _ping_over_tls(port, _client_ctx(pki, None)) == 200
        tg.cancel_scope.cancel()


def test_tlsverify_needs_ca(pki: Path) -> None:
    tls = TlsConfig(cert=str(pki / "server.pem"), key=str(pki / "server-key.pem"), verify=True)
    with pytest.raises(errdefs.InvalidArgument, match="tlscacert"):
        tls.server_context()
    with pytest.raises(errdefs.InvalidArgument, match="could not load"):
        TlsConfig(cert=str(pki / "nope.pem"), key=str(pki / "nope.pem")).server_context()
