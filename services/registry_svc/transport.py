"""Where and how to reach a registry: endpoints, TLS from certs.d, insecure registries, mirrors."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from dockerapi.reference import DEFAULT_DOMAIN

__all__ = ["DEFAULT_CERTS_DIR", "Endpoint", "TransportConfig", "normalize_server_address"]

DEFAULT_CERTS_DIR = Path("/etc/berth/certs.d")
# docker.io's API host, as dockerd uses it.
DOCKER_IO_API = "registry-1.docker.io"
# Docker treats loopback as insecure whatever the configuration says.
_DEFAULT_INSECURE = ("127.0.0.0/8",)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One way to reach a registry: a base URL and its TLS settings."""

    host: str  # registry host[:port] as references name it
    url: str  # "https://host:port" or "http://host:port"
    tls: ssl.SSLContext | bool  # False: plain HTTP or no verification
    mirror: bool = False

    @property
    def secure(self) -> bool:
        return self.url.startswith("https://") and self.tls is not False


def normalize_server_address(address: str) -> str:
    """The registry host of a login server address ("https://index.docker.io/v1/" -> docker.io)."""
    a = address.strip()
    for prefix in ("https://", "http://"):
        a = a.removeprefix(prefix)
    a = a.split("/", 1)[0]
    if a in ("", "index.docker.io", "registry-1.docker.io", "docker.io"):
        return DEFAULT_DOMAIN
    return a


@dataclass(slots=True)
class TransportConfig:
    """Per-daemon transport settings: certs.d, insecure registries, mirrors for docker.io."""

    certs_dir: Path = DEFAULT_CERTS_DIR
    insecure_registries: list[str] = field(default_factory=list)
    registry_mirrors: list[str] = field(default_factory=list)
    # False: docker.io is reached only through mirrors (tests, air-gapped hosts).
    hub: bool = True

    def is_insecure(self, host: str) -> bool:
        """Docker's rule: a listed host[:port], or an IP inside a listed (or loopback) CIDR."""
        if host in self.insecure_registries:
            return True
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.endswith("]") else host
        name = name.strip("[]")
        if name == "localhost":
            name = "127.0.0.1"
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            return False
        for cidr in (*_DEFAULT_INSECURE, *self.insecure_registries):
            try:
                if ip in ipaddress.ip_network(cidr, strict=False):
                    return True
            except ValueError:
                continue
        return False

    def tls_context(self, host: str, verify: bool = True) -> ssl.SSLContext:
        """System CAs plus ``<certs_dir>/<host>/*.crt``, and the client.cert/client.key pair.

        Blocking (reads files): call from a worker thread.
        """
        ctx = ssl.create_default_context()
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        d = self.certs_dir / host
        if d.is_dir():
            for crt in sorted(d.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(crt))
            for cert in sorted(d.glob("*.cert")):
                key = cert.with_suffix(".key")
                if key.is_file():
                    ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def endpoints(self, host: str) -> list[Endpoint]:
        """Endpoints to try in order: mirrors (docker.io), HTTPS, then HTTP if insecure.

        Blocking (reads certs.d): call from a worker thread.
        """
        out: list[Endpoint] = []
        if host == DEFAULT_DOMAIN:
            for m in self.registry_mirrors:
                mhost = normalize_server_address(m)
                scheme = "http" if m.startswith("http://") else "https"
                tls: ssl.SSLContext | bool = (
                    self.tls_context(mhost, verify=not self.is_insecure(mhost))
                    if scheme == "https" else False
                )
                out.append(Endpoint(DEFAULT_DOMAIN, f"{scheme}://{mhost}", tls, mirror=True))
            if self.hub:
                out.append(Endpoint(DEFAULT_DOMAIN, f"https://{DOCKER_IO_API}",
                                    self.tls_context(DOCKER_IO_API)))
            return out
        insecure = self.is_insecure(host)
        out.append(Endpoint(host, f"https://{host}", self.tls_context(host, verify=not insecure)))
        if insecure:
            out.append(Endpoint(host, f"http://{host}", False))
        return out
