"""The embedded DNS answer logic: records to answers, forwarding decisions, garbage, wire codec."""

from __future__ import annotations

import ipaddress
import logging
import random
import struct
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from networks_svc import dnswire
from networks_svc.dns import EmbeddedDns, Forward, Reply, answer, decide, handle_query, read_resolv_conf

A = ipaddress.IPv4Address
AAAA = ipaddress.IPv6Address


class Records:
    """Two scopes that see `web` differently; `v4only` has no IPv6; `ghost` has no address."""

    def __init__(self) -> None:
        self.names: dict[str, dict[str, list[A | AAAA]]] = {
            "c1": {
                "web": [A("172.30.0.2"), AAAA("fd00:30::2")],
                "db": [A("172.30.0.3")],
                "v4only": [A("172.30.0.4")],
                "ghost": [],
                "many": [A(f"10.9.{i // 250}.{i % 250 + 1}") for i in range(100)],
                "a.b": [A("172.30.0.9")],
            },
            "c2": {"web": [A("172.31.0.2")]},
        }
        self.rev: dict[str, dict[A | AAAA, str]] = {
            "c1": {A("172.30.0.2"): "web.net1", AAAA("fd00:30::2"): "web.net1."},
            "c2": {A("172.31.0.2"): "web.net2"},
        }
        self.asked: list[str] = []

    def lookup(self, scope: str, name: str) -> list[A | AAAA] | None:
        self.asked.append(name)
        return self.names.get(scope, {}).get(name)

    def reverse(self, scope: str, addr: A | AAAA) -> str | None:
        return self.rev.get(scope, {}).get(addr)


class Broken:
    def lookup(self, scope: str, name: str) -> list[A | AAAA] | None:
        raise RuntimeError("boom")

    def reverse(self, scope: str, addr: A | AAAA) -> str | None:
        raise RuntimeError("boom")


def ask(name: str, rdtype: str, *, scope: str = "c1", tcp: bool = False, edns: int | bool = False,
        payload: int = 1232, records: Records | None = None,
        forward: bool = True) -> tuple[Reply | Forward | None, dns.message.QueryMessage]:
    q = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload)
    return handle_query(q.to_wire(), scope, records or Records(), tcp=tcp, forward=forward), q


def reply_of(verdict: Reply | Forward | None) -> dns.message.Message:
    assert isinstance(verdict, Reply), verdict
    return dns.message.from_wire(verdict.wire)


def addrs(msg: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in msg.answer for rd in rrset}


def test_a_and_aaaa_for_known_names() -> None:
    v, q = ask("web", "A")
    r = reply_of(v)
    assert r.id == q.id and r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.QR and r.flags & dns.flags.RA and r.flags & dns.flags.RD
    assert not r.flags & dns.flags.AA and not r.flags & dns.flags.TC
    assert addrs(r) == {"172.30.0.2"}
    assert r.answer[0].ttl == 600 and r.answer[0].name == q.question[0].name
    assert r.question == q.question
    assert addrs(reply_of(ask("web", "AAAA")[0])) == {"fd00:30::2"}


def test_names_are_case_insensitive_and_dot_tolerant() -> None:
    rec = Records()
    v, _ = ask("WeB.", "A", records=rec)
    r = reply_of(v)
    assert addrs(r) == {"172.30.0.2"}
    assert r.answer[0].name.to_text() == "WeB."  # the client's spelling is echoed
    assert rec.asked == ["web"]
    assert decide(rec, "c1", "web", dnswire.TYPE_A, dnswire.CLASS_IN) == [A("172.30.0.2")]
    assert addrs(reply_of(ask("a.B", "A")[0])) == {"172.30.0.9"}


def test_known_name_without_that_address_is_empty_noerror() -> None:
    for name, rdtype in (("v4only", "AAAA"), ("ghost", "A"), ("ghost", "AAAA"), ("db", "MX")):
        r = reply_of(ask(name, rdtype)[0])
        assert r.rcode() == dns.rcode.NOERROR and not r.answer, (name, rdtype)


