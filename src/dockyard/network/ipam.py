"""IP address management: subnets of networks, and addresses of endpoints, in the engine's
database.

The tables (component ``network``):

``networks``   one row per network: its subnet, gateway, bridge device, labels, and
               ``last_ip``, the address handed out last (allocation goes round-robin from it,
               as docker's IPAM does, so a released address is not reused at once).
``endpoints``  one row per (container, network) while the container is connected: its
               address (unique per network: the database refuses a duplicate even if two
               processes raced), MAC, host-side veth and namespace path.
``ports``      the published ports of a connected container.

Every allocation runs in one ``BEGIN IMMEDIATE`` transaction: read what is taken, pick, insert.
Two processes starting containers at once queue on the database's write lock, so neither can
see an address as free that the other has taken.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from collections.abc import Iterable, Sequence

from dockyard.db import ensure_schema, transaction
from dockyard.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.values import value

MIGRATIONS: list[list[str]] = [[
    """CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        subnet TEXT NOT NULL,
        gateway TEXT NOT NULL,
        bridge TEXT NOT NULL,
        internal INTEGER NOT NULL DEFAULT 0,
        labels TEXT NOT NULL DEFAULT '{}',
        options TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        last_ip INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE endpoints (
        network_id TEXT NOT NULL REFERENCES networks(id),
        container_id TEXT NOT NULL,
        ip TEXT NOT NULL,
        mac TEXT NOT NULL,
        veth TEXT NOT NULL,
        netns TEXT NOT NULL,
        PRIMARY KEY (container_id, network_id),
        UNIQUE (network_id, ip))""",
    """CREATE TABLE ports (
        container_id TEXT NOT NULL,
        host_ip TEXT NOT NULL,
        host_port INTEGER NOT NULL,
        proto TEXT NOT NULL,
        container_ip TEXT NOT NULL,
        container_port INTEGER NOT NULL,
        UNIQUE (host_ip, host_port, proto))""",
], [
    # network-scoped aliases (a JSON list) and the endpoint's interface in the container
    "ALTER TABLE endpoints ADD COLUMN aliases TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE endpoints ADD COLUMN ifname TEXT NOT NULL DEFAULT 'eth0'",
]]


def ensure(conn: sqlite3.Connection) -> None:
    ensure_schema(conn, "network", MIGRATIONS)


@value
class Endpoint:
    network_id: str
    container_id: str
    ip: str
    mac: str
    veth: str
    netns: str
    aliases: tuple[str, ...] = ()
    ifname: str = "eth0"


# --- subnets -------------------------------------------------------------------------------


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise InvalidArgument(f"invalid subnet {text}: {e}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidArgument(f"invalid subnet {text}: only IPv4 subnets are supported")
    if net.prefixlen > 30:
        raise InvalidArgument(f"invalid subnet {text}: too small for a network (/30 at most)")
    return net


def check_gateway(subnet: ipaddress.IPv4Network, gateway: str) -> str:
    """The gateway address: ``gateway`` checked to be a host of ``subnet``, or its first."""
    if not gateway:
        return str(subnet.network_address + 1)
    try:
        gw = ipaddress.IPv4Address(gateway)
    except ValueError:
        raise InvalidArgument(f"invalid gateway address {gateway}") from None
    if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"no matching subnet for gateway {gateway}")
    return str(gw)


def overlapping(subnet: ipaddress.IPv4Network,
                others: Iterable[tuple[str, str]]) -> str | None:
    """The name of the first of ``others`` (name, subnet) whose subnet overlaps ``subnet``."""
    for name, text in others:
        if subnet.overlaps(ipaddress.ip_network(text)):
            return name
    return None


def pick_pool_subnet(pools: Sequence[tuple[str, int]], taken: Iterable[str],
                     routes: Iterable[tuple[int, int]] = ()) -> ipaddress.IPv4Network:
    """The first subnet of the address ``pools`` ((base, size) as docker's
    default-address-pools) that overlaps neither a ``taken`` subnet nor a host route."""
    used = [ipaddress.ip_network(t) for t in taken]
    for dest, mask in routes:
        prefix = bin(mask).count("1")
        try:
            used.append(ipaddress.IPv4Network((dest & mask, prefix)))
        except ValueError:
            continue
    for base, size in pools:
        pool = parse_pool(base, size)
        for candidate in pool.subnets(new_prefix=size):
            if not any(candidate.overlaps(u) for u in used):
                return candidate
    raise FailedPrecondition("could not find an available, non-overlapping IPv4 address pool "
                             "among the defaults to assign to the network")


def parse_pool(base: str, size: int) -> ipaddress.IPv4Network:
    pool = parse_subnet(base)
    if not pool.prefixlen <= size <= 30:
        raise InvalidArgument(f"invalid address pool {base} size {size}")
    return pool


# --- endpoints -----------------------------------------------------------------------------


def mac_for(ip: str) -> str:
    """docker's MAC for an address: 02:42 then the four bytes of the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def allocate(conn: sqlite3.Connection, network_id: str, container_id: str, *, veth: str,
             netns: str, ip: str = "", mac: str = "", aliases: Sequence[str] = (),
             ifname: str = "eth0") -> Endpoint:
    """Give ``container_id`` the address ``ip`` (checked: in the subnet, free), or the next
    free address of the network (round-robin after the last one handed out), and record its
    endpoint, in one write transaction."""
    with transaction(conn) as db:
        row = db.execute("SELECT subnet, gateway, last_ip FROM networks WHERE id = ?",
                         (network_id,)).fetchone()
        if row is None:
            raise NotFound(f"network {network_id} not found")
        subnet = ipaddress.IPv4Network(str(row[0]))
        gateway = int(ipaddress.IPv4Address(str(row[1])))
        used = {int(ipaddress.IPv4Address(str(r[0]))) for r in db.execute(
            "SELECT ip FROM endpoints WHERE network_id = ?", (network_id,))}
        used.add(gateway)
        if ip:
            chosen: int | None = check_address(subnet, ip)
            if chosen in used:
                raise FailedPrecondition(f"Address already in use: {ip} is taken on this "
                                         "network")
        else:
            chosen = next_free(subnet, used, int(row[2]))
        if chosen is None:
            raise FailedPrecondition(f"no available IPv4 addresses on this network's address "
                                     f"pools: {subnet}")
        addr = str(ipaddress.IPv4Address(chosen))
        ep = Endpoint(network_id=network_id, container_id=container_id, ip=addr,
                      mac=mac or mac_for(addr), veth=veth, netns=netns,
                      aliases=tuple(aliases), ifname=ifname)
        db.execute("INSERT INTO endpoints (network_id, container_id, ip, mac, veth, netns, "
                   "aliases, ifname) VALUES (?,?,?,?,?,?,?,?)",
                   (network_id, container_id, ep.ip, ep.mac, veth, netns,
                    json.dumps(list(ep.aliases)), ifname))
        if not ip:
            db.execute("UPDATE networks SET last_ip = ? WHERE id = ?", (chosen, network_id))
    return ep


