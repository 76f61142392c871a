"""Registry auth with the real CLI: htpasswd over TLS (CA and client cert in certs.d) and bearer tokens."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.berthd import BerthdProcess
from testkit.fixtures import busybox_rootfs_tar
from testkit.registry import RegistryServer, TestCA, TokenServer

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None or shutil.which("openssl") is None,
    reason="needs docker-registry and openssl",
)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="berth-rega-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def ca(base: Path) -> TestCA:
    return TestCA(base / "ca")


@pytest.fixture(scope="module")
def rd(base: Path) -> Iterator[BerthdProcess]:
    (base / "certs.d").mkdir()
    proc = BerthdProcess(base / "d", extra_args=["--certs-dir", str(base / "certs.d")])
    proc.start()
    try:
        proc.docker("import", "--change", 'CMD ["sh"]', str(busybox_rootfs_tar()), "busybox:latest")
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture(scope="module")
def tls_registry(base: Path, ca: TestCA) -> Iterator[RegistryServer]:
    reg = RegistryServer(base / "tls", tls=ca, htpasswd={"alice": "s3cret"}, client_ca=True)
    with reg:
        ca.install(base / "certs.d", reg.host, client=True)
        yield reg


@pytest.fixture(scope="module")
def token_registry(base: Path) -> Iterator[tuple[RegistryServer, TokenServer]]:
    tokens = TokenServer(base / "token", users={"bob": "hunter2"})
    tokens.start()
    try:
        with RegistryServer(base / "tokreg", token=tokens) as reg:
            yield reg, tokens
    finally:
        tokens.stop()


def test_login_push_pull_htpasswd_tls(rd: BerthdProcess, tls_registry: RegistryServer) -> None:
    host = tls_registry.host
    bad = rd.docker("login", "-u", "alice", "--password-stdin", host, input="wrong\n", check=False)
    assert bad.returncode != 0
    assert "401" in bad.stderr or "unauthorized" in bad.stderr.lower()
    ok = rd.docker("login", "-u", "alice", "--password-stdin", host, input="s3cret\n")
    assert "Login Succeeded" in ok.stdout
    ref = f"{host}/private/bb:1"
    rd.docker("tag", "busybox:latest", ref)
    out = rd.docker("push", ref).stdout
    assert "digest: sha256:" in out
    rd.docker("rmi", ref)
    rd.docker("pull", ref)
    rd.docker("rmi", ref)
    rd.docker("logout", host)
    denied = rd.docker("pull", ref, check=False)
    assert denied.returncode != 0
    assert "pull access denied" in denied.stderr or "unauthorized" in denied.stderr.lower()


def test_tls_needs_the_client_cert_from_certs_d(rd: BerthdProcess, tls_registry: RegistryServer,
                                                 base: Path) -> None:
    d = base / "certs.d" / tls_registry.host
    moved = base / "moved-client"
    moved.mkdir(exist_ok=True)
    for f in ("client.cert", "client.key"):
        shutil.move(str(d / f), str(moved / f))
    try:
        out = rd.docker("login", "-u", "alice", "--password-stdin", tls_registry.host,
                        input="s3cret\n", check=False)
        assert out.returncode != 0
    finally:
        for f in ("client.cert", "client.key"):
            shutil.move(str(moved / f), str(d / f))


def test_token_auth(rd: BerthdProcess, token_registry: tuple[RegistryServer, TokenServer]) -> None:
    reg, tokens = token_registry
    ref = f"{reg.host}/tok/bb:1"
    rd.docker("tag", "busybox:latest", ref)
    anon = rd.docker("push", ref, check=False)
    assert anon.returncode != 0
    bad = rd.docker("login", "-u", "bob", "--password-stdin", reg.host, input="nope\n", check=False)
    assert bad.returncode != 0
    rd.docker("login", "-u", "bob", "--password-stdin", reg.host, input="hunter2\n")
    out = rd.docker("push", ref).stdout
    assert "digest: sha256:" in out
    assert any("scope=repository%3Atok%2Fbb%3Apull%2Cpush" in path or
               "scope=repository:tok/bb:pull,push" in path for path, _ in tokens.requests)
    # Credentials went to the realm as Basic, never anywhere else: the registry saw only tokens.
    assert all(a.startswith("Basic ") for _, a in tokens.requests if a)
    rd.docker("rmi", ref)
    rd.docker("pull", ref)
    assert rd.docker("run", "--rm", ref, "echo", "token-ok").stdout.strip() == "token-ok"
    rd.docker("rmi", ref)
    rd.docker("logout", reg.host)