def test_scopes_see_different_records() -> None:
    assert addrs(reply_of(ask("web", "A", scope="c2")[0])) == {"172.31.0.2"}
    assert isinstance(ask("db", "A", scope="c2")[0], Forward)
    assert isinstance(ask("web", "A", scope="nobody")[0], Forward)


def test_ptr_for_known_addresses() -> None:
    r = reply_of(ask("2.0.30.172.in-addr.arpa", "PTR")[0])
    assert [rd.to_text() for rd in r.answer[0]] == ["web.net1."] and r.answer[0].ttl == 600
    name6 = dns.reversename.from_address("fd00:30::2").to_text()
    assert [rd.to_text() for rd in reply_of(ask(name6, "PTR")[0]).answer[0]] == ["web.net1."]
    assert [rd.to_text() for rd in reply_of(ask("2.0.31.172.in-addr.arpa", "PTR", scope="c2")[0])
            .answer[0]] == ["web.net2."]
    for other in ("9.0.30.172.in-addr.arpa", "0.30.172.in-addr.arpa", "x.0.30.172.in-addr.arpa",
                  "300.0.30.172.in-addr.arpa", "1.0.0.ip6.arpa"):
        assert isinstance(ask(other, "PTR")[0], Forward), other


def test_everything_else_is_forwarded_with_a_servfail_ready() -> None:
    for name, rdtype in (("example.com", "A"), ("web", "TXT"), ("web", "SRV"), ("nope", "AAAA"),
                         (".", "NS"), ("web", "ANY")):
        v, q = ask(name, rdtype, edns=0)
        assert isinstance(v, Forward), (name, rdtype)
        assert v.query == q.to_wire() and v.max_udp == 1232
        sf = dns.message.from_wire(v.servfail)
        assert sf.id == q.id and sf.rcode() == dns.rcode.SERVFAIL and sf.question == q.question
    v, _ = ask("example.com", "A")
    assert isinstance(v, Forward) and v.max_udp == 512


def test_chaos_class_is_forwarded() -> None:
    q = dns.message.make_query("web", "A", rdclass="CH")
    assert isinstance(handle_query(q.to_wire(), "c1", Records(), tcp=False), Forward)


def test_internal_networks_answer_servfail_instead_of_forwarding() -> None:
    r = reply_of(ask("example.com", "A", forward=False)[0])
    assert r.rcode() == dns.rcode.SERVFAIL
    assert addrs(reply_of(ask("web", "A", forward=False)[0])) == {"172.30.0.2"}


def test_records_failure_is_servfail_not_a_crash() -> None:
    q = dns.message.make_query("web", "A")
    r = reply_of(handle_query(q.to_wire(), "c1", Broken(), tcp=False))
    assert r.rcode() == dns.rcode.SERVFAIL and r.id == q.id


def test_udp_answers_are_truncated_to_the_client_size_tcp_ones_are_not() -> None:
    r = reply_of(ask("many", "A")[0])
    assert r.flags & dns.flags.TC and 0 < len(r.answer[0]) < 100
    assert len(r.to_wire()) <= 512
    v, _ = ask("many", "A", edns=0, payload=4096)
    assert isinstance(v, Reply) and len(v.wire) > 512
    r = reply_of(v)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 100 and r.edns == 0
    r = reply_of(ask("many", "A", tcp=True)[0])
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 100
    # An EDNS size below 512 still gets 512.
    v, _ = ask("many", "A", edns=0, payload=100)
    assert isinstance(v, Reply) and 400 < len(v.wire) <= 512


def test_answers_are_shuffled() -> None:
    orders = {tuple(rd.to_text() for rd in reply_of(ask("many", "A", tcp=True)[0]).answer[0])
              for _ in range(5)}
    assert len(orders) > 1


