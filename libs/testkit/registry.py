"""A real Distribution registry (Debian's docker-registry) on loopback for tests, plus a token server.

Three setups: anonymous over HTTP, htpasswd over TLS with a test CA made by openssl, and bearer
tokens issued by :class:`TokenServer` (RS256 JWTs whose x5c names a test signing certificate).
Everything runs on 127.0.0.1, on free ports, under a directory the caller owns.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import socket
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["REGISTRY_BIN", "RegistryServer", "TestCA", "TokenServer", "free_port", "htpasswd_line"]

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
START_TIMEOUT = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def htpasswd_line(user: str, password: str) -> str:
    """``user:$2b$...`` (bcrypt, the only scheme docker-registry accepts) via libcrypt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # stdlib in 3.11; deprecated, but libxcrypt does bcrypt

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("this libcrypt cannot make bcrypt hashes")
    return f"{user}:{hashed}"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass
class TestCA:
    """A throwaway CA and one server certificate for 127.0.0.1/localhost, and a client cert."""

    __test__ = False  # not a pytest class

    dir: Path

    def __post_init__(self) -> None:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                 "-days", "2", "-subj", "/CN=berth test CA", cwd=d)
        (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                     f"{name}.csr", "-subj", f"/CN=berth test {name}", cwd=d)
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                     "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext, cwd=d)

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def install(self, certs_dir: Path, host: str, client: bool = False) -> Path:
        """Write ``<certs_dir>/<host>/ca.crt`` (and client.cert/client.key) as Docker expects."""
        d = certs_dir / host
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.ca, d / "ca.crt")
        if client:
            shutil.copy(self.dir / "client.crt", d / "client.cert")
            shutil.copy(self.dir / "client.key", d / "client.key")
        return d


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A token server for the registry's ``auth: token`` (Docker's token protocol).

    ``GET /token?service=&scope=...`` with Basic credentials from ``users`` returns a JWT granting
    the requested actions; bad credentials get a 401, anonymous requests get pull only when
    ``anonymous_pull``. ``requests`` records (path+query, Authorization header) of every call.
    """

    def __init__(self, dir: Path, users: dict[str, str], service: str = "berth-test-registry",
                 issuer: str = "berth-test-issuer", anonymous_pull: bool = False) -> None:
        self.dir = dir
        self.users = dict(users)
        self.service = service
        self.issuer = issuer
        self.anonymous_pull = anonymous_pull
        self.requests: list[tuple[str, str]] = []
        dir.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "sign.key", "-out",
                 "sign.crt", "-days", "2", "-subj", "/CN=berth token signer", cwd=dir)
        der = subprocess.run(["openssl", "x509", "-in", "sign.crt", "-outform", "DER"], cwd=dir,
                             check=True, capture_output=True).stdout
        self._x5c = base64.b64encode(der).decode()
        self.port = free_port()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def cert(self) -> Path:
        return self.dir / "sign.crt"

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def _sign(self, payload: bytes) -> bytes:
        return subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.dir / "sign.key")],
                              input=payload, check=True, capture_output=True).stdout

    def issue(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        return f"{signing}.{_b64url(self._sign(signing.encode()))}"

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        auth = h.headers.get("Authorization", "")
        self.requests.append((h.path, auth))
        q = parse_qs(urlsplit(h.path).query)
        user = ""
        if auth.startswith("Basic "):
            u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(u) != p:
                self._reply(h, 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                return
            user = u
        elif not self.anonymous_pull and "scope" not in q:
            self._reply(h, 401, {"errors": [{"code": "UNAUTHORIZED", "message": "login required"}]})
            return
        access = []
        for scope in q.get("scope", []):
            typ, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if a and (user or (self.anonymous_pull and a == "pull"))]
            access.append({"type": typ, "name": name, "actions": granted})
        token = self.issue(user, access)
        self._reply(h, 200, {"token": token, "access_token": token, "expires_in": 300})

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


@dataclass
class RegistryServer:
    """docker-registry serving ``dir/data`` on 127.0.0.1:<free port>.

    Resource handling: ``stop()`` (or the context manager) ends the process it started.
    """

    dir: Path
    tls: TestCA | None = None
    htpasswd: dict[str, str] = field(default_factory=dict)
    token: TokenServer | None = None
    client_ca: bool = False  # require client certificates signed by the test CA
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:", "  level: warn", "  accesslog:", "    disabled: true",
            "storage:", "  filesystem:", f"    rootdirectory: {self.data}",
            "  delete:", "    enabled: true",
            "http:", f"  addr: 127.0.0.1:{self.port}", f"  secret: {secrets.token_hex(16)}",
        ]
        if self.tls is not None:
            lines += ["  tls:", f"    certificate: {self.tls.dir / 'server.crt'}",
                      f"    key: {self.tls.dir / 'server.key'}"]
            if self.client_ca:
                lines += ["    clientcas:", f"      - {self.tls.ca}"]
        if self.htpasswd:
            path = self.dir / "htpasswd"
            path.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in self.htpasswd.items()))
            lines += ["auth:", "  htpasswd:", "    realm: berth-test", f"    path: {path}"]
        elif self.token is not None:
            t = self.token
            lines += ["auth:", "  token:", f"    realm: {t.realm}", f"    service: {t.service}",
                      f"    issuer: {t.issuer}", f"    rootcertbundle: {t.cert}"]
        return "\n".join(lines) + "\n"

    def start(self) -> RegistryServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        cfg = self.dir / "config.yml"
        cfg.write_text(self._config())
        log = open(self.dir / "registry.log", "ab")
        try:
            self._proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not listen on {self.port}: {self.log_tail()}")

    def stop(self) -> None:
        p, self._proc = self._proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join((self.dir / "registry.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob (tests corrupt it to play a hostile registry)."""
        hexd = digest.removeprefix("sha256:")
        return self.data / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
