"""Docker's embedded DNS server: 127.0.0.11:53 inside each sandbox, names from the networks records.

One EmbeddedDns serves every sandbox (container netns) from berthd's event loop. For each
sandbox a worker thread enters the netns, binds a UDP and a TCP socket on 127.0.0.11:53 and
leaves again; the sockets keep belonging to that netns, so the server answers inside it while
it forwards from the host netns, where the host's resolvers (even loopback ones) are reachable.

Answers follow libnetwork's resolver: A/AAAA for the names the records know as seen by the
sandbox's scope (shuffled, TTL 600, RA set), NOERROR without answers for a known name with no
address of that type (and for MX), PTR for their addresses; every other query is forwarded to
the upstream resolvers (UDP, retried over TCP when truncated; TCP for TCP clients), trying the
next upstream on SERVFAIL/REFUSED/non-authoritative NXDOMAIN, SERVFAIL when none answers.
Packets that are not queries are dropped. The hot path (dnswire) does no thread hop and no
dnspython parse; dnspython handles the rare query shapes dnswire does not take.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import random
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from anyio.streams.buffered import BufferedByteReceiveStream

from networks_svc import dnswire

__all__ = [
    "DNS_ADDRESS",
    "DNS_PORT",
    "DnsRecords",
    "EmbeddedDns",
    "Forward",
    "Reply",
    "answer",
    "decide",
    "handle_query",
    "open_listeners",
    "read_resolv_conf",
]

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DNS_ADDRESS = "127.0.0.11"
DNS_PORT = 53
MAX_UPSTREAMS = 3  # libnetwork maxExtDNS, and resolv.conf's MAXNS
MAX_FORWARDS = 1024  # concurrent forwarded queries (libnetwork maxConcurrent)
MAX_TCP_CONNS = 128  # per sandbox
TCP_IDLE = 10.0  # seconds a client TCP connection may sit between queries
UDP_BATCH = 64  # datagrams handled per wakeup before yielding to the loop
CLONE_NEWNET = 0x40000000


class DnsRecords(Protocol):
    """What the networks service knows: names and addresses per sandbox scope.

    Both methods run on the event loop for every query: they must be fast, in-memory lookups.
    """

    def lookup(self, scope: str, name: str) -> list[Address] | None:
        """Addresses for `name` as seen by sandbox `scope` (None: not ours, forward upstream).

        `name` is lower-case, without the final dot. An empty list means the name is ours but
        has no address (the query is answered NOERROR without records, as Docker does).
        """

    def reverse(self, scope: str, addr: Address) -> str | None:
        """The name for `addr` as seen by sandbox `scope` (None: not ours, forward upstream)."""


# ---- answer logic: pure functions ------------------------------------------------------------


def decide(
    records: DnsRecords, scope: str, name: str | None, qtype: int, qclass: int
) -> list[dnswire.Record] | None:
    """The answer records for one question, or None to forward it upstream.

    An empty list is a NOERROR answer without records (a known name, no address of that type).
    """
    if name is None or qclass != dnswire.CLASS_IN:
        return None
    if qtype in (dnswire.TYPE_A, dnswire.TYPE_AAAA, dnswire.TYPE_MX):
        if not name:
            return None
        addrs = records.lookup(scope, name)
        if addrs is None:
            return None
        if qtype == dnswire.TYPE_MX:
            return []  # libnetwork: implicit MX (RFC 5321 5.1), the client then asks A/AAAA
        version = 4 if qtype == dnswire.TYPE_A else 6
        found: list[dnswire.Record] = [a for a in addrs if a.version == version]
        random.shuffle(found)  # round robin over aliases shared by several containers
        return found
    if qtype == dnswire.TYPE_PTR:
        addr = dnswire.reverse_address(name)
        if addr is None:
            return None
        target = records.reverse(scope, addr)
        if target is None:
            return None
        return [target]
    return None


def answer(query: dns.message.Message, scope: str, records: DnsRecords) -> dns.message.Message | None:
    """The response to a one-question query from `records`, or None to forward it upstream."""
    q = query.question[0]
    found = decide(records, scope, dnswire.name_text(q.name.labels), q.rdtype, q.rdclass)
    if found is None:
        return None
    resp = dns.message.make_response(query, recursion_available=True, our_payload=dnswire.OUR_PAYLOAD)
    if not found:
        return resp
    rrset = dns.rrset.RRset(q.name, dns.rdataclass.IN, q.rdtype)
    for rec in found:
        text = str(rec) if isinstance(rec, Address) else dns.name.from_text(rec).to_text()
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, q.rdtype, text), dnswire.TTL)
    resp.answer.append(rrset)
    return resp


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the client with these bytes."""

    wire: bytes


