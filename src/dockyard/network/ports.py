"""Published ports: docker's ``-p`` syntax, and host ports chosen and reserved in the engine's
database (the ``ports`` table of :mod:`dockyard.network.ipam`)."""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Callable, Sequence

from dockyard.errors import FailedPrecondition, InvalidArgument
from dockyard.values import value

#: where ``-p CONTAINER_PORT`` finds a host port (Linux's default ephemeral range, as docker)
EPHEMERAL = (32768, 60999)


@value
class PortSpec:
    """One ``-p``: ``host_ip`` "" means every address; ``host_port`` 0 means any free one."""

    container_port: int
    proto: str = "tcp"
    host_ip: str = ""
    host_port: int = 0

    @property
    def key(self) -> str:
        """docker's PortBindings key, ``80/tcp``."""
        return f"{self.container_port}/{self.proto}"


@value
class Published:
    container_id: str
    host_ip: str
    host_port: int
    proto: str
    container_ip: str
    container_port: int


def parse_publish(text: str) -> PortSpec:
    """``[ip:][host_port:]container_port[/tcp|udp]`` (docker's ``-p``, without ranges)."""
    rest, _, proto = text.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    parts = rest.rsplit(":", 2)
    host_ip = ""
    host = ""
    if len(parts) == 3:
        host_ip, host, container = parts
    elif len(parts) == 2:
        host, container = parts
    else:
        container = parts[0]
    if host_ip:
        host_ip = host_ip.strip("[]")
        try:
            addr = ipaddress.ip_address(host_ip)
        except ValueError:
            raise InvalidArgument(f"invalid IP address: {host_ip}") from None
        if not isinstance(addr, ipaddress.IPv4Address):
            raise InvalidArgument(f"invalid IP address {host_ip}: only IPv4 is supported")
        if addr.is_unspecified:
            host_ip = ""
    return PortSpec(container_port=_port(container, "containerPort", text),
                    proto=proto, host_ip=host_ip,
                    host_port=_port(host, "hostPort", text) if host else 0)


def _port(text: str, what: str, spec: str) -> int:
    if "-" in text:
        raise InvalidArgument(f"port ranges are not supported yet: {spec}")
    try:
        n = int(text, 10)
    except ValueError:
        raise InvalidArgument(f"invalid {what}: {text}") from None
    if not 0 < n < 65536:
        raise InvalidArgument(f"invalid {what}: {text}")
    return n


def _clash(a_ip: str, b_ip: str) -> bool:
    return not a_ip or not b_ip or a_ip == b_ip


def reserve(db: sqlite3.Connection, container_id: str, container_ip: str,
            specs: Sequence[PortSpec], *, port_free: Callable[[str, int, str], bool],
            pick: Callable[[int, int], int]) -> list[Published]:
    """Record the container's published ports (inside the caller's write transaction).

    An explicit host port taken by another container is a conflict (docker's "port is
    already allocated"); a random one is drawn from :data:`EPHEMERAL` among ports neither
    published nor in use on the host (``port_free``); ``pick(lo, hi)`` draws a number.
    """
    taken = [(str(r[0]), int(r[1]), str(r[2])) for r in
             db.execute("SELECT host_ip, host_port, proto FROM ports")]
    out: list[Published] = []
    for spec in specs:
        port = spec.host_port
        if port:
            if any(p == port and proto == spec.proto and _clash(ip, spec.host_ip)
                   for ip, p, proto in taken):
                raise FailedPrecondition(
                    f"Bind for {spec.host_ip or '0.0.0.0'}:{port} failed: port is already "  # noqa: S104
                    "allocated")
        else:
            lo, hi = EPHEMERAL
            for _ in range(200):
                candidate = pick(lo, hi)
                if any(p == candidate and proto == spec.proto and _clash(ip, spec.host_ip)
                       for ip, p, proto in taken):
                    continue
                if port_free(spec.host_ip, candidate, spec.proto):
                    port = candidate
                    break
            if not port:
                raise FailedPrecondition("no free host port to publish "
                                         f"{spec.key} on")
        taken.append((spec.host_ip, port, spec.proto))
        pub = Published(container_id=container_id, host_ip=spec.host_ip, host_port=port,
                        proto=spec.proto, container_ip=container_ip,
                        container_port=spec.container_port)
        db.execute("INSERT INTO ports VALUES (?,?,?,?,?,?)",
                   (container_id, pub.host_ip, port, pub.proto, container_ip,
                    pub.container_port))
        out.append(pub)
    return out


def published(db: sqlite3.Connection, container_id: str | None = None) -> list[Published]:
    if container_id is None:
        rows = db.execute("SELECT * FROM ports ORDER BY container_port, proto").fetchall()
    else:
        rows = db.execute("SELECT * FROM ports WHERE container_id = ? "
                          "ORDER BY container_port, proto", (container_id,)).fetchall()
    return [Published(container_id=str(r["container_id"]), host_ip=str(r["host_ip"]),
                      host_port=int(r["host_port"]), proto=str(r["proto"]),
                      container_ip=str(r["container_ip"]),
                      container_port=int(r["container_port"])) for r in rows]
