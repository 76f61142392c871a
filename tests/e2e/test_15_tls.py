"""The Docker API over TCP with mutual TLS, through the real docker CLI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.berthd import BerthdProcess


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", cwd=d)


def _cert(d: Path, ca: str, name: str, ext: str) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
             f"{name}-key.pem", "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
             "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)


@pytest.fixture
def pki() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="berth-pki-", dir="/tmp"))
    _ca(d, "ca")
    _ca(d, "evil-ca")
    _cert(d, "ca", "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _cert(d, "ca", "client", "extendedKeyUsage=clientAuth\n")
    _cert(d, "evil-ca", "intruder", "extendedKeyUsage=clientAuth\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _docker(port: int, pki: Path, client: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_CONFIG": str(pki)}
    env.pop("DOCKER_HOST", None)
    return subprocess.run(
        ["docker", "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(pki / "ca.pem"),
         "--tlscert", str(pki / f"{client}.pem"), "--tlskey", str(pki / f"{client}-key.pem"), *args],
        env=env, capture_output=True, text=True, timeout=60,
    )


def test_mutual_tls(pki: Path) -> None:
    port = _free_port()
    base = Path(tempfile.mkdtemp(prefix="berth-tls-", dir="/tmp"))
    proc = BerthdProcess(base, extra_args=(
        "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(pki / "ca.pem"),
        "--tlscert", str(pki / "server.pem"), "--tlskey", str(pki / "server-key.pem")))
    try:
        proc.start()
        ok = _docker(port, pki, "client", "version", "--format", "{{.Server.APIVersion}}")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == "1.50"
        bad = _docker(port, pki, "intruder", "version")
        assert bad.returncode != 0
        assert "Server:" not in bad.stdout
    finally:
        proc.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_plain_tcp_refused_without_explicit_opt_out() -> None:
    base = Path(tempfile.mkdtemp(prefix="berth-tcp-", dir="/tmp"))
    try:
        berthd = Path(os.environ.get("BERTH_TEST_BERTHD", "")) if os.environ.get(
            "BERTH_TEST_BERTHD") else Path(__file__).resolve().parents[2] / ".venv" / "bin" / "berthd"
        res = subprocess.run(
            [str(berthd), "--data-root", str(base / "d"), "--exec-root", str(base / "e"),
             "-H", f"tcp://127.0.0.1:{_free_port()}"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 1
        assert "without TLS" in res.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