@dataclass(frozen=True, slots=True)
class Forward:
    """Not ours: send `query` upstream, check answers against `question`, else send `servfail`."""

    query: bytes
    question: bytes | None  # the raw question section; None when dnswire could not parse it
    max_udp: int  # the largest UDP answer the client takes
    servfail: bytes


def _servfail_fast(q: dnswire.Question) -> bytes:
    return dnswire.build_response(q, dnswire.RCODE_SERVFAIL)


def handle_query(
    data: bytes, scope: str, records: DnsRecords, *, tcp: bool, forward: bool = True
) -> Reply | Forward | None:
    """What to do with one query packet: Reply, Forward upstream, or None to drop it.

    `forward` False (internal networks) answers SERVFAIL instead of forwarding, as libnetwork
    does when proxyDNS is off. Never raises: a packet that trips a bug is dropped and logged.
    """
    try:
        return _handle(data, scope, records, tcp=tcp, forward=forward)
    except Exception:
        log.exception("embedded DNS: dropping a query that failed to process")
        return None


def _handle(
    data: bytes, scope: str, records: DnsRecords, *, tcp: bool, forward: bool
) -> Reply | Forward | None:
    q = dnswire.parse_query(data)
    if q is None:
        return _handle_slow(data, scope, records, tcp=tcp, forward=forward)
    max_size = 65535 if tcp else dnswire.udp_limit(q.edns_payload)
    try:
        found = decide(records, scope, q.name, q.qtype, q.qclass)
    except Exception:
        log.exception("embedded DNS: records lookup failed for %r", q.name)
        return Reply(_servfail_fast(q))
    if found is not None:
        return Reply(dnswire.build_response(q, dnswire.RCODE_NOERROR, found, max_size=max_size))
    if not forward:
        return Reply(_servfail_fast(q))
    return Forward(data, q.question, dnswire.udp_limit(q.edns_payload), _servfail_fast(q))


def _handle_slow(
    data: bytes, scope: str, records: DnsRecords, *, tcp: bool, forward: bool
) -> Reply | Forward | None:
    try:
        query = dns.message.from_wire(data)
    except Exception:  # dnspython raises many kinds on garbage; a bad packet is only dropped
        return None
    if query.flags & dns.flags.QR or not query.question:
        return None
    max_udp = max(dnswire.MIN_UDP, query.payload) if query.edns >= 0 else dnswire.MIN_UDP

    def reply(resp: dns.message.Message) -> Reply | None:
        try:
            return Reply(resp.to_wire(max_size=65535 if tcp else max_udp, prefer_truncation=not tcp))
        except dns.exception.DNSException:
            return None

    def error(rcode: dns.rcode.Rcode) -> Reply | None:
        resp = dns.message.make_response(query, recursion_available=True, our_payload=dnswire.OUR_PAYLOAD)
        resp.set_rcode(rcode)
        return reply(resp)

    if query.opcode() != dns.opcode.QUERY:
        return error(dns.rcode.NOTIMP)
    if len(query.question) > 1:
        return error(dns.rcode.FORMERR)
    try:
        resp = answer(query, scope, records)
    except Exception:
        log.exception("embedded DNS: records lookup failed for %s", query.question[0].name)
        return error(dns.rcode.SERVFAIL)
    if resp is not None:
        return reply(resp)
    servfail = error(dns.rcode.SERVFAIL)
    if servfail is None:
        return None
    if not forward:
        return servfail
    return Forward(data, None, max_udp, servfail.wire)


# ---- upstream resolvers ----------------------------------------------------------------------


