"""IPAM, -p parsing, the nftables script and the generated files: no root, no kernel."""

from __future__ import annotations

import ipaddress
import json
import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from dockyard.db import open_database, transaction
from dockyard.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.network import files, ipam, nft, ports


def _db(root: Path, subnet: str = "10.213.5.0/24",
        gateway: str = "10.213.5.1") -> sqlite3.Connection:
    db = open_database(str(root))
    ipam.ensure(db)
    with transaction(db) as t:
        t.execute("INSERT INTO networks (id, name, driver, subnet, gateway, bridge, created) "
                  "VALUES ('n1', 'net', 'bridge', ?, ?, 'dy-test', ?)",
                  (subnet, gateway, time.time()))
    return db


def test_allocation_skips_gateway_and_goes_round_robin(tmp_path: Path) -> None:
    db = _db(tmp_path)
    a = ipam.allocate(db, "n1", "c1", veth="v1", netns="/x/1")
    b = ipam.allocate(db, "n1", "c2", veth="v2", netns="/x/2")
    assert (a.ip, b.ip) == ("10.213.5.2", "10.213.5.3")
    assert a.mac == "02:42:0a:d5:05:02"
    ipam.release(db, "c1")
    # a released address is not handed out again at once
    assert ipam.allocate(db, "n1", "c3", veth="v3", netns="/x/3").ip == "10.213.5.4"


def test_exhausted_subnet_is_an_error_and_duplicates_are_refused(tmp_path: Path) -> None:
    db = _db(tmp_path, "10.213.6.0/30", "10.213.6.1")
    assert ipam.allocate(db, "n1", "c1", veth="v", netns="/n").ip == "10.213.6.2"
    with pytest.raises(FailedPrecondition, match="no available IPv4 addresses"):
        ipam.allocate(db, "n1", "c2", veth="v", netns="/n")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO endpoints (network_id, container_id, ip, mac, veth, netns) "
                   "VALUES ('n1', 'c9', '10.213.6.2', '', '', '')")
    with pytest.raises(NotFound):
        ipam.allocate(db, "nope", "c3", veth="v", netns="/n")


def test_next_free_wraps() -> None:
    net = ipaddress.IPv4Network("10.0.0.0/29")     # hosts .1 .. .6
    base = int(net.network_address)
    assert ipam.next_free(net, {base + 1}, base + 6) == base + 2
    assert ipam.next_free(net, set(), 0) == base + 1
    assert ipam.next_free(net, {base + i for i in range(1, 7)}, 0) is None


def _allocate_in_process(root: str, index: int, out: multiprocessing.Queue[str]) -> None:
    db = open_database(root)
    out.put(ipam.allocate(db, "n1", f"c{index}", veth=f"v{index}", netns="/n").ip)
    db.close()


def test_twenty_processes_at_once_never_share_an_address(tmp_path: Path) -> None:
    _db(tmp_path).close()
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_allocate_in_process, args=(str(tmp_path), i, out))
             for i in range(20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    got = [out.get(timeout=5) for _ in procs]
    assert len(set(got)) == 20
    db = open_database(str(tmp_path))
    assert db.execute("SELECT COUNT(DISTINCT ip) FROM endpoints").fetchone()[0] == 20


def test_subnets_and_pools() -> None:
    net = ipam.parse_subnet("10.213.7.0/24")
    assert ipam.overlapping(net, [("a", "10.213.0.0/16")]) == "a"
    assert ipam.overlapping(net, [("a", "10.213.8.0/24")]) is None
    assert ipam.check_gateway(net, "") == "10.213.7.1"
    assert ipam.check_gateway(net, "10.213.7.254") == "10.213.7.254"
    with pytest.raises(InvalidArgument):
        ipam.check_gateway(net, "10.213.8.1")
    with pytest.raises(InvalidArgument):
        ipam.parse_subnet("10.213.7.1/24")      # host bits set
    with pytest.raises(InvalidArgument):
        ipam.parse_subnet("fd00::/64")
    routes = [(int.from_bytes(ipaddress.IPv4Address("10.213.0.0").packed, "big"),
               int.from_bytes(ipaddress.IPv4Address("255.255.255.0").packed, "big"))]
    picked = ipam.pick_pool_subnet([("10.213.0.0/16", 24)], ["10.213.1.0/24"], routes)
    assert str(picked) == "10.213.2.0/24"
    with pytest.raises(FailedPrecondition):
        ipam.pick_pool_subnet([("10.213.0.0/23", 24)], ["10.213.0.0/24", "10.213.1.0/24"])


@pytest.mark.parametrize(("text", "want"), [
    ("80", ports.PortSpec(80)),
    ("8080:80", ports.PortSpec(80, host_port=8080)),
    ("127.0.0.1:8080:80/udp", ports.PortSpec(80, "udp", "127.0.0.1", 8080)),
    ("127.0.0.1::80", ports.PortSpec(80, host_ip="127.0.0.1")),
    ("0.0.0.0:53:53/UDP", ports.PortSpec(53, "udp", "", 53)),
])
def test_parse_publish(text: str, want: ports.PortSpec) -> None:
    assert ports.parse_publish(text) == want


@pytest.mark.parametrize("text", ["", "x", "80/sctp", "70000", "1.2.3:80:80", "8000-8001:80"])
def test_parse_publish_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument):
        ports.parse_publish(text)


