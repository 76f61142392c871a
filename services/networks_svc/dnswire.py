"""Hand-rolled DNS wire codec for the embedded DNS hot path: one-question queries and their answers.

dnspython parses and renders a query in ~180 µs, which caps a sandbox's resolver at a few
thousand queries a second. Nearly every query a container sends has one shape: a standard
query with one question and at most an EDNS OPT record. This module parses exactly that shape
and builds A/AAAA/PTR/empty/error answers by hand; anything else makes ``parse_query`` return
None and the caller falls back to dnspython. The unit tests check every answer built here
against dnspython's reading of it.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CLASS_IN",
    "FLAG_AA",
    "FLAG_QR",
    "FLAG_TC",
    "RCODE_FORMERR",
    "RCODE_NOERROR",
    "RCODE_NOTIMP",
    "RCODE_NXDOMAIN",
    "RCODE_REFUSED",
    "RCODE_SERVFAIL",
    "TYPE_A",
    "TYPE_AAAA",
    "TYPE_MX",
    "TYPE_OPT",
    "TYPE_PTR",
    "Question",
    "Record",
    "build_response",
    "encode_name",
    "name_text",
    "parse_query",
    "response_matches",
    "reverse_address",
    "udp_limit",
]

TYPE_A = 1
TYPE_PTR = 12
TYPE_MX = 15
TYPE_AAAA = 28
TYPE_OPT = 41
CLASS_IN = 1

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_CD = 0x0010
_OPCODE_MASK = 0x7800

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

TTL = 600  # what Docker's resolver answers with (libnetwork respTTL)
OUR_PAYLOAD = 1232  # EDNS UDP size we advertise (DNS flag day 2020)
MIN_UDP = 512

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength after a name
# Owner name of every answer: a compression pointer to the question name at offset 12.
_QNAME_PTR = b"\xc0\x0c"
# A label byte that can be part of a name we look up: letters, digits, '-' and '_'.
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")

_A_PREFIX = _QNAME_PTR + _RR_FIXED.pack(TYPE_A, CLASS_IN, TTL, 4)
_AAAA_PREFIX = _QNAME_PTR + _RR_FIXED.pack(TYPE_AAAA, CLASS_IN, TTL, 16)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Record = Address | str  # an A/AAAA address, or a PTR target name


@dataclass(frozen=True, slots=True)
class Question:
    """A parsed query of the common shape: header fields, its one question, its EDNS payload."""

    id: int
    flags: int
    question: bytes  # the raw question section (name, type, class), echoed in answers
    name: str | None  # lower-case dotted name without the final dot; None: not a plain name
    qtype: int
    qclass: int
    edns_payload: int | None  # the client's EDNS UDP size; None: no OPT record


def parse_query(data: bytes) -> Question | None:
    """Parse a standard one-question query; None for anything else (the caller tries dnspython)."""
    if len(data) < 17:
        return None
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & (FLAG_QR | _OPCODE_MASK) or qd != 1 or an or ns or ar > 1:
        return None
    pos = 12
    labels: list[bytes] = []
    end = len(data)
    while True:
        if pos >= end:
            return None
        n = data[pos]
        if n == 0:
            pos += 1
            break
        if n > 63:  # compression pointer or an extended label type: not the common shape
            return None
        label = data[pos + 1 : pos + 1 + n]
        if len(label) != n:
            return None
        labels.append(label)
        pos += 1 + n
    if pos - 12 > 255 or pos + 4 > end:
        return None
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    pos += 4
    question = data[12:pos]
    payload: int | None = None
    if ar:
        # The only additional record we take here is a version-0 EDNS OPT with the root owner.
        if pos + 11 > end or data[pos] != 0:
            return None
        rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos + 1)
        if rtype != TYPE_OPT or (ttl >> 16) & 0xFF != 0:
            return None
        pos += 11 + rdlen
        payload = rclass
    if pos != end:
        return None
    return Question(qid, flags, question, name_text(labels), qtype, qclass, payload)


def name_text(labels: Sequence[bytes]) -> str | None:
    """The lookup key for a name: lower-case, dotted, no final dot; None if a label has bytes
    no container name or reverse name has (dots, spaces, non-ASCII, escapes)."""
    if labels and labels[-1] == b"":
        labels = labels[:-1]
    for label in labels:
        if not _NAME_BYTES.issuperset(label):
            return None
    return b".".join(labels).lower().decode("ascii")


def udp_limit(edns_payload: int | None) -> int:
    """The largest UDP answer a client takes: its EDNS size, never below 512."""
    return MIN_UDP if edns_payload is None else max(MIN_UDP, edns_payload)


def encode_name(name: str) -> bytes | None:
    """Wire form of a dotted name (a final dot is optional); None if it is not a valid name."""
    text = name[:-1] if name.endswith(".") else name
    if not text:
        return b"\x00"
    out = bytearray()
    for label in text.split("."):
        raw = label.encode("ascii", "strict") if label.isascii() else b""
        if not raw or len(raw) > 63:
            return None
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out) if len(out) <= 255 else None


def _rr(record: Record) -> bytes | None:
    if isinstance(record, ipaddress.IPv4Address):
        return _A_PREFIX + record.packed
    if isinstance(record, ipaddress.IPv6Address):
        return _AAAA_PREFIX + record.packed
    target = encode_name(record)
    if target is None:
        return None
    return _QNAME_PTR + _RR_FIXED.pack(TYPE_PTR, CLASS_IN, TTL, len(target)) + target


def build_response(
    q: Question, rcode: int, records: Sequence[Record] = (), *, max_size: int = 65535
) -> bytes:
    """An answer to `q`: its question echoed, `records` as answers owned by the question name.

    Flags follow dnspython's make_response (QR, RD and CD copied) plus RA as Docker sets it;
    an EDNS query gets an OPT record back. Answers that do not fit `max_size` are dropped
    from the end and TC is set, as Docker's truncateResp does for UDP.
    """
    flags = FLAG_QR | FLAG_RA | (q.flags & (FLAG_RD | FLAG_CD)) | (rcode & 0xF)
    opt = b"" if q.edns_payload is None else b"\x00" + _RR_FIXED.pack(TYPE_OPT, OUR_PAYLOAD, 0, 0)
    answers = [rr for rr in map(_rr, records) if rr is not None]
    room = max_size - 12 - len(q.question) - len(opt)
    size = sum(map(len, answers))
    while answers and size > room:
        size -= len(answers.pop())
        flags |= FLAG_TC
    header = _HEADER.pack(q.id, flags, 1, len(answers), 0, 1 if opt else 0)
    return b"".join((header, q.question, *answers, opt))


def response_matches(sent: bytes, question: bytes | None, resp: bytes) -> bool:
    """Whether `resp` answers the query `sent` (same id, QR set, same question up to case)."""
    if len(resp) < 12 or resp[:2] != sent[:2] or not resp[2] & 0x80:
        return False
    if question is None:
        return True
    qd = int.from_bytes(resp[4:6], "big")
    if qd == 0:  # FORMERR/NOTIMP answers may leave the question out
        return True
    got = resp[12 : 12 + len(question)]
    return qd == 1 and got[:-4].lower() == question[:-4].lower() and got[-4:] == question[-4:]


def reverse_address(name: str) -> Address | None:
    """The address a full reverse name stands for (in-addr.arpa / ip6.arpa), else None."""
    if name.endswith(".in-addr.arpa"):
        parts = name[:-13].split(".")
        if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
            return None
        try:
            return ipaddress.IPv4Address(".".join(reversed(parts)))
        except ValueError:
            return None
    if name.endswith(".ip6.arpa"):
        nibbles = name[:-9].split(".")
        if len(nibbles) != 32 or not all(len(n) == 1 and n in "0123456789abcdef" for n in nibbles):
            return None
        return ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16))
    return None
