"""The network service: docker's networks (the default ``bridge``, user-defined bridge networks,
``host`` and ``none``) as rows in the engine database, and a container's connection to one.

**Where a container's network namespace comes from.** The engine creates it, before the launch
is sent to the monitor, and pins it with a bind mount at ``<run_root>-netns/<container id>``;
the container's config.json names that path (``linux.namespaces[].path``), so the runtime
*joins* it instead of creating one. Chosen over configuring a runtime-made namespace from an
OCI hook because: the namespace is ready (veth, address, route, published ports) before the
container's process runs, so its first ``wget`` works; a restart by the monitor (restart
policies) re-joins the same namespace with the same address, without the monitor knowing about
networks; any runc-compatible runtime works, hooks or not; and teardown is one unmount — the
namespace dies with its last process, taking the container's end of the veth pair and with it
the host's end.

**Connecting** (:meth:`NetworkService.connect`, called by ContainerService.start), under the
engine root's network lock (``<root>/network.lock``, taken before any database transaction):
IPAM allocates an address (engine database, BEGIN IMMEDIATE); published ports are reserved;
the network's bridge is created if it is not up; the namespace is created; a veth pair is
created with its container end directly inside it (eth0, with MAC, address and default route);
/etc/hosts, /etc/resolv.conf and /etc/hostname are written in the bundle; Dockyard's nftables
table is brought up to date (a transaction only when a rule changes: published ports). A
failure at any step undoes the previous ones.

**Disconnecting** (:meth:`NetworkService.disconnect`: on exit, by the monitor's recorder, and on
``rm``) needs no netlink: unpin the namespace, release the rows, bring the nftables table up to
date (nothing to do without published ports).

**What is kept.** As docker keeps docker0 and its chains, a network's bridge stays once made
(until ``network rm``; the default bridge until :meth:`NetworkService.teardown`), and so do the
nftables table and its base chains: a container start or exit does only its own work (its
namespace, its veth pair, its rules). ``dockyard system teardown`` (tests: at the end of each
engine root) removes what no container uses.

Published ports from 127.0.0.1 work without a userland proxy: each bridge has
``route_localnet=1`` and the ``postrouting`` chain masquerades loopback sources leaving it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dockyard.db import transaction
from dockyard.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from dockyard.logs import get_logger
from dockyard.network import ipam
from dockyard.values import field, value

if TYPE_CHECKING:
    from dockyard.engine.config import EngineConfig
    from dockyard.network.ports import PortSpec, Published

log = get_logger(__name__)

PREDEFINED = ("bridge", "host", "none")
#: docker's default-address-pools
DEFAULT_POOLS: tuple[tuple[str, int], ...] = (
    *((f"172.{i}.0.0/16", 16) for i in range(17, 32)), ("192.168.0.0/16", 20))


@value
class Network:
    id: str
    name: str
    driver: str
    subnet: str
    gateway: str
    bridge: str
    internal: bool
    created: float
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return self.name in PREDEFINED


def network_mode(config: Mapping[str, Any]) -> str:
    """The container's HostConfig.NetworkMode, "default" read as docker does ("bridge")."""
    mode = str((config.get("HostConfig") or {}).get("NetworkMode") or "none")
    return "bridge" if mode == "default" else mode


def wants_network(mode: str) -> bool:
    """Whether a container in ``mode`` is connected to a network of this service."""
    return mode not in ("none", "host") and not mode.startswith("container:")


def netns_path(run_root: str, container_id: str) -> str:
    """Where the container's namespace is pinned: beside the run root, not in it (the pin is
    a mount: whatever clears the run root, as a simulated reboot does, is not blocked by it;
    a stale pin is removed by the container's next start or its rm)."""
    return os.path.join(run_root.rstrip("/") + "-netns", container_id)


def add_to_spec(spec: dict[str, Any], *, netns: str, bundle: str) -> None:
    """Make a networked container's config.json join the namespace at ``netns`` and
    bind-mount its generated /etc/hosts, /etc/resolv.conf and /etc/hostname."""
    for ns in spec.get("linux", {}).get("namespaces", []):
        if ns.get("type") == "network":
            ns["path"] = netns
    for name in ("hosts", "resolv.conf", "hostname"):
        spec.setdefault("mounts", []).append(
            {"destination": f"/etc/{name}", "type": "bind",
             "source": os.path.join(bundle, name), "options": ["rbind", "rprivate"]})