def read_resolv_conf(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The `nameserver` addresses of a resolv.conf (first three, port 53); blocking."""
    servers: list[tuple[str, int]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        log.warning("embedded DNS: cannot read %s: %s", path, e)
        return servers
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and _is_ip(fields[1]):
            servers.append((fields[1], DNS_PORT))
    return servers[:MAX_UPSTREAMS]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _checked_upstreams(upstreams: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    # IP literals only: connecting never does a (blocking, possibly recursive) name lookup.
    for host, port in upstreams:
        if not _is_ip(host) or not 0 < port < 65536:
            raise ValueError(f"upstream DNS server must be an IP address and port: {host!r}:{port}")
    return tuple((h, p) for h, p in upstreams)[:MAX_UPSTREAMS]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def _exchange_udp(host: str, port: int, wire: bytes, question: bytes | None) -> bytes:
    """One query over UDP from the host netns; waits for a matching answer (caller times out)."""
    with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.connect((host, port))
        s.send(wire)
        while True:
            await anyio.wait_readable(s)
            try:
                resp = s.recv(65535)
            except BlockingIOError:
                continue
            # Ignore stray or spoofed datagrams; a connected socket only sees the upstream's.
            if dnswire.response_matches(wire, question, resp):
                return resp


async def _exchange_tcp(host: str, port: int, wire: bytes, question: bytes | None) -> bytes:
    """One length-prefixed query over TCP (caller times out)."""
    async with await anyio.connect_tcp(host, port) as stream:
        await stream.send(len(wire).to_bytes(2, "big") + wire)
        buf = BufferedByteReceiveStream(stream)
        while True:
            size = int.from_bytes(await buf.receive_exactly(2), "big")
            resp = await buf.receive_exactly(size)
            if dnswire.response_matches(wire, question, resp):
                return resp


# ---- netns listeners -------------------------------------------------------------------------


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _bind_in_netns(netns_path: str, host: str, port: int) -> tuple[socket.socket, socket.socket]:
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                udp.bind((host, port))
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((host, port))
                tcp.listen(128)
                udp.setblocking(False)
                tcp.setblocking(False)
            except BaseException:
                udp.close()
                tcp.close()
                raise
        finally:
            _setns(own)  # the sockets stay in the target netns; this thread goes home
    finally:
        os.close(own)
    return udp, tcp


def open_listeners(
    netns_path: str, host: str = DNS_ADDRESS, port: int = DNS_PORT
) -> tuple[socket.socket, socket.socket]:
    """Bound UDP and listening TCP sockets on host:port inside the netns at `netns_path`; blocking.

    The setns dance runs in a thread of its own that ends afterwards, so no pool thread can
    ever be left in a container's netns even if switching back failed.
    """
    result: list[tuple[socket.socket, socket.socket]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(_bind_in_netns(netns_path, host, port))
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run, name="berth-dns-setns", daemon=True)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return result[0]


# ---- the server ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Sandbox:
    key: str
    netns_path: str
    scope: str
    upstreams: tuple[tuple[str, int], ...] | None
    forward: bool
    udp: socket.socket
    tcp: socket.socket
    cancel: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    tcp_conns: int = 0


class EmbeddedDns:
    """The embedded DNS server of every sandbox on user-defined networks."""

    def __init__(
        self,
        records: DnsRecords,
        upstreams: Sequence[tuple[str, int]] | None = None,
        *,
        timeout: float = 4.0,
        address: str = DNS_ADDRESS,
        port: int = DNS_PORT,
    ) -> None:
        """`upstreams` None: the host's /etc/resolv.conf, read when run() starts.

        `timeout` bounds each exchange with one upstream (libnetwork extIOTimeout).
        """
        self._records = records
        self._upstreams = None if upstreams is None else _checked_upstreams(upstreams)
        self._timeout = timeout
        self._address = address
        self._port = port
        self._tg: anyio.abc.TaskGroup | None = None
        self._sandboxes: dict[str, _Sandbox] = {}
        self._lock = anyio.Lock()
        self._forwarding = 0
        # Queries we sent upstream and await: one arriving at a listener is our own looping back.
        self._inflight: set[bytes] = set()

    @property
    def upstreams(self) -> tuple[tuple[str, int], ...]:
        """The default upstream resolvers (known once run() started)."""
        return self._upstreams or ()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; every sandbox listener lives and dies inside this call."""
        if self._upstreams is None:
            self._upstreams = tuple(await anyio.to_thread.run_sync(read_resolv_conf))
            log.info("embedded DNS: upstream resolvers %s", self._upstreams)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None
            for sb in self._sandboxes.values():
                _close(sb)
            self._sandboxes.clear()

    async def add_sandbox(
        self,
        key: str,
        netns_path: str,
        scope: str,
        *,
        upstreams: Sequence[tuple[str, int]] | None = None,
        forward: bool = True,
    ) -> None:
        """Listen on 127.0.0.11:53 UDP and TCP inside the netns at `netns_path`, answering as `scope`.

        `upstreams` replaces the default resolvers for this sandbox (`docker run --dns`);
        `forward` False answers SERVFAIL for names not ours (internal networks). Adding a key
        again with the same netns only updates scope and options.
        """
        checked = None if upstreams is None else _checked_upstreams(upstreams)
        async with self._lock:
            tg = self._tg
            if tg is None:
                raise RuntimeError("embedded DNS is not running")
            old = self._sandboxes.get(key)
            if old is not None:
                if old.netns_path == netns_path:
                    old.scope, old.upstreams, old.forward = scope, checked, forward
                    return
                await self._remove(key)
            udp, tcp = await anyio.to_thread.run_sync(open_listeners, netns_path, self._address, self._port)
            sb = _Sandbox(key, netns_path, scope, checked, forward, udp, tcp)
            try:
                await tg.start(self._serve, sb)
            except BaseException:
                _close(sb)
                raise
            self._sandboxes[key] = sb
        log.debug("embedded DNS: serving sandbox %s (%s) as %s", key, netns_path, scope)

    async def remove_sandbox(self, key: str) -> None:
        """Stop answering in that sandbox and close its sockets; unknown keys are ignored."""
        async with self._lock:
            await self._remove(key)

    async def _remove(self, key: str) -> None:
        sb = self._sandboxes.pop(key, None)
        if sb is None:
            return
        sb.cancel.cancel()
        await sb.done.wait()

    # -- serving

    async def _serve(self, sb: _Sandbox, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        started = False
        try:
            with sb.cancel:
                listener = await anyio.abc.SocketListener.from_socket(sb.tcp)
                async with listener, anyio.create_task_group() as tg:
                    tg.start_soon(self._serve_tcp, sb, listener, tg)
                    task_status.started()
                    started = True
                    await self._serve_udp(sb, tg)
        except Exception:
            if not started:
                raise
            # One sandbox's failure must not take the resolver of every other one down.
            log.exception("embedded DNS: sandbox %s stopped answering", sb.key)
        finally:
            _close(sb)
            sb.done.set()

    async def _serve_udp(self, sb: _Sandbox, tg: anyio.abc.TaskGroup) -> None:
        sock = sb.udp
        buf = bytearray(65535)
        view = memoryview(buf)
        while True:
            await anyio.wait_readable(sock)
            for _ in range(UDP_BATCH):
                try:
                    n, addr = sock.recvfrom_into(buf)
                except BlockingIOError:
                    break
                except OSError:
                    continue
                data = bytes(view[:n])
                if data in self._inflight:
                    continue
                verdict = handle_query(data, sb.scope, self._records, tcp=False, forward=sb.forward)
                if isinstance(verdict, Reply):
                    _sendto(sock, verdict.wire, addr)
                elif verdict is not None:
                    if self._forwarding >= MAX_FORWARDS:
                        _sendto(sock, verdict.servfail, addr)
                    else:
                        tg.start_soon(self._forward_udp, sb, verdict, addr)
            else:
                await anyio.lowlevel.checkpoint()  # a flood must not starve the other sandboxes

    async def _forward_udp(self, sb: _Sandbox, fwd: Forward, addr: tuple[str, int]) -> None:
        try:
            resp = await self._forward(sb, fwd, tcp=False)
        except Exception:
            log.exception("embedded DNS: forwarding for sandbox %s", sb.key)
            resp = fwd.servfail
        _sendto(sb.udp, resp, addr)

    async def _serve_tcp(
        self, sb: _Sandbox, listener: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup
    ) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as e:  # e.g. EMFILE: back off instead of spinning
                log.warning("embedded DNS: accept in sandbox %s: %s", sb.key, e)
                await anyio.sleep(0.1)
                continue
            if sb.tcp_conns >= MAX_TCP_CONNS:
                await stream.aclose()
                continue
            sb.tcp_conns += 1
            tg.start_soon(self._tcp_conn, sb, stream)

    async def _tcp_conn(self, sb: _Sandbox, stream: anyio.abc.SocketStream) -> None:
        buf = BufferedByteReceiveStream(stream)
        try:
            async with stream:
                while True:
                    with anyio.move_on_after(TCP_IDLE) as idle:
                        size = int.from_bytes(await buf.receive_exactly(2), "big")
                        data = await buf.receive_exactly(size)
                    if idle.cancelled_caught:
                        return
                    verdict = None
                    if data not in self._inflight:
                        verdict = handle_query(data, sb.scope, self._records, tcp=True, forward=sb.forward)
                    if verdict is None:
                        return  # garbage on a stream: nothing after it can be framed reliably
                    if isinstance(verdict, Reply):
                        wire = verdict.wire
                    elif self._forwarding >= MAX_FORWARDS:
                        wire = verdict.servfail
                    else:
                        wire = await self._forward(sb, verdict, tcp=True)
                    await stream.send(len(wire).to_bytes(2, "big") + wire)
        except (
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
        ):
            pass
        except Exception:
            log.exception("embedded DNS: TCP client of sandbox %s", sb.key)
        finally:
            sb.tcp_conns -= 1

    # -- forwarding

    async def _forward(self, sb: _Sandbox, fwd: Forward, *, tcp: bool) -> bytes:
        """The upstreams' answer to `fwd` with the client's id, or its SERVFAIL."""
        upstreams = sb.upstreams if sb.upstreams is not None else self.upstreams
        client_id = fwd.query[:2]
        wire = os.urandom(2) + fwd.query[2:]  # our own id: answers must match what we sent
        best: bytes | None = None
        self._forwarding += 1
        self._inflight.add(wire)
        try:
            for host, port in upstreams:
                try:
                    resp = await self._exchange(host, port, wire, fwd, tcp=tcp)
                except (
                    OSError,
                    TimeoutError,
                    anyio.EndOfStream,
                    anyio.IncompleteRead,
                    anyio.BrokenResourceError,
                ) as e:
                    log.debug("embedded DNS: upstream %s:%d failed: %r", host, port, e)
                    continue
                rcode = resp[3] & 0xF
                if rcode == dnswire.RCODE_NOERROR or (
                    rcode == dnswire.RCODE_NXDOMAIN and resp[2] & (dnswire.FLAG_AA >> 8)
                ):
                    best = resp
                    break
                # SERVFAIL, REFUSED, a non-authoritative NXDOMAIN: ask the next one, keep the
                # most useful answer (NXDOMAIN first) in case nobody knows better.
                if best is None or (rcode == dnswire.RCODE_NXDOMAIN and best[3] & 0xF != rcode):
                    best = resp
        finally:
            self._inflight.discard(wire)
            self._forwarding -= 1
        if best is None:
            return fwd.servfail
        return client_id + best[2:]

    async def _exchange(self, host: str, port: int, wire: bytes, fwd: Forward, *, tcp: bool) -> bytes:
        if tcp:
            with anyio.fail_after(self._timeout):
                return await _exchange_tcp(host, port, wire, fwd.question)
        with anyio.fail_after(self._timeout):
            resp = await _exchange_udp(host, port, wire, fwd.question)
        if resp[2] & (dnswire.FLAG_TC >> 8):
            # Truncated: fetch it whole over TCP; if that does not fit the client's UDP size
            # either, the truncated one makes the client retry over TCP itself.
            try:
                with anyio.fail_after(self._timeout):
                    full = await _exchange_tcp(host, port, wire, fwd.question)
            except (
                OSError,
                TimeoutError,
                anyio.EndOfStream,
                anyio.IncompleteRead,
                anyio.BrokenResourceError,
            ) as e:
                log.debug("embedded DNS: TCP retry to %s:%d failed: %r", host, port, e)
            else:
                if len(full) <= fwd.max_udp:
                    return full
        return resp


def _sendto(sock: socket.socket, wire: bytes, addr: tuple[str, int]) -> None:
    try:
        sock.sendto(wire, addr)
    except OSError:
        pass  # a full buffer or a vanished client: DNS clients retry


def _close(sb: _Sandbox) -> None:
    sb.udp.close()
    sb.tcp.close()