@pytest.mark.parametrize("name,rdtype,edns", [
    ("web", "A", False), ("WEB", "AAAA", 0), ("v4only", "AAAA", 0), ("ghost", "A", False),
    ("db", "MX", 0), ("2.0.30.172.in-addr.arpa", "PTR", False), ("many", "A", 0),
])
def test_fast_path_agrees_with_dnspython(name: str, rdtype: str, edns: int | bool) -> None:
    q = dns.message.make_query(name, rdtype, use_edns=edns)
    for tcp in (False, True):
        fast = reply_of(handle_query(q.to_wire(), "c1", Records(), tcp=tcp))
        slow = answer(q, "c1", Records())
        assert slow is not None
        slow = dns.message.from_wire(slow.to_wire(max_size=65535))
        truncated = not tcp and name == "many"  # 100 A records do not fit 1232 bytes
        assert bool(fast.flags & dns.flags.TC) == truncated
        assert fast.id == slow.id and fast.flags & ~dns.flags.TC == slow.flags
        assert fast.rcode() == slow.rcode()
        assert fast.question == slow.question and fast.edns == slow.edns
        if not truncated:
            assert [(rr.name, rr.rdtype, rr.ttl, {rd.to_text() for rd in rr}) for rr in fast.answer] == \
                   [(rr.name, rr.rdtype, rr.ttl, {rd.to_text() for rd in rr}) for rr in slow.answer]


def _two_question_query(qid: int) -> bytes:
    # dnswire declines two questions (the second one compressed); dnspython parses and refuses.
    header = struct.pack("!HHHHHH", qid, 0x0100, 2, 0, 0, 0)
    qname = b"\x03web\x00"
    return header + qname + b"\x00\x01\x00\x01" + b"\xc0\x0c\x00\x1c\x00\x01"


def test_slow_path_two_questions_is_formerr() -> None:
    r = handle_query(_two_question_query(0x4242), "c1", Records(), tcp=False)
    assert isinstance(r, Reply)
    assert r.wire[:2] == b"\x42\x42" and r.wire[3] & 0xF == dns.rcode.FORMERR


def test_slow_path_answers_odd_but_valid_queries() -> None:
    # A query whose additional section has a non-OPT record: dnswire declines, dnspython answers.
    q = dns.message.make_query("web", "A")
    q.additional.append(dns.rrset.from_text("x.", 0, "IN", "A", "1.2.3.4"))
    v = handle_query(q.to_wire(), "c1", Records(), tcp=False)
    assert addrs(reply_of(v)) == {"172.30.0.2"}
    q = dns.message.make_query("example.org", "A")
    q.additional.append(dns.rrset.from_text("x.", 0, "IN", "A", "1.2.3.4"))
    v = handle_query(q.to_wire(), "c1", Records(), tcp=False)
    assert isinstance(v, Forward) and v.question is None
    assert dns.message.from_wire(v.servfail).rcode() == dns.rcode.SERVFAIL


def test_other_opcodes_are_notimp() -> None:
    q = dns.message.make_query("web", "A")
    q.set_opcode(dns.opcode.NOTIFY)
    r = reply_of(handle_query(q.to_wire(), "c1", Records(), tcp=False))
    assert r.rcode() == dns.rcode.NOTIMP and r.id == q.id


def test_garbage_is_dropped() -> None:
    good = dns.message.make_query("web", "A", use_edns=0).to_wire()
    resp = dns.message.make_response(dns.message.from_wire(good)).to_wire()
    noq = struct.pack("!HHHHHH", 1, 0x0100, 0, 0, 0, 0)
    for junk in (b"", b"\x00", b"hello world", good[:11], good[:20], resp, noq, b"\xff" * 600,
                 good + b"\x00" * 3):
        assert handle_query(junk, "c1", Records(), tcp=False) is None, junk


def test_random_mutations_never_raise(caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(1234)
    seeds = [dns.message.make_query(n, t, use_edns=e).to_wire()
             for n in ("web", "example.com", "2.0.30.172.in-addr.arpa") for t in ("A", "AAAA", "PTR")
             for e in (False, 0)]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            op = rng.randint(0, 2)
            if op == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op == 1 and data:
                del data[rng.randrange(len(data)):]
            else:
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        v = handle_query(bytes(data), "c1", Records(), tcp=rng.random() < 0.5)
        if isinstance(v, Reply):
            assert v.wire[:2] == bytes(data[:2])
    for _ in range(500):
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 80)))
        handle_query(junk, "c1", Records(), tcp=False)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no swallowed crash


