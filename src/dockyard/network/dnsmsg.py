"""The little of the DNS wire format (RFC 1035) that the embedded DNS server needs: read a
query's question, and build an answer of A or PTR records, an empty answer, or an error.

Everything else (other record types, names that are not ours) is forwarded as it is, so no
more parsing is needed than the first question.
"""

from __future__ import annotations

import ipaddress
import struct

from dockyard.values import value

TYPE_A = 1
TYPE_PTR = 12
TYPE_AAAA = 28
CLASS_IN = 1

RCODE_OK = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3

#: docker's TTL for the names of its embedded server
TTL = 600


class BadMessage(ValueError):
    """Not a DNS query that can be answered."""


@value
class Question:
    id: int
    flags: int
    name: str            # lower case, no trailing dot
    qtype: int
    qclass: int
    end: int             # offset after the question in the message


def parse_query(msg: bytes) -> Question:
    """The first question of ``msg`` (a query: QR clear, at least one question)."""
    if len(msg) < 12:
        raise BadMessage("short message")
    ident, flags, qdcount = struct.unpack_from("!HHH", msg)
    if flags & 0x8000 or qdcount < 1:
        raise BadMessage("not a query")
    labels = []
    pos = 12
    while True:
        if pos >= len(msg):
            raise BadMessage("truncated name")
        n = msg[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0:
            raise BadMessage("compressed name in a question")
        if pos + n > len(msg):
            raise BadMessage("truncated label")
        labels.append(msg[pos:pos + n].decode("ascii", "replace"))
        pos += n
    if pos + 4 > len(msg):
        raise BadMessage("truncated question")
    qtype, qclass = struct.unpack_from("!HH", msg, pos)
    return Question(id=ident, flags=flags, name=".".join(labels).lower(), qtype=qtype,
                    qclass=qclass, end=pos + 4)


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        raw = label.encode("ascii", "replace")[:63]
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def response(query: bytes, q: Question, *, rcode: int = RCODE_OK,
             addresses: tuple[str, ...] = (), ptr_names: tuple[str, ...] = ()) -> bytes:
    """The answer to ``query`` (whose question is ``q``): A records for ``addresses``, PTR
    records for ``ptr_names``, authoritative, recursion available (as docker's server)."""
    # QR, AA, RA; the query's opcode and RD kept
    flags = 0x8000 | 0x0400 | 0x0080 | (q.flags & 0x7900) | (rcode & 0xF)
    answers = b""
    count = 0
    for addr in addresses:
        answers += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4)
        answers += ipaddress.IPv4Address(addr).packed
        count += 1
    for name in ptr_names:
        rdata = _encode_name(name)
        answers += struct.pack("!HHHIH", 0xC00C, TYPE_PTR, CLASS_IN, TTL, len(rdata)) + rdata
        count += 1
    head = struct.pack("!HHHHHH", q.id, flags, 1, count, 0, 0)
    return head + query[12:q.end] + answers


def error(query: bytes, rcode: int) -> bytes:
    """An error answer to ``query``, even one whose question cannot be read."""
    try:
        q = parse_query(query)
    except BadMessage:
        if len(query) < 2:
            return b""
        return query[:2] + struct.pack("!HHHHH", 0x8080 | rcode, 0, 0, 0, 0)
    return response(query, q, rcode=rcode)


def reverse_address(name: str) -> str | None:
    """The IPv4 address of an ``in-addr.arpa`` name, or None."""
    suffix = ".in-addr.arpa"
    if not name.endswith(suffix):
        return None
    parts = name[:-len(suffix)].split(".")
    if len(parts) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(parts))))
    except ValueError:
        return None