class NetworkService:
    def __init__(self, config: EngineConfig, db: sqlite3.Connection, run_root: str = "") -> None:
        self.config = config
        self.db = db
        self.run_root = run_root or config.run_root
        ipam.ensure(db)
        settings = config.settings
        default_root = config.root == "/var/lib/dockyard"
        tag = hashlib.sha256(config.root.encode()).hexdigest()
        self.table = str(settings.get("nftables-table") or
                         ("dockyard" if default_root else f"dockyard_{tag[:10]}"))
        self.default_bridge = str(settings.get("bridge") or
                                  ("dockyard0" if default_root else f"dy{tag[:8]}0"))
        self.ip_forward = bool(settings.get("ip-forward", True))
        self._ensure_predefined()

    # --- settings ----------------------------------------------------------------------------

    def _pools(self) -> list[tuple[str, int]]:
        raw = self.config.settings.get("default-address-pools")
        if not raw:
            return list(DEFAULT_POOLS)
        try:
            return [(str(p["base"]), int(p["size"])) for p in raw]
        except (TypeError, KeyError, ValueError):
            raise InvalidArgument(f"config file {self.config.config_file}: "
                                  '"default-address-pools" must be a list of '
                                  '{"base": CIDR, "size": N}') from None

    def _default_subnet(self, taken: Sequence[str]) -> tuple[str, str]:
        """The default bridge's (subnet, gateway): the ``bip`` setting, or a free pool."""
        import ipaddress

        from dockyard.linux.netns import host_routes

        bip = str(self.config.settings.get("bip") or "")
        if bip:
            try:
                iface = ipaddress.IPv4Interface(bip)
            except ValueError:
                raise InvalidArgument(f'config file {self.config.config_file}: invalid "bip" '
                                      f"{bip}") from None
            return str(iface.network), str(iface.ip)
        subnet = ipam.pick_pool_subnet(self._pools(), taken, host_routes())
        return str(subnet), ipam.check_gateway(subnet, "")

    def _ensure_predefined(self) -> None:
        names = {str(r[0]) for r in self.db.execute(
            "SELECT name FROM networks WHERE name IN ('bridge', 'host', 'none')")}
        if len(names) == 3:
            self._follow_bip()
            return
        with transaction(self.db) as db:
            taken = [str(r[0]) for r in db.execute("SELECT subnet FROM networks WHERE "
                                                   "subnet != ''")]
            for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
                if db.execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone():
                    continue
                subnet, gateway, bridge = "", "", ""
                if name == "bridge":
                    subnet, gateway = self._default_subnet(taken)
                    bridge = self.default_bridge
                db.execute("INSERT INTO networks (id, name, driver, subnet, gateway, bridge,"
                           " created) VALUES (?,?,?,?,?,?,?)",
                           (os.urandom(32).hex(), name, driver, subnet, gateway, bridge,
                            time.time()))

    def _follow_bip(self) -> None:
        """A changed ``bip`` takes effect once no container uses the default bridge."""
        bip = str(self.config.settings.get("bip") or "")
        if not bip:
            return
        row = self.db.execute("SELECT id, subnet, gateway FROM networks WHERE name='bridge'"
                              ).fetchone()
        address, _, prefix = bip.partition("/")
        if row is None or (str(row[2]) == address and
                           str(row[1]).rpartition("/")[2] == (prefix or "32")):
            return      # unchanged (the same gateway and prefix: the same subnet), no parsing
        subnet, gateway = self._default_subnet([])
        if (str(row[1]), str(row[2])) == (subnet, gateway):
            return
        with transaction(self.db) as db:
            if db.execute("SELECT 1 FROM endpoints WHERE network_id = ?",
                          (row[0],)).fetchone():
                return
            db.execute("UPDATE networks SET subnet=?, gateway=?, last_ip=0 WHERE id=?",
                       (subnet, gateway, row[0]))
        from dockyard.linux import netdev

        with self._lock():      # the kept bridge has the old address: made again on use
            netdev.delete_bridge(self.default_bridge)
            self._sync()

    # --- networks ----------------------------------------------------------------------------

    def networks(self) -> list[Network]:
        rows = self.db.execute("SELECT * FROM networks ORDER BY created").fetchall()
        return [_network(r) for r in rows]

    def get(self, ref: str) -> Network:
        """A network by full id, name, or unique id prefix (docker's order)."""
        row = self.db.execute("SELECT * FROM networks WHERE id = ? OR name = ?",
                              (ref, ref)).fetchone()
        if row is None and ref and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.execute("SELECT * FROM networks WHERE id LIKE ?",
                                   (ref + "%",)).fetchall()
            if len(rows) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(rows)} matches found "
                                      "based on ID prefix)")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"network {ref} not found")
        return _network(row)

    def create(self, name: str, *, driver: str = "bridge", subnet: str = "",
               gateway: str = "", internal: bool = False,
               labels: Mapping[str, str] | None = None,
               options: Mapping[str, str] | None = None) -> Network:
        from dockyard.linux.netns import host_routes

        _check_name(name)
        if driver != "bridge":
            raise NotFound(f"plugin \"{driver}\" not found")
        if gateway and not subnet:
            raise InvalidArgument("gateway specified without a subnet")
        opts = dict(options or {})
        nid = os.urandom(32).hex()
        bridge = opts.get("com.docker.network.bridge.name") or f"dy-{nid[:12]}"
        if len(bridge) > 15:
            raise InvalidArgument(f"bridge name {bridge} is longer than 15 characters")
        wanted = ipam.parse_subnet(subnet) if subnet else None
        with transaction(self.db) as db:
            if db.execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(f"network with name {name} already exists")
            if db.execute("SELECT 1 FROM networks WHERE bridge = ?", (bridge,)).fetchone():
                raise AlreadyExists(f"bridge name {bridge} is already in use")
            others = [(str(r[0]), str(r[1])) for r in
                      db.execute("SELECT name, subnet FROM networks WHERE subnet != ''")]
            if wanted is not None:
                clash = ipam.overlapping(wanted, others)
                if clash is not None:
                    raise FailedPrecondition(
                        f"invalid pool request: Pool overlaps with other one on this address "
                        f"space (network {clash})")
                net = wanted
            else:
                net = ipam.pick_pool_subnet(self._pools(), [s for _, s in others],
                                            host_routes())
            gw = ipam.check_gateway(net, gateway)
            db.execute("INSERT INTO networks (id, name, driver, subnet, gateway, bridge,"
                       " internal, labels, options, created) VALUES (?,?,?,?,?,?,?,?,?,?)",
                       (nid, name, driver, str(net), gw, bridge, int(internal),
                        json.dumps(dict(labels or {})), json.dumps(opts), time.time()))
        return self.get(nid)

    def remove(self, ref: str) -> Network:
        net = self.get(ref)
        if net.builtin:
            raise FailedPrecondition(f"{net.name} is a pre-defined network and cannot be "
                                     "removed")
        with self._lock():
            with transaction(self.db) as db:
                if db.execute("SELECT 1 FROM endpoints WHERE network_id = ?",
                              (net.id,)).fetchone():
                    raise FailedPrecondition(
                        f"error while removing network: network {net.name} id {net.id} has "
                        "active endpoints")
                db.execute("DELETE FROM networks WHERE id = ?", (net.id,))
            from dockyard.linux import netdev

            netdev.delete_bridge(net.bridge)
            self._sync()
        return net

    def prune(self) -> list[Network]:
        """Remove every user-defined network that no container (running or not) names."""
        used = set()
        for (config,) in self.db.execute("SELECT config FROM containers"):
            used.add(network_mode(json.loads(config)))
        removed = []
        for net in self.networks():
            if net.builtin or net.name in used or net.id in used:
                continue
            try:
                removed.append(self.remove(net.id))
            except (FailedPrecondition, NotFound):
                continue
        return removed

    def containers_of(self, net: Network) -> list[ipam.Endpoint]:
        rows = self.db.execute("SELECT * FROM endpoints WHERE network_id = ?",
                               (net.id,)).fetchall()
        return [ipam._endpoint(r) for r in rows]

    def inspect(self, net: Network) -> dict[str, Any]:
        """docker's NetworkResource."""
        import datetime
        import ipaddress

        created = datetime.datetime.fromtimestamp(net.created, datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ")
        containers: dict[str, Any] = {}
        for ep in self.containers_of(net):
            row = self.db.execute("SELECT name FROM containers WHERE id = ?",
                                  (ep.container_id,)).fetchone()
            prefix = ipaddress.ip_network(net.subnet).prefixlen
            containers[ep.container_id] = {
                "Name": str(row[0]) if row else "",
                "EndpointID": hashlib.sha256(
                    f"{ep.network_id}{ep.container_id}".encode()).hexdigest(),
                "MacAddress": ep.mac, "IPv4Address": f"{ep.ip}/{prefix}", "IPv6Address": ""}
        options = dict(net.options)
        if net.driver == "bridge":
            options.setdefault("com.docker.network.bridge.name", net.bridge)
        return {
            "Name": net.name, "Id": net.id, "Created": created, "Scope": "local",
            "Driver": net.driver, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None if net.builtin else {},
                     "Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]
                     if net.subnet else []},
            "Internal": net.internal, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
            "Options": options, "Labels": dict(net.labels)}

    # --- containers --------------------------------------------------------------------------

    def check_mode(self, mode: str) -> str:
        """The network mode of ``run --network``, checked: the network exists."""
        if mode == "default":
            return "bridge"
        if mode.startswith("container:"):
            from dockyard.engine.netjoin import check_format

            return check_format(mode)
        if wants_network(mode):
            self.get(mode)
        return mode

    def connect(self, container_id: str, config: Mapping[str, Any],
                bundle: str) -> ipam.Endpoint | None:
        """Connect the container (about to start) to its network, with the ports of its
        HostConfig.PortBindings published, and to the networks ``network connect`` added
        (eth1...): see the module docstring. None for none/host."""
        import random

        from dockyard.network import ports

        mode = network_mode(config)
        if not wants_network(mode):
            return None
        net = self.get(mode)
        extras = [(self.get(name), settings) for name, settings in
                  endpoint_configs(config).items() if name not in (net.name, net.id)]
        publish = port_specs(config)
        path = netns_path(self.run_root, container_id)
        with self._lock():
            self._disconnect_locked(container_id)   # what a crash or failed launch left
            try:
                ep = self._attach_locked(container_id, net,
                                         endpoint_configs(config).get(net.name, {}), path,
                                         "eth0", gateway=True)
                if publish:
                    with transaction(self.db) as db:
                        ports.reserve(db, container_id, ep.ip, publish,
                                      port_free=_port_free,
                                      pick=random.SystemRandom().randint)
                for i, (extra, settings) in enumerate(extras, 1):
                    self._attach_locked(container_id, extra, settings, path, f"eth{i}")
                user = not net.builtin or any(not n.builtin for n, _ in extras)
                self._write_files(config, bundle, net, ep, embedded_dns=user)
                if user:
                    self._dns_register(container_id, path)
                self._sync()
            except BaseException:
                self._disconnect_locked(container_id)
                raise
        return ep

    def _attach_locked(self, container_id: str, net: Network, settings: Mapping[str, Any],
                       path: str, ifname: str, *, gateway: bool = False) -> ipam.Endpoint:
        """An endpoint of ``net`` in the namespace at ``path`` (created if it is not there):
        address, veth pair, ``ifname`` inside; the default route with ``gateway``."""
        from dockyard.linux import netdev, netns, rtnl

        veth = "veth" + hashlib.sha256(f"{net.id}{container_id}".encode()).hexdigest()[:7]
        want = endpoint_settings(settings)
        ep = ipam.allocate(self.db, net.id, container_id, veth=veth, netns=path,
                           ip=want.ip, mac=want.mac, aliases=want.aliases, ifname=ifname)
        prefix = int(net.subnet.rpartition("/")[2])
        self._bridge_up(net, prefix)
        if not netns.is_pinned(path):
            netns.create(path)
        if netdev.exists(veth):     # the pair of a namespace the kernel is still tearing down
            rtnl.delete_link(veth)
        rtnl.add_veth(veth, path, net.bridge, inside_name=ifname, mac=ep.mac, address=ep.ip,
                      prefixlen=prefix, gateway=net.gateway if gateway else "")
        return ep

    def _write_files(self, config: Mapping[str, Any], bundle: str, net: Network,
                     ep: ipam.Endpoint, *, embedded_dns: bool) -> None:
        """/etc/hosts, /etc/resolv.conf and /etc/hostname of the container, in its bundle."""
        from dockyard.network import files

        hostname = str((config.get("Config") or {}).get("Hostname") or ep.container_id[:12])
        host = config.get("HostConfig") or {}
        extra = [parse_extra_host(h, net.gateway) for h in host.get("ExtraHosts") or []]
        dns = files.DnsSettings(servers=tuple(host.get("Dns") or ()),
                                search=tuple(host.get("DnsSearch") or ()),
                                options=tuple(host.get("DnsOptions") or ()))
        files.write(os.path.join(bundle, "hosts"), files.hosts(hostname, ep.ip, extra))
        resolv = files.host_resolv_conf()
        files.write(os.path.join(bundle, "resolv.conf"),
                    files.resolv_conf_embedded(resolv, dns) if embedded_dns
                    else files.resolv_conf_with(resolv, dns))
        files.write(os.path.join(bundle, "hostname"), hostname + "\n")

    def _dns_register(self, container_id: str, path: str) -> None:
        from dockyard.engine import dns

        dns.register(self.config, self.run_root, container_id, path)

    # --- network connect / disconnect of a running container ---------------------------------

    def connect_running(self, container_id: str, net: Network, *, name: str,
                        aliases: Sequence[str] = (), ip: str = "") -> ipam.Endpoint:
        """``network connect``: one more endpoint (eth1...) in the running container's
        namespace; the embedded DNS server answers there from its first user network on."""
        from dockyard.linux import netns, rtnl

        check_endpoint(net, aliases, ip)
        with self._lock():
            eps = ipam.endpoints_of(self.db, container_id)
            path = eps[0].netns if eps else netns_path(self.run_root, container_id)
            if not netns.is_pinned(path):
                raise FailedPrecondition(f"container {name} is not running with a network "
                                         "namespace of its own")
            if any(e.network_id == net.id for e in eps):
                raise AlreadyExists(f"endpoint with name {name} already exists in network "
                                    f"{net.name}")
            taken = {e.ifname for e in eps}
            ifname = next(f"eth{i}" for i in range(len(eps) + 1) if f"eth{i}" not in taken)
            had_dns = any(not self._is_builtin(e.network_id) for e in eps)
            ep = None
            try:
                # the only endpoint (all others disconnected) gets the default route
                ep = self._attach_locked(container_id, net, {"Aliases": list(aliases),
                                                             "IPAMConfig": {"IPv4Address": ip}},
                                         path, ifname, gateway=not eps)
                if not had_dns and not net.builtin:
                    self._dns_register(container_id, path)
                self._sync()
            except BaseException:
                if ep is not None:
                    rtnl.delete_link(ep.veth)
                ipam.release_endpoint(self.db, container_id, net.id)
                self._sync()
                raise
        return ep

    def disconnect_running(self, container_id: str, net: Network, *, name: str) -> None:
        """``network disconnect``: the endpoint's veth pair goes (with it the container's
        interface), its address and ports are released."""
        from dockyard.linux import rtnl

        with self._lock():
            eps = ipam.endpoints_of(self.db, container_id)
            ep = next((e for e in eps if e.network_id == net.id), None)
            if ep is None:
                raise FailedPrecondition(f"container {name} is not connected to network "
                                         f"{net.name}")
            rtnl.delete_link(ep.veth)
            ipam.release_endpoint(self.db, container_id, net.id)
            if not any(not self._is_builtin(e.network_id) for e in eps if e is not ep):
                from dockyard.engine import dns

                dns.unregister(self.run_root, container_id)
            self._sync()

    def _is_builtin(self, network_id: str) -> bool:
        row = self.db.execute("SELECT name FROM networks WHERE id = ?", (network_id,)).fetchone()
        return row is None or str(row[0]) in PREDEFINED

    def disconnect(self, container_id: str) -> None:
        """Undo :meth:`connect` (nothing to do for a container that is not connected)."""
        if not ipam.endpoints_of(self.db, container_id) and not os.path.exists(
                netns_path(self.run_root, container_id)):
            return
        with self._lock():
            self._disconnect_locked(container_id)

    def _disconnect_locked(self, container_id: str) -> None:
        from dockyard.engine import dns
        from dockyard.linux import netns

        eps = ipam.endpoints_of(self.db, container_id)
        dns.unregister(self.run_root, container_id)     # its sockets hold the namespace
        paths = {ep.netns for ep in eps} | {netns_path(self.run_root, container_id)}
        if eps and self._joined(netns_path(self.run_root, container_id)):
            # a container that joined this one's namespace (--network container:) keeps it
            # alive: the interfaces and addresses go now, as docker's do, not with it
            from dockyard.linux import rtnl

            for ep in eps:
                rtnl.delete_link(ep.veth)
        for path in paths:
            netns.remove(path)
        if eps or self.db.execute("SELECT 1 FROM ports WHERE container_id = ?",
                                  (container_id,)).fetchone():
            ipam.release(self.db, container_id)
            self._sync()

    def _joined(self, path: str) -> bool:
        """Whether another container's pin holds the namespace pinned at ``path``."""
        from dockyard.linux import netns

        pins = os.path.dirname(path)
        try:
            names = os.listdir(pins)
        except OSError:
            return False
        mine = os.path.basename(path)
        return any(netns.same_namespace(path, os.path.join(pins, n)) for n in names
                   if n != mine)

    def settings(self, container_id: str, mode: str) -> dict[str, Any]:
        """docker's NetworkSettings of a container: its endpoint while connected."""
        ports: dict[str, Any] = {}
        for p in self.published(container_id):
            ports.setdefault(f"{p.container_port}/{p.proto}", []).append(
                {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})  # noqa: S104
        eps = self.endpoints(container_id)
        out: dict[str, Any] = {
            "Bridge": "", "SandboxID": "", "SandboxKey": eps[0].netns if eps else "",
            "Ports": ports, "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "MacAddress": "", "Networks": {}}
        try:
            net = self.get(mode)
        except NotFound:
            return out
        nets = [net] + [n for n in (self._by_id(e.network_id) for e in eps)
                        if n is not None and n.id != net.id]
        for n in nets:
            ep = next((e for e in eps if e.network_id == n.id), None)
            entry = _endpoint_entry(n, container_id, ep)
            out["Networks"][n.name] = entry
            if n.name == "bridge":  # docker repeats the default bridge's endpoint at the top
                for key in ("Gateway", "IPAddress", "IPPrefixLen", "MacAddress"):
                    out[key] = entry[key]
        return out

    def _by_id(self, network_id: str) -> Network | None:
        row = self.db.execute("SELECT * FROM networks WHERE id = ?", (network_id,)).fetchone()
        return _network(row) if row is not None else None

    def published(self, container_id: str) -> list[Published]:
        from dockyard.network import ports

        return ports.published(self.db, container_id)

    def endpoints(self, container_id: str) -> list[ipam.Endpoint]:
        return ipam.endpoints_of(self.db, container_id)

    # --- the host's side ---------------------------------------------------------------------

    def _bridge_up(self, net: Network, prefix: int) -> None:
        """The network's bridge, made the first time and kept (docker's docker0)."""
        from dockyard.linux import netdev, netns, rtnl

        if not netdev.is_up(net.bridge):
            rtnl.ensure_bridge(net.bridge, net.gateway, prefix)
            # published ports reached through 127.0.0.1 are routed to the bridge (no proxy)
            netns.write_sysctl(f"net.ipv4.conf.{net.bridge}.route_localnet", "1")
        if self.ip_forward and not net.internal and \
                netns.read_sysctl("net.ipv4.ip_forward") != "1":
            netns.write_sysctl("net.ipv4.ip_forward", "1")

    def _sync(self) -> None:
        """Make Dockyard's nftables table match the database and the bridges that are up: one
        transaction that touches only the chains whose rules change, none when no rule changes
        (see :mod:`dockyard.network.nft`). Bridges are not deleted here: they are kept while
        their network exists (the default one until :meth:`teardown`), as docker keeps its
        bridges."""
        from dockyard.linux import netdev, nftables
        from dockyard.network import nft, ports

        bridges = [nft.BridgeRules(bridge=net.bridge, subnet=net.subnet, internal=net.internal)
                   for net in self.networks() if net.bridge and netdev.exists(net.bridge)]
        rules = [nft.PortRule(host_ip=p.host_ip, host_port=p.host_port, proto=p.proto,
                              container_ip=p.container_ip, container_port=p.container_port)
                 for p in ports.published(self.db)]
        wanted = nft.chain_rules(bridges, rules)
        applied = self._nft_applied()
        if applied is not None and not nftables.table_exists("inet", self.table):
            applied = None      # flushed behind our back (a firewall reload): made again
        if applied is None and not any(wanted.values()):
            return              # nothing needs the table: it is not made
        script = nft.update_script(self.table, wanted, applied)
        if not script:
            return
        # forgotten first: a crash between the two leaves "unknown", never a wrong record
        self._forget_nft_applied()
        nft.apply(script)
        self._record_nft_applied(wanted)

    def _nft_state_path(self) -> str:
        return os.path.join(self.run_root, "nftables.json")

    def _nft_applied(self) -> dict[str, list[str]] | None:
        """The rules last put in each chain of the table, None when unknown."""
        try:
            with open(self._nft_state_path()) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("table") != self.table:
            return None
        chains = doc.get("chains")
        return {str(k): [str(r) for r in v] for k, v in chains.items()} \
            if isinstance(chains, dict) else None

    def _record_nft_applied(self, chains: Mapping[str, Sequence[str]]) -> None:
        path = self._nft_state_path()
        os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"table": self.table, "chains": {k: list(v) for k, v in chains.items()}},
                      f)
        os.replace(tmp, path)

    def _forget_nft_applied(self) -> None:
        try:
            os.unlink(self._nft_state_path())
        except FileNotFoundError:
            pass

    def teardown(self) -> list[str]:
        """Remove the host side of every network no container is connected to: its bridge
        (the default one too), and Dockyard's nftables table once nothing needs it. What a
        later start needs is made again then. For an engine root about to go (tests, an
        uninstall) and for ``dockyard system teardown``. Returns the bridges removed."""
        from dockyard.linux import netdev, nftables
        from dockyard.network import nft

        removed = []
        with self._lock():
            active = {str(r[0]) for r in self.db.execute(
                "SELECT DISTINCT network_id FROM endpoints")}
            for net in self.networks():
                if net.bridge and net.id not in active and netdev.exists(net.bridge):
                    netdev.delete_bridge(net.bridge)
                    removed.append(net.bridge)
            if not active:
                self._forget_nft_applied()
                nftables.run(nft.delete_script(self.table))
            else:
                self._sync()
        return removed

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """The engine root's network lock: host-side changes (bridges, the nftables table)
        and the rows they follow change together. Taken before any database transaction."""
        os.makedirs(self.config.root, mode=0o711, exist_ok=True)
        fd = os.open(os.path.join(self.config.root, "network.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def port_specs(config: Mapping[str, Any]) -> list[PortSpec]:
    """The ports to publish, from docker's HostConfig.PortBindings."""
    from dockyard.network.ports import PortSpec

    out = []
    bindings = (config.get("HostConfig") or {}).get("PortBindings") or {}
    for key, binds in bindings.items():
        port, _, proto = str(key).partition("/")
        for b in binds or [{}]:
            out.append(PortSpec(container_port=int(port), proto=proto or "tcp",
                                host_ip=str(b.get("HostIp") or ""),
                                host_port=int(b.get("HostPort") or 0)))
    return out


@value
class EndpointSettings:
    aliases: tuple[str, ...] = ()
    ip: str = ""
    mac: str = ""


def endpoint_configs(config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The container's endpoint settings by network name (docker's
    NetworkingConfig.EndpointsConfig: run --network-alias/--ip/--mac-address, and the networks
    ``network connect`` added)."""
    raw = (config.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    return {str(k): v or {} for k, v in raw.items()}


def endpoint_settings(settings: Mapping[str, Any]) -> EndpointSettings:
    ipam_config = settings.get("IPAMConfig") or {}
    return EndpointSettings(aliases=tuple(str(a) for a in settings.get("Aliases") or ()),
                            ip=str(ipam_config.get("IPv4Address") or ""),
                            mac=str(settings.get("MacAddress") or ""))


def check_endpoint(net: Network, aliases: Sequence[str] = (), ip: str = "") -> None:
    """docker's checks of an endpoint's settings on ``net`` (before anything changes)."""
    import ipaddress

    if net.name in ("host", "none"):
        raise FailedPrecondition("container cannot be disconnected from host network or "
                                 "connected to host network")
    if net.builtin and ip:
        raise InvalidArgument("user specified IP address is supported on user defined "
                              "networks only")
    if net.builtin and aliases:
        raise InvalidArgument("network-scoped alias is supported only for containers in user "
                              "defined networks")
    if ip:
        ipam.check_address(ipaddress.IPv4Network(net.subnet), ip)


def parse_extra_host(text: str, gateway: str = "") -> tuple[str, str]:
    """``--add-host name:ip`` (or ``name=ip``; ``host-gateway``: the network's gateway, the
    host's address on it) as (name, ip)."""
    import ipaddress

    sep = "=" if "=" in text else ":"
    name, found, ip = text.partition(sep)
    ip = ip.strip("[]")
    if not found or not name or not ip:
        raise InvalidArgument(f"invalid argument \"{text}\" for \"--add-host\" flag: "
                              "bad format for add-host")
    if ip == "host-gateway":
        return name, gateway or ip
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidArgument(f"invalid argument \"{text}\" for \"--add-host\" flag: "
                              f"invalid IP address in add-host: \"{ip}\"") from None
    return name, ip


def _port_free(host_ip: str, port: int, proto: str) -> bool:
    """Whether nothing on the host listens on ``port`` (a random published port must not
    shadow a host service)."""
    import socket

    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host_ip, port))     # "": every address
        except OSError:
            return False
    return True


def _check_name(name: str) -> None:
    ok = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    if not name or not set(name) <= ok or name[0] in "_.-":
        raise InvalidArgument(f'invalid network name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] '
                              "are allowed")
    if name in PREDEFINED:
        raise FailedPrecondition(f"operation is not permitted on predefined {name} network ")


def _endpoint_entry(net: Network, container_id: str,
                    ep: ipam.Endpoint | None) -> dict[str, Any]:
    """docker's EndpointSettings of NetworkSettings.Networks."""
    prefix = int(net.subnet.rpartition("/")[2]) if ep else 0
    aliases = list(ep.aliases) if ep else []
    return {"IPAMConfig": None, "Links": None, "Aliases": aliases or None,
            "MacAddress": ep.mac if ep else "", "NetworkID": net.id,
            "EndpointID": hashlib.sha256(f"{net.id}{container_id}".encode()).hexdigest()
            if ep else "",
            "Gateway": net.gateway if ep else "", "IPAddress": ep.ip if ep else "",
            "IPPrefixLen": prefix, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": None if net.builtin or ep is None else
            [*aliases, container_id[:12]]}


def _network(r: sqlite3.Row) -> Network:
    return Network(id=str(r["id"]), name=str(r["name"]), driver=str(r["driver"]),
                   subnet=str(r["subnet"]), gateway=str(r["gateway"]), bridge=str(r["bridge"]),
                   internal=bool(r["internal"]), created=float(r["created"]),
                   labels=json.loads(r["labels"]), options=json.loads(r["options"]))
