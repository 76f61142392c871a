"""Platform names in Docker's (Go's) terms: the host's GOARCH from uname's machine."""

from __future__ import annotations

import platform

__all__ = ["goarch", "host_arch"]

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}


def goarch(machine: str) -> str:
    """GOARCH for a uname machine name ("x86_64" -> "amd64"); unknown names pass through."""
    return _GOARCH.get(machine, machine)


def host_arch() -> str:
    """The host's architecture in GOARCH terms."""
    return goarch(platform.machine())