def check_address(subnet: ipaddress.IPv4Network, ip: str) -> int:
    """``ip`` (a requested ``--ip``) as a number, checked to be a host of ``subnet``."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise InvalidArgument(f"invalid IPv4 address: {ip}") from None
    if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"invalid endpoint settings: no configured subnet contains the "
                              f"IP address {ip} (the network's subnet is {subnet})")
    return int(addr)


def check_mac(mac: str) -> str:
    """A ``--mac-address``, checked and in lower case."""
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                  for p in parts):
        raise InvalidArgument(f"invalid MAC address: {mac}")
    if int(parts[0], 16) & 1:
        raise InvalidArgument(f"invalid MAC address: {mac} (a multicast address)")
    return mac.lower()


def next_free(subnet: ipaddress.IPv4Network, used: set[int], last: int) -> int | None:
    """The first host address of ``subnet`` after ``last`` (wrapping) that is not ``used``."""
    first = int(subnet.network_address) + 1
    end = int(subnet.broadcast_address)     # exclusive: the broadcast is never handed out
    count = end - first
    start = last + 1 if first <= last < end else first
    for i in range(count):
        ip = start + i
        if ip >= end:
            ip -= count
        if ip not in used:
            return ip
    return None


def endpoints_of(conn: sqlite3.Connection, container_id: str) -> list[Endpoint]:
    rows = conn.execute("SELECT * FROM endpoints WHERE container_id = ? ORDER BY ifname",
                        (container_id,)).fetchall()
    return [_endpoint(r) for r in rows]


def all_endpoints(conn: sqlite3.Connection) -> list[Endpoint]:
    return [_endpoint(r) for r in conn.execute("SELECT * FROM endpoints")]


def release_endpoint(conn: sqlite3.Connection, container_id: str, network_id: str) -> None:
    """Forget the container's endpoint on one network, and the ports published on it."""
    with transaction(conn) as db:
        row = db.execute("SELECT ip FROM endpoints WHERE container_id = ? AND network_id = ?",
                         (container_id, network_id)).fetchone()
        if row is None:
            return
        db.execute("DELETE FROM endpoints WHERE container_id = ? AND network_id = ?",
                   (container_id, network_id))
        db.execute("DELETE FROM ports WHERE container_id = ? AND container_ip = ?",
                   (container_id, str(row[0])))


def release(conn: sqlite3.Connection, container_id: str) -> None:
    """Forget the container's endpoints and published ports (its addresses become free)."""
    with transaction(conn) as db:
        db.execute("DELETE FROM endpoints WHERE container_id = ?", (container_id,))
        db.execute("DELETE FROM ports WHERE container_id = ?", (container_id,))


def _endpoint(r: sqlite3.Row) -> Endpoint:
    return Endpoint(network_id=str(r["network_id"]), container_id=str(r["container_id"]),
                    ip=str(r["ip"]), mac=str(r["mac"]), veth=str(r["veth"]),
                    netns=str(r["netns"]), aliases=tuple(json.loads(r["aliases"])),
                    ifname=str(r["ifname"]))
