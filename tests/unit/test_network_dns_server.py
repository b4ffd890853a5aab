"""The embedded DNS server's pieces without root: the wire format, the server loop on
127.0.0.1 (sockets handed over its control socket, as the engine does), the generated files,
--ip/--add-host checks and network isolation rules."""

from __future__ import annotations

import ipaddress
import os
import socket
import sqlite3
import struct
import threading
from pathlib import Path

import pytest

from dockyard.db import open_database
from dockyard.engine.networks import parse_extra_host
from dockyard.errors import FailedPrecondition, InvalidArgument
from dockyard.network import dns, dnsmsg, files, ipam, nft
from testbed.fakedns import FakeDns


def _query(name: str, qtype: int = dnsmsg.TYPE_A, ident: int = 0x1234) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


def _answers(msg: bytes) -> tuple[int, list[str]]:
    rcode = struct.unpack_from("!H", msg, 2)[0] & 0xF
    count = struct.unpack_from("!H", msg, 6)[0]
    q = dnsmsg.parse_query(msg[:2] + b"\x01\x00" + msg[4:])
    pos, out = q.end, []
    for _ in range(count):
        rtype, _cls, _ttl, n = struct.unpack_from("!HHIH", msg, pos + 2)
        data = msg[pos + 12:pos + 12 + n]
        out.append(socket.inet_ntoa(data) if rtype == dnsmsg.TYPE_A else data.hex())
        pos += 12 + n
    return rcode, out


def test_parse_and_answer() -> None:
    msg = _query("Web.Example")
    q = dnsmsg.parse_query(msg)
    assert (q.id, q.name, q.qtype) == (0x1234, "web.example", dnsmsg.TYPE_A)
    out = dnsmsg.response(msg, q, addresses=("10.213.1.2", "10.213.1.3"))
    assert _answers(out) == (0, ["10.213.1.2", "10.213.1.3"])
    assert struct.unpack_from("!H", out, 2)[0] & 0x8000      # a response
    assert _answers(dnsmsg.response(msg, q, rcode=dnsmsg.RCODE_NXDOMAIN)) == (3, [])
    with pytest.raises(dnsmsg.BadMessage):
        dnsmsg.parse_query(b"\x00\x01")
    assert dnsmsg.error(b"\x12\x34" + b"\xff" * 3, dnsmsg.RCODE_FORMERR)[:2] == b"\x12\x34"
    assert dnsmsg.reverse_address("2.1.213.10.in-addr.arpa") == "10.213.1.2"
    assert dnsmsg.reverse_address("example.com") is None


class _Records:
    def addresses(self, container_id: str, name: str) -> list[str] | None:
        return {"web": ["10.213.1.2"], "alias": ["10.213.1.2", "10.213.1.3"]}.get(name)

    def names(self, container_id: str, ip: str) -> list[str]:
        return ["web.net"] if ip == "10.213.1.2" else []

    def upstreams(self, container_id: str) -> list[str]:
        return ["127.0.0.1"]


