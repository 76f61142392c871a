"""The embedded DNS server for real: listeners inside network namespaces, a real upstream on loopback.

Each test makes its own netns (`berthdns-<rand>`, loopback up, deleted in finally), runs an
EmbeddedDns on the test's event loop and a small dnspython upstream on 127.0.0.1:<port> in the
host netns, and queries 127.0.0.11 from a thread that entered the netns (or a process started
with `ip netns exec` for the throughput measurement). No packet leaves loopback.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.abc
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from networks_svc.dns import EmbeddedDns

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

T = TypeVar("T")
A = ipaddress.IPv4Address
AAAA = ipaddress.IPv6Address
DNS = "127.0.0.11"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---- helpers ---------------------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns_factory() -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        name = f"berthdns-{secrets.token_hex(4)}"
        _ip("netns", "add", name)
        made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    try:
        yield make
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=30)


def _path(ns: str) -> str:
    return f"/run/netns/{ns}"


def _in_netns(ns: str, fn: Callable[..., T], *args: Any) -> T:
    """Run fn(*args) in a fresh thread that entered netns `ns` (the thread ends afterwards)."""
    out: list[T] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(_path(ns), os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            out.append(fn(*args))
        except BaseException as e:
            err.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]


async def query(
    ns: str,
    name: str,
    rdtype: str = "A",
    *,
    tcp: bool = False,
    wait: float = 3.0,
    edns: int | bool = False,
    payload: int = 1232,
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload)
    fn = dns.query.tcp if tcp else dns.query.udp
    return await anyio.to_thread.run_sync(_in_netns, ns, fn, q, DNS, wait)


def addrs(msg: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in msg.answer for rd in rrset}


def _netns_inode(path: str) -> int:
    return os.stat(path).st_ino


# ---- records and a small upstream ------------------------------------------------------------


class Records:
    """Two scopes: `s1` sees web at .2 (and v6), `s2` sees another web at .12."""

    def __init__(self) -> None:
        self.names: dict[str, dict[str, list[A | AAAA]]] = {
            "s1": {"web": [A("172.29.0.2"), AAAA("fd00:29::2")], "db": [A("172.29.0.3")]},
            "s2": {"web": [A("172.29.0.12")]},
        }
        self.rev: dict[str, dict[A | AAAA, str]] = {
            "s1": {A("172.29.0.2"): "web.testnet", AAAA("fd00:29::2"): "web.testnet"},
        }

    def lookup(self, scope: str, name: str) -> list[A | AAAA] | None:
        return self.names.get(scope, {}).get(name)

    def reverse(self, scope: str, addr: A | AAAA) -> str | None:
        return self.rev.get(scope, {}).get(addr)


@dataclass
class Upstream:
    """A dnspython server on 127.0.0.1 (UDP and TCP, same port) with a few canned names."""

    port: int = 0
    rcode: dns.rcode.Rcode | None = None  # answer everything with this rcode instead
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (proto, peer host, qname)

    def respond(self, wire: bytes, proto: str, peer: str) -> bytes | None:
        try:
            q = dns.message.from_wire(wire)
        except Exception:
            return None
        name = q.question[0].name.to_text().lower()
        self.seen.append((proto, peer, name))
        r = dns.message.make_response(q)
        if self.rcode is not None:
            r.set_rcode(self.rcode)
        elif name == "example.test." and q.question[0].rdtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "A", "192.0.2.55"))
        elif name == "big.test.":
            if proto == "udp":
                r.flags |= dns.flags.TC  # as a server with a small UDP limit would
            else:
                r.answer.append(
                    dns.rrset.from_text_list(
                        q.question[0].name, 30, "IN", "A", [f"198.51.100.{i}" for i in range(1, 61)]
                    )
                )
        elif name == "web." and q.question[0].rdtype == dns.rdatatype.TXT:
            r.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "TXT", '"from upstream"'))
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)  # as a recursive resolver: not authoritative
        return r.to_wire(max_size=65535)

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        for _ in range(50):  # a free UDP port whose TCP twin is free too
            udp = await anyio.create_udp_socket(local_host="127.0.0.1")
            port = udp.extra(anyio.abc.SocketAttribute.local_port)
            try:
                tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
                break
            except OSError:
                await udp.aclose()
        else:
            raise RuntimeError("no free port pair")
        self.port = port

        async def on_tcp(stream: anyio.abc.SocketStream) -> None:
            from anyio.streams.buffered import BufferedByteReceiveStream

            buf = BufferedByteReceiveStream(stream)
            async with stream:
                size = int.from_bytes(await buf.receive_exactly(2), "big")
                resp = self.respond(
                    await buf.receive_exactly(size),
                    "tcp",
                    stream.extra(anyio.abc.SocketAttribute.remote_address)[0],
                )
                if resp is not None:
                    await stream.send(len(resp).to_bytes(2, "big") + resp)

        async with udp, tcp, anyio.create_task_group() as tg:
            tg.start_soon(tcp.serve, on_tcp)
            task_status.started()
            async for data, (host, port) in udp:
                resp = self.respond(data, "udp", host)
                if resp is not None:
                    await udp.sendto(resp, host, port)


@dataclass
class Env:
    dns: EmbeddedDns
    upstream: Upstream
    records: Records
    tg: anyio.abc.TaskGroup


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    upstream = Upstream()
    records = Records()
    async with anyio.create_task_group() as tg:
        await tg.start(upstream.serve)
        server = EmbeddedDns(records, [("127.0.0.1", upstream.port)], timeout=1.0)
        await tg.start(server.run)
        try:
            yield Env(server, upstream, records, tg)
        finally:
            tg.cancel_scope.cancel()


# ---- tests -----------------------------------------------------------------------------------


async def test_answers_a_aaaa_ptr_from_records_inside_the_netns(
    env: Env, netns_factory: Callable[[], str]
) -> None:
    ns = netns_factory()
    await env.dns.add_sandbox("c1", _path(ns), "s1")
    r = await query(ns, "web")
    assert addrs(r) == {"172.29.0.2"} and r.answer[0].ttl == 600 and r.flags & dns.flags.RA
    assert addrs(await query(ns, "WEB.", "AAAA")) == {"fd00:29::2"}
    r = await query(ns, "db", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    r = await query(ns, "2.0.29.172.in-addr.arpa", "PTR")
    assert [rd.to_text() for rd in r.answer[0]] == ["web.testnet."]
    r = await query(ns, dns.reversename.from_address("fd00:29::2").to_text(), "PTR")
    assert [rd.to_text() for rd in r.answer[0]] == ["web.testnet."]
    assert not env.upstream.seen  # all of it answered locally


async def test_forwards_from_the_host_netns(env: Env, netns_factory: Callable[[], str]) -> None:
    ns = netns_factory()
    await env.dns.add_sandbox("c1", _path(ns), "s1")
    r = await query(ns, "example.test")
    assert r.rcode() == dns.rcode.NOERROR and addrs(r) == {"192.0.2.55"}
    # The upstream listens on the host's 127.0.0.1, which the sandbox netns cannot even reach.
    assert env.upstream.seen == [("udp", "127.0.0.1", "example.test.")]
    r = await query(ns, "nothing-here.test")
    assert r.rcode() == dns.rcode.NXDOMAIN  # non-authoritative NXDOMAIN passes through
    r = await query(ns, "web", "TXT")  # our name, a type we do not answer: forwarded
    assert [rd.to_text() for rd in r.answer[0]] == ['"from upstream"']
    assert env.upstream.seen[-1] == ("udp", "127.0.0.1", "web.")


async def test_truncated_upstream_answer_is_retried_over_tcp(
    env: Env, netns_factory: Callable[[], str]
) -> None:
    ns = netns_factory()
    await env.dns.add_sandbox("c1", _path(ns), "s1")
    r = await query(ns, "big.test", edns=0, payload=4096)
    assert len(addrs(r)) == 60 and not r.flags & dns.flags.TC
    assert [p for p, _, n in env.upstream.seen if n == "big.test."] == ["udp", "tcp"]
    # Too big for a client without EDNS: it gets the truncated answer and asks over TCP itself.
    r = await query(ns, "big.test")
    assert r.flags & dns.flags.TC
    r = await query(ns, "big.test", tcp=True)
    assert len(addrs(r)) == 60


async def test_servfail_when_upstreams_fail(netns_factory: Callable[[], str]) -> None:
    ns = netns_factory()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed,
    ):
        silent.bind(("127.0.0.1", 0))  # swallows queries: the upstream timeout fires
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()  # nothing listens there: ICMP port unreachable
        for upstreams in ([("127.0.0.1", closed_port)], [silent.getsockname()], []):
            server = EmbeddedDns(Records(), upstreams, timeout=0.5)
            async with anyio.create_task_group() as tg:
                await tg.start(server.run)
                await server.add_sandbox("c1", _path(ns), "s1")
                with anyio.fail_after(2.5):
                    r = await query(ns, "example.test")
                assert r.rcode() == dns.rcode.SERVFAIL, upstreams
                assert addrs(await query(ns, "web")) == {"172.29.0.2"}  # local names still work
                r = await query(ns, "example.test", tcp=True)
                assert r.rcode() == dns.rcode.SERVFAIL
                tg.cancel_scope.cancel()


async def test_next_upstream_on_failure(netns_factory: Callable[[], str]) -> None:
    ns = netns_factory()
    failing, refusing = Upstream(rcode=dns.rcode.SERVFAIL), Upstream(rcode=dns.rcode.REFUSED)
    good = Upstream()
    async with anyio.create_task_group() as tg:
        for u in (failing, refusing, good):
            await tg.start(u.serve)
        server = EmbeddedDns(Records(), [("127.0.0.1", u.port) for u in (failing, refusing, good)])
        await tg.start(server.run)
        await server.add_sandbox("c1", _path(ns), "s1")
        assert addrs(await query(ns, "example.test")) == {"192.0.2.55"}
        # A non-authoritative NXDOMAIN is not final either, but wins when nobody knows better.
        r = await query(ns, "nothing-here.test")
        assert r.rcode() == dns.rcode.NXDOMAIN
        assert [len(u.seen) for u in (failing, refusing, good)] == [2, 2, 2]
        await server.add_sandbox("c1", _path(ns), "s1", upstreams=[("127.0.0.1", failing.port)])
        assert (await query(ns, "example.test")).rcode() == dns.rcode.SERVFAIL
        tg.cancel_scope.cancel()


async def test_tcp_queries(env: Env, netns_factory: Callable[[], str]) -> None:
    ns = netns_factory()
    await env.dns.add_sandbox("c1", _path(ns), "s1")
    assert addrs(await query(ns, "web", tcp=True)) == {"172.29.0.2"}
    assert addrs(await query(ns, "example.test", tcp=True)) == {"192.0.2.55"}
    assert env.upstream.seen[-1][0] == "tcp"

    def two_on_one_connection() -> list[set[str]]:
        with socket.create_connection((DNS, 53), timeout=3) as s:
            out = []
            for name in ("web", "example.test"):
                dns.query.send_tcp(s, dns.message.make_query(name, "A"))
                msg, _ = dns.query.receive_tcp(s)
                out.append(addrs(msg))
            return out

    got = await anyio.to_thread.run_sync(_in_netns, ns, two_on_one_connection)
    assert got == [{"172.29.0.2"}, {"192.0.2.55"}]


async def test_garbage_is_dropped_and_the_next_query_answered(
    env: Env, netns_factory: Callable[[], str]
) -> None:
    ns = netns_factory()
    await env.dns.add_sandbox("c1", _path(ns), "s1")
    good = dns.message.make_query("web", "A")
    not_query = dns.message.make_response(dns.message.make_query("web", "A")).to_wire()

    def garbage_then_good() -> tuple[list[bytes], dns.message.Message]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            s.connect((DNS, 53))
            unanswered = []
            for junk in (b"", b"\x00", os.urandom(7), os.urandom(300), b"\xff" * 600, not_query):
                s.send(junk)
                try:
                    unanswered.append(s.recv(4096))
                except TimeoutError:
                    pass
            s.settimeout(3)
            s.send(good.to_wire())
            return unanswered, dns.message.from_wire(s.recv(4096))

    answered, r = await anyio.to_thread.run_sync(_in_netns, ns, garbage_then_good)
    assert answered == [] and r.id == good.id and addrs(r) == {"172.29.0.2"}

    def tcp_garbage() -> bytes:
        with socket.create_connection((DNS, 53), timeout=3) as s:
            s.sendall(b"\x00\x05hello")
            return s.recv(100)  # the server drops the connection

    assert await anyio.to_thread.run_sync(_in_netns, ns, tcp_garbage) == b""
    assert addrs(await query(ns, "web", tcp=True)) == {"172.29.0.2"}


async def test_remove_sandbox_closes_the_listeners(env: Env, netns_factory: Callable[[], str]) -> None:
    ns = netns_factory()
    await env.dns.add_sandbox("c1", _path(ns), "s1")
    assert addrs(await query(ns, "web")) == {"172.29.0.2"}
    await env.dns.remove_sandbox("c1")
    await env.dns.remove_sandbox("c1")  # unknown keys are fine
    with pytest.raises(ConnectionRefusedError):
        await query(ns, "web", tcp=True)
    with pytest.raises(dns.exception.Timeout):
        await query(ns, "web", wait=0.5)

    def bound_sockets() -> str:
        return subprocess.run(["ss", "-Hauln"], capture_output=True, text=True, check=True).stdout

    assert "127.0.0.11" not in await anyio.to_thread.run_sync(_in_netns, ns, bound_sockets)
    await env.dns.add_sandbox("c1", _path(ns), "s1")  # the address can be bound again
    assert addrs(await query(ns, "web", tcp=True)) == {"172.29.0.2"}


async def test_sandboxes_with_different_scopes(env: Env, netns_factory: Callable[[], str]) -> None:
    ns1, ns2 = netns_factory(), netns_factory()
    await env.dns.add_sandbox("c1", _path(ns1), "s1")
    await env.dns.add_sandbox("c2", _path(ns2), "s2")
    assert addrs(await query(ns1, "web")) == {"172.29.0.2"}
    assert addrs(await query(ns2, "web")) == {"172.29.0.12"}
    assert (await query(ns2, "db")).rcode() == dns.rcode.NXDOMAIN  # not in s2: the upstream's answer
    # Adding the same key with the same netns only changes how it sees names.
    await env.dns.add_sandbox("c2", _path(ns2), "s1")
    assert addrs(await query(ns2, "web")) == {"172.29.0.2"}


async def test_internal_sandbox_and_own_upstreams(env: Env, netns_factory: Callable[[], str]) -> None:
    ns1, ns2 = netns_factory(), netns_factory()
    await env.dns.add_sandbox("c1", _path(ns1), "s1", forward=False)
    assert (await query(ns1, "example.test")).rcode() == dns.rcode.SERVFAIL
    assert addrs(await query(ns1, "web")) == {"172.29.0.2"}
    other = Upstream()
    await env.tg.start(other.serve)
    await env.dns.add_sandbox("c2", _path(ns2), "s1", upstreams=[("127.0.0.1", other.port)])
    assert addrs(await query(ns2, "example.test")) == {"192.0.2.55"}
    assert other.seen and not env.upstream.seen


async def test_add_sandbox_errors_leave_no_thread_in_another_netns(
    env: Env, netns_factory: Callable[[], str], tmp_path: Any
) -> None:
    host_ns = _netns_inode("/proc/self/ns/net")
    with pytest.raises(FileNotFoundError):
        await env.dns.add_sandbox("x", "/run/netns/berthdns-does-not-exist", "s1")
    not_ns = tmp_path / "plain-file"
    not_ns.write_text("")
    with pytest.raises(OSError):
        await env.dns.add_sandbox("x", str(not_ns), "s1")
    ns = netns_factory()
    await env.dns.add_sandbox("c1", _path(ns), "s1")
    with pytest.raises(OSError):  # 127.0.0.11:53 is taken in that netns by now
        await env.dns.add_sandbox("c1-again", _path(ns), "s1")
    for task in os.listdir("/proc/self/task"):
        assert _netns_inode(f"/proc/self/task/{task}/ns/net") == host_ns, task
    assert addrs(await query(ns, "web")) == {"172.29.0.2"}


def _free_port_pair() -> int:
    for _ in range(50):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t,
        ):
            u.bind(("127.0.0.1", 0))
            try:
                t.bind(("127.0.0.1", u.getsockname()[1]))
            except OSError:
                continue
            return int(u.getsockname()[1])
    raise RuntimeError("no free port pair")


async def test_a_query_forwarded_to_ourselves_does_not_loop() -> None:
    # A sandbox in berthd's own netns whose upstream is the sandbox's own listener (a host
    # resolv.conf naming an address the server listens on): the forwarded query comes back in.
    class Counting(Records):
        asked = 0

        def lookup(self, scope: str, name: str) -> list[A | AAAA] | None:
            self.asked += 1
            return super().lookup(scope, name)

    port = _free_port_pair()
    records = Counting()
    server = EmbeddedDns(records, [("127.0.0.1", port)], timeout=0.5, address="127.0.0.1", port=port)
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        await server.add_sandbox("self", "/proc/self/ns/net", "s1")
        q = dns.message.make_query("example.test", "A")
        with anyio.fail_after(3):
            r = await anyio.to_thread.run_sync(dns.query.udp, q, "127.0.0.1", 2.0, port)
        assert r.rcode() == dns.rcode.SERVFAIL
        assert records.asked == 1  # the looped copy was dropped, not answered or forwarded again
        tg.cancel_scope.cancel()


async def test_stopping_the_server_closes_every_listener(netns_factory: Callable[[], str]) -> None:
    ns = netns_factory()
    server = EmbeddedDns(Records(), [])
    with pytest.raises(RuntimeError):
        await server.add_sandbox("c1", _path(ns), "s1")
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        await server.add_sandbox("c1", _path(ns), "s1")
        assert addrs(await query(ns, "web")) == {"172.29.0.2"}
        tg.cancel_scope.cancel()
    with pytest.raises(ConnectionRefusedError):
        await query(ns, "web", tcp=True)


BENCH = r"""
import json, socket, sys, time
import dns.message
n, window = int(sys.argv[1]), int(sys.argv[2])
base = dns.message.make_query("web", "A").to_wire()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.11", 53))
s.settimeout(2)
def q(i): return i.to_bytes(2, "big") + base[2:]
# sequential: one in flight (latency)
t = time.perf_counter()
for i in range(n // 4):
    s.send(q(i))
    s.recv(512)
seq = (n // 4) / (time.perf_counter() - t)
# pipelined: `window` in flight (throughput)
sent = got = lost = 0
t = time.perf_counter()
while sent < window:
    s.send(q(sent)); sent += 1
while got + lost < n:
    try:
        s.recv(512); got += 1
    except TimeoutError:
        lost += window
    if sent < n:
        s.send(q(sent)); sent += 1
pipe = got / (time.perf_counter() - t)
print(json.dumps({"sequential_qps": round(seq), "pipelined_qps": round(pipe), "lost": lost}))
"""


async def test_throughput_from_records(env: Env, netns_factory: Callable[[], str]) -> None:
    ns = netns_factory()
    await env.dns.add_sandbox("c1", _path(ns), "s1")
    proc = await anyio.run_process(["ip", "netns", "exec", ns, sys.executable, "-c", BENCH, "20000", "32"])
    result = json.loads(proc.stdout)
    print(f"\nembedded DNS, A from records over UDP inside a netns: {result}")
    assert result["sequential_qps"] > 1000 and result["pipelined_qps"] > 2000
