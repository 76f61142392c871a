"""A network namespace beside the host for network tests: a veth link and a tiny HTTP echo server.

`OutsidePeer()` makes netns ``berthpeer-<rand>`` joined to the host by a /30 veth pair
(``10.199.N.1`` on the host side, ``10.199.N.2`` inside). Its HTTP server answers every GET
with the client address it saw, which is how tests check masquerade. Nothing leaves the machine:
the namespace has no other link and no default route, so it can only answer the host.

Resource handling: `close()` (or the context manager) kills the server it started and deletes
the namespace and the veth pair; nothing else is touched.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import secrets
import subprocess
import sys
import time
from types import TracebackType

__all__ = ["OutsidePeer", "free_prefix"]

_SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _free_slot() -> int:
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    used = set()
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        if word.startswith("10.199."):
            with contextlib.suppress(ValueError):
                used.add(ipaddress.IPv4Network(word, strict=False).network_address.packed[2])
    free = [i for i in range(256) if i not in used]
    return random.choice(free)


class OutsidePeer:
    """A namespace on a /30 link to the host, serving HTTP echo on ``addr:port``."""

    def __init__(self, port: int = 8080) -> None:
        tag = secrets.token_hex(3)
        n = _free_slot()
        self.netns = f"berthpeer-{tag}"
        self.host_if = f"bph{tag}"
        self.host_addr = f"10.199.{n}.1"
        self.addr = f"10.199.{n}.2"
        self.port = port
        self._server: subprocess.Popen[bytes] | None = None
        _ip("netns", "add", self.netns)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", "bpp" + tag, "netns", self.netns)
            _ip("addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.netns, "addr", "add", f"{self.addr}/30", "dev", "bpp" + tag)
            _ip("-n", self.netns, "link", "set", "bpp" + tag, "up")
            _ip("-n", self.netns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def serve(self) -> None:
        """Start the echo server inside the namespace and wait until it answers."""
        self._server = subprocess.Popen(["ip", "netns", "exec", self.netns, sys.executable, "-c", _SERVER,
                                         self.addr, str(self.port)])  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (
                self.exec(
                    "python3",
                    "-c",
                    f"import socket; socket.create_connection(('{self.addr}', {self.port}), 1)",
                    check=False,
                ).returncode
                == 0
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("echo server in the peer namespace did not start")

    def exec(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace."""
        return subprocess.run(["ip", "netns", "exec", self.netns, *args], capture_output=True, text=True,
                              check=check, timeout=timeout)  # fmt: skip

    def close(self) -> None:
        if self._server is not None:
            self._server.kill()
            self._server.wait()
            self._server = None
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)

    def __enter__(self) -> OutsidePeer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_HANDED_OUT: set[int] = set()


def free_prefix(second: int = 198) -> str:
    """ "10.<second>.N" for a /24 no route uses and this process has not handed out yet.

    Tests on user subnets take theirs from here, so concurrent test daemons never put two
    bridges on one subnet.
    """
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    used = set(_HANDED_OUT)
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        if word.startswith(f"10.{second}."):
            with contextlib.suppress(ValueError):
                net = ipaddress.IPv4Network(word, strict=False)
                used.update(range(net.network_address.packed[2], net.broadcast_address.packed[2] + 1))
    n = random.choice([i for i in range(1, 255) if i not in used])
    _HANDED_OUT.add(n)
    return f"10.{second}.{n}"