def test_server_answers_forwards_and_leaves(tmp_path: Path) -> None:
    upstream = FakeDns("127.0.0.1", {"outside.test": "10.213.254.1"}, port=0)
    up_port = upstream.sock.getsockname()[1]
    upstream._thread.start()
    control = str(tmp_path / "dns.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(control)
    listener.listen()
    server = dns.Server(listener, _Records(), lock=lambda: None, control_path=control,
                        upstream_port=up_port)
    loop = threading.Thread(target=server.run)
    loop.start()
    pin = tmp_path / "pin"
    pin.write_text("")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    try:
        reply = dns.request(control, {"op": "add", "id": "c1", "netns": str(pin)},
                            [udp.fileno(), tcp.fileno()])
        assert reply is not None and reply["ok"] and reply["count"] == 1
        addr, taddr = udp.getsockname(), tcp.getsockname()
        udp.close()
        tcp.close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(5)
            for name, want in (("web", (0, ["10.213.1.2"])),
                               ("alias", (0, ["10.213.1.2", "10.213.1.3"])),
                               ("outside.test", (0, ["10.213.254.1"])),
                               ("nothere.test", (3, []))):
                c.sendto(_query(name), addr)
                assert _answers(c.recv(4096)) == want, name
            c.sendto(_query("2.1.213.10.in-addr.arpa", dnsmsg.TYPE_PTR), addr)
            assert _answers(c.recv(4096))[1] == [(b"\x03web\x03net\x00").hex()]
        with socket.create_connection(taddr, timeout=5) as t:
            q = _query("web")
            t.sendall(struct.pack("!H", len(q)) + q)
            n = struct.unpack("!H", t.recv(2))[0]
            data = b""
            while len(data) < n:
                data += t.recv(n - len(data))
            assert _answers(data) == (0, ["10.213.1.2"])
        assert upstream.asked == ["outside.test", "nothere.test"]
        reply = dns.request(control, {"op": "drop", "id": "c1"})
        assert reply is not None and reply["count"] == 0
        loop.join(5)
        assert not loop.is_alive() and not os.path.exists(control)
        assert dns.request(control, {"op": "ping"}) is None
    finally:
        server.done = True
        loop.join(5)
        upstream._stop.set()
        upstream._thread.join()
        upstream.sock.close()


def test_server_drops_a_namespace_that_is_gone(tmp_path: Path) -> None:
    control = str(tmp_path / "dns.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(control)
    listener.listen()
    server = dns.Server(listener, _Records(), lock=lambda: os.open(os.devnull, os.O_RDONLY),
                        control_path=control)
    loop = threading.Thread(target=server.run)
    loop.start()
    pin = tmp_path / "pin"
    pin.write_text("")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    try:
        assert dns.request(control, {"op": "add", "id": "c1", "netns": str(pin)},
                           [udp.fileno(), tcp.fileno()]) is not None
        pin.unlink()        # what a crashed engine leaves: the pin gone, no "drop"
        loop.join(5)
        assert not loop.is_alive() and not os.path.exists(control)
    finally:
        udp.close()
        tcp.close()
        server.done = True
        loop.join(5)


def test_resolv_conf_and_hosts() -> None:
    host = "search corp.test\nnameserver 10.255.0.1\noptions timeout:2 ndots:3\n"
    none = files.DnsSettings()
    assert files.resolv_conf_embedded(host, none) == (
        "search corp.test\nnameserver 127.0.0.11\noptions ndots:0 timeout:2\n")
    mine = files.DnsSettings(servers=("10.213.0.9",), search=("a.test",), options=("rotate",))
    assert files.resolv_conf_embedded(host, mine) == (
        "search a.test\nnameserver 127.0.0.11\noptions ndots:0 timeout:2 rotate\n")
    assert files.resolv_conf_with(host, mine) == (
        "search a.test\nnameserver 10.213.0.9\noptions rotate\n")
    assert files.resolv_conf_with(host, none) == files.resolv_conf(host)
    hosts = files.hosts("abc", "10.213.1.2", [("db", "10.213.9.9")]).splitlines()
    assert hosts[-2:] == ["10.213.9.9\tdb", "10.213.1.2\tabc"]
    assert files.nameservers(host + "nameserver 127.0.0.53\nnameserver ::1\n") == [
        "10.255.0.1", "127.0.0.53"]


def test_extra_host_parsing() -> None:
    assert parse_extra_host("db:10.213.0.5") == ("db", "10.213.0.5")
    assert parse_extra_host("db=10.213.0.5") == ("db", "10.213.0.5")
    assert parse_extra_host("gw:host-gateway", "10.213.0.1") == ("gw", "10.213.0.1")
    for bad in ("db", "db:", "db:notanip"):
        with pytest.raises(InvalidArgument, match="add-host"):
            parse_extra_host(bad)


def _db(tmp: Path) -> sqlite3.Connection:
    db = open_database(str(tmp))
    ipam.ensure(db)
    db.execute("INSERT INTO networks (id, name, driver, subnet, gateway, bridge, created) "
               "VALUES ('n1', 'net', 'bridge', '10.213.7.0/24', '10.213.7.1', 'b', 0)")
    return db


def test_requested_address(tmp_path: Path) -> None:
    db = _db(tmp_path)
    ep = ipam.allocate(db, "n1", "c1", veth="v", netns="/n", ip="10.213.7.50",
                       aliases=("a", "b"), ifname="eth1", mac="02:00:00:00:00:01")
    assert (ep.ip, ep.mac, ep.aliases, ep.ifname) == ("10.213.7.50", "02:00:00:00:00:01",
                                                      ("a", "b"), "eth1")
    assert ipam.endpoints_of(db, "c1") == [ep]
    with pytest.raises(FailedPrecondition, match="Address already in use"):
        ipam.allocate(db, "n1", "c2", veth="v2", netns="/n", ip="10.213.7.50")
    for bad in ("10.213.8.1", "10.213.7.0", "10.213.7.255", "nope"):
        with pytest.raises(InvalidArgument):
            ipam.allocate(db, "n1", "c2", veth="v2", netns="/n", ip=bad)
    with pytest.raises(FailedPrecondition, match="Address already in use"):     # gateway
        ipam.allocate(db, "n1", "c2", veth="v2", netns="/n", ip="10.213.7.1")
    assert ipam.allocate(db, "n1", "c2", veth="v2", netns="/n").ip == "10.213.7.2"
    ipam.release_endpoint(db, "c1", "n1")
    assert ipam.endpoints_of(db, "c1") == []
    assert ipam.check_mac("02:AB:00:00:00:01") == "02:ab:00:00:00:01"
    for bad in ("02:ab", "01:00:00:00:00:00", "zz:00:00:00:00:00"):
        with pytest.raises(InvalidArgument):
            ipam.check_mac(bad)
    assert ipaddress.ip_address(ep.ip)


def test_networks_are_isolated_from_each_other() -> None:
    script = nft.render("t", [nft.BridgeRules("b1", "10.213.1.0/24"),
                              nft.BridgeRules("b2", "10.213.2.0/24")], [])
    assert 'iifname "b1" oifname { "b2" } drop' in script
    assert 'iifname "b2" oifname { "b1" } drop' in script
    one = nft.render("t", [nft.BridgeRules("b1", "10.213.1.0/24")], [])
    assert "drop" not in one