def test_port_reservation_conflicts(tmp_path: Path) -> None:
    db = _db(tmp_path)
    with transaction(db) as t:
        got = ports.reserve(t, "c1", "10.213.5.2", [ports.PortSpec(80, host_port=8080),
                                                    ports.PortSpec(81)],
                            port_free=lambda ip, p, proto: p != 40000,
                            pick=lambda lo, hi: 40001)
    assert [p.host_port for p in got] == [8080, 40001]
    with pytest.raises(FailedPrecondition, match="port is already allocated"), \
            transaction(db) as t:
        ports.reserve(t, "c2", "10.213.5.3", [ports.PortSpec(80, host_ip="127.0.0.1",
                                                             host_port=8080)],
                      port_free=lambda *a: True, pick=lambda lo, hi: lo)
    with transaction(db) as t:      # another protocol is another port
        ports.reserve(t, "c2", "10.213.5.3", [ports.PortSpec(80, "udp", host_port=8080)],
                      port_free=lambda *a: True, pick=lambda lo, hi: lo)
    assert len(ports.published(db)) == 3


def test_nft_script() -> None:
    empty = nft.render("dockyard_t", [], [])
    assert empty == "table inet dockyard_t {}\ndelete table inet dockyard_t\n"
    script = nft.render("dockyard_t", [nft.BridgeRules("dy0", "10.213.0.0/24"),
                                       nft.BridgeRules("dy1", "10.213.1.0/24", internal=True)],
                        [nft.PortRule("127.0.0.1", 8080, "tcp", "10.213.0.2", 80),
                         nft.PortRule("", 5353, "udp", "10.213.0.3", 53)])
    assert script.startswith(empty)
    assert "ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 10.213.0.2:80" in script
    assert "fib daddr type local udp dport 5353 dnat ip to 10.213.0.3:53" in script
    assert 'ip saddr 10.213.0.0/24 oifname != "dy0" masquerade' in script
    assert 'ip saddr 10.213.1.0/24 oifname != "dy1" masquerade' not in script
    assert 'iifname "dy1" oifname != "dy1" drop' in script
    assert 'oifname "dy0" ip saddr 127.0.0.0/8 masquerade' in script


def test_generated_files() -> None:
    assert files.hosts("abc", "10.0.0.2").endswith("10.0.0.2\tabc\n")
    assert files.resolv_conf("nameserver 127.0.0.53\nsearch lan\n") == (
        "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n")
    assert files.resolv_conf("nameserver 10.1.1.1\n") == "nameserver 10.1.1.1\n"


def test_port_bindings_round_trip() -> None:
    from dockyard.cli.runflags import publish_bindings
    from dockyard.engine.networks import port_specs

    bindings = publish_bindings(["127.0.0.1:8080:80", "53/udp"], "bridge")
    assert bindings == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                        "53/udp": [{"HostIp": "", "HostPort": ""}]}
    assert port_specs({"HostConfig": {"PortBindings": json.loads(json.dumps(bindings))}}) == [
        ports.PortSpec(80, "tcp", "127.0.0.1", 8080), ports.PortSpec(53, "udp")]
    assert publish_bindings(["80"], "host") == {}


def test_default_pools_are_docker_s() -> None:
    from dockyard.engine.networks import DEFAULT_POOLS

    assert str(ipam.pick_pool_subnet(DEFAULT_POOLS, [])) == "172.17.0.0/16"
    assert str(ipam.pick_pool_subnet(DEFAULT_POOLS, ["172.17.0.0/16"])) == "172.18.0.0/16"
    taken = [f"172.{i}.0.0/16" for i in range(17, 32)]
    assert str(ipam.pick_pool_subnet(DEFAULT_POOLS, taken)) == "192.168.0.0/20"