def test_a_bug_in_records_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    class Odd(Records):
        def lookup(self, scope: str, name: str) -> list[A | AAAA] | None:
            return [object()]  # type: ignore[list-item]

        def reverse(self, scope: str, addr: A | AAAA) -> str | None:
            return 42  # type: ignore[return-value]

    q = dns.message.make_query("web", "A")
    assert reply_of(handle_query(q.to_wire(), "c1", Odd(), tcp=False)).rcode() == dns.rcode.SERVFAIL
    q = dns.message.make_query("2.0.30.172.in-addr.arpa", "PTR")
    assert handle_query(q.to_wire(), "c1", Odd(), tcp=False) is None
    assert any("failed to process" in r.getMessage() for r in caplog.records)


def test_response_matches() -> None:
    q = dns.message.make_query("Example.COM", "A")
    wire = q.to_wire()
    question = dnswire.parse_query(wire)
    assert question is not None
    resp = dns.message.make_response(q)
    resp.question[0].name = dns.name.from_text("example.com")
    good = resp.to_wire()
    assert dnswire.response_matches(wire, question.question, good)
    assert not dnswire.response_matches(wire, question.question, b"\x00\x00" + good[2:])  # id
    assert not dnswire.response_matches(wire, question.question, wire)  # not a response
    other = dns.message.make_response(dns.message.make_query("example.net", "A"))
    other.id = q.id
    assert not dnswire.response_matches(wire, question.question, other.to_wire())
    aaaa = dns.message.make_response(dns.message.make_query("example.com", "AAAA"))
    aaaa.id = q.id
    assert not dnswire.response_matches(wire, question.question, aaaa.to_wire())
    assert not dnswire.response_matches(wire, question.question, good[:5])


def test_reverse_address_and_encode_name() -> None:
    assert dnswire.reverse_address("4.3.2.1.in-addr.arpa") == A("1.2.3.4")
    assert dnswire.reverse_address("04.3.2.1.in-addr.arpa") is None
    assert dnswire.reverse_address("3.2.1.in-addr.arpa") is None
    full = dns.reversename.from_address("2001:db8::1").to_text(omit_final_dot=True)
    assert dnswire.reverse_address(full) == AAAA("2001:db8::1")
    assert dnswire.reverse_address("g" + full[1:]) is None
    assert dnswire.encode_name("web.net1") == b"\x03web\x04net1\x00"
    assert dnswire.encode_name("web.net1.") == b"\x03web\x04net1\x00"
    assert dnswire.encode_name("a..b") is None and dnswire.encode_name("x" * 64) is None


def test_name_text() -> None:
    assert dnswire.name_text([b"WeB", b"Net1"]) == "web.net1"
    assert dnswire.name_text([b"web", b""]) == "web"
    assert dnswire.name_text([b"we.b"]) is None and dnswire.name_text([b"w\xc3\xa9b"]) is None
    q = dns.message.make_query("we\\.b", "A")  # a dot inside a label is never one of our names
    assert isinstance(handle_query(q.to_wire(), "c1", Records(), tcp=False), Forward)


def test_read_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example.org\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\n"
                    "nameserver bogus\nnameserver ::1\nnameserver 10.0.0.9\noptions ndots:2\n")
    assert read_resolv_conf(str(conf)) == [("10.0.0.1", 53), ("fe80::1%eth0", 53), ("::1", 53)]
    assert read_resolv_conf(str(tmp_path / "missing")) == []


def test_upstreams_must_be_ip_literals() -> None:
    with pytest.raises(ValueError, match="IP address"):
        EmbeddedDns(Records(), [("dns.example.com", 53)])
    with pytest.raises(ValueError):
        EmbeddedDns(Records(), [("10.0.0.1", 0)])
    assert EmbeddedDns(Records(), [("10.0.0.1", 5353)]).upstreams == (("10.0.0.1", 5353),)


def test_edns_answers_carry_opt() -> None:
    v, _ = ask("web", "A", edns=0)
    r = reply_of(v)
    assert r.edns == 0 and r.payload == dnswire.OUR_PAYLOAD and r.answer[0].rdtype == dns.rdatatype.A
    assert reply_of(ask("web", "A")[0]).edns == -1
