"""The engine's side of the embedded DNS server (:mod:`dockyard.network.dns`): the names it
answers, read from the engine database, and the server process of an engine root — spawned,
given a container's sockets, told to drop them. ``python -m dockyard.engine.dns ROOT RUN_ROOT
[CONFIG]`` is the server.

Every call here is made under the engine root's network lock (NetworkService._lock), which is
what keeps a spawn, a registration and the server's own exit from racing.

What a container resolves (docker's rules): on each user-defined network it is connected to,
every container's name, 12-hex short id, network-scoped aliases and ``name.network``; an
address of those networks resolves back (PTR) to ``name.network``. Nothing on the default
bridge. Everything else goes to the container's ``--dns`` servers, else the engine's ``dns``
setting, else the host's resolv.conf nameservers (loopback ones too: the server forwards from
the host's namespace).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from dockyard.errors import Unavailable
from dockyard.logs import get_logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.engine.config import EngineConfig

log = get_logger(__name__)


def control_path(run_root: str) -> str:
    return os.path.join(run_root, "dns.sock")


def pid_path(run_root: str) -> str:
    return os.path.join(run_root, "dns.pid")


def register(config: EngineConfig, run_root: str, container_id: str, netns: str) -> None:
    """Make the server answer on 127.0.0.11:53 in the namespace pinned at ``netns`` (spawning
    the server if none runs)."""
    from dockyard.linux import netns as linux_netns
    from dockyard.network import dns

    udp, tcp = linux_netns.run_in(netns, dns.bind_sockets)
    try:
        for _ in range(3):
            reply = dns.request(control_path(run_root), {"op": "add", "id": container_id,
                                                         "netns": netns},
                                [udp.fileno(), tcp.fileno()])
            if reply is None:
                _spawn(config, run_root)
                continue
            if not reply.get("ok"):
                raise Unavailable(f"embedded DNS server: {reply.get('error')}")
            return
    finally:
        udp.close()
        tcp.close()
    raise Unavailable("the embedded DNS server did not start (see "
                      f"{os.path.join(run_root, 'dns.log')})")


def unregister(run_root: str, container_id: str) -> None:
    """The server lets the container's namespace go (it leaves once it serves none)."""
    from dockyard.network import dns

    path = control_path(run_root)
    if not os.path.exists(path):
        return
    try:
        dns.request(path, {"op": "drop", "id": container_id})
    except OSError as e:      # a dead server: its sockets went with it
        log.warning("embedded DNS server at %s: %s", path, e)


def _spawn(config: EngineConfig, run_root: str) -> None:
    """Start the server; it is listening when this returns. Exec'd, not forked: the caller
    may be a multi-threaded daemon."""
    os.makedirs(run_root, mode=0o711, exist_ok=True)
    argv = [sys.executable, "-m", "dockyard.engine.dns", config.root, run_root]
    if os.path.exists(config.config_file):
        argv.append(config.config_file)
    with open(os.path.join(run_root, "dns.log"), "ab") as errors:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=errors, start_new_session=True, close_fds=True,
                                cwd="/")
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        if proc.pid > 0:
            proc.kill()
        proc.wait()
        raise Unavailable("the embedded DNS server did not start in time") from None
    if code != 0:
        raise Unavailable(f"the embedded DNS server failed to start (exit {code}; see "
                          f"{os.path.join(run_root, 'dns.log')})")


# --- what the server answers -------------------------------------------------------------------


class DatabaseRecords:
    """:class:`dockyard.network.dns.Records` over the engine database (read-only: one
    connection, each query its own read transaction, which WAL never blocks)."""

    def __init__(self, config: EngineConfig) -> None:
        from dockyard.db import open_database

        self.config = config
        self.db: sqlite3.Connection = open_database(config.root)

    def _peers(self, container_id: str) -> list[sqlite3.Row]:
        """Every endpoint on the user networks of ``container_id``."""
        return self.db.execute(
            "SELECT e.ip, e.aliases, c.id, c.name, n.name AS network FROM endpoints e "
            "JOIN containers c ON c.id = e.container_id "
            "JOIN networks n ON n.id = e.network_id "
            "WHERE n.name != 'bridge' AND e.network_id IN "
            "(SELECT network_id FROM endpoints WHERE container_id = ?)",
            (container_id,)).fetchall()

    def addresses(self, container_id: str, name: str) -> list[str] | None:
        out = []
        peers = self._peers(container_id)
        for r in peers:
            cname = str(r["name"]).lstrip("/").lower()
            names = {cname, str(r["id"])[:12], f"{cname}.{str(r['network']).lower()}",
                     *(str(a).lower() for a in json.loads(r["aliases"]))}
            if name in names and str(r["ip"]) not in out:
                out.append(str(r["ip"]))
        if not out:         # a link's alias: only the linking container resolves it
            target = self._link_target(container_id, name)
            out = [str(r["ip"]) for r in peers
                   if target and str(r["name"]).lstrip("/").lower() == target]
        return out or None

    def _link_target(self, container_id: str, alias: str) -> str:
        """The container a link of ``container_id`` names ``alias`` (its endpoint settings'
        ``Links``, ``name:alias``), in lower case; "" if none."""
        row = self.db.execute("SELECT config FROM containers WHERE id = ?",
                              (container_id,)).fetchone()
        if row is None:
            return ""
        endpoints = (json.loads(row[0]).get("NetworkingConfig") or {}).get(
            "EndpointsConfig") or {}
        for settings in endpoints.values():
            for link in (settings or {}).get("Links") or ():
                target, _, name = str(link).partition(":")
                if name.lower() == alias:
                    return target.lower()
        return ""

    def names(self, container_id: str, ip: str) -> list[str]:
        return [f"{str(r['name']).lstrip('/')}.{r['network']}"
                for r in self._peers(container_id) if str(r["ip"]) == ip]

    def upstreams(self, container_id: str) -> list[str]:
        from dockyard.network import files

        row = self.db.execute("SELECT config FROM containers WHERE id = ?",
                              (container_id,)).fetchone()
        if row is not None:
            servers = (json.loads(row[0]).get("HostConfig") or {}).get("Dns") or []
            if servers:
                return [str(s) for s in servers]
        configured = self.config.settings.get("dns")
        if isinstance(configured, list) and configured:
            return [str(s) for s in configured]
        return files.nameservers(files.host_resolv_conf()) or list(files.DEFAULT_NAMESERVERS)


def main(argv: list[str]) -> int:
    import socket

    from dockyard.engine.config import load_config
    from dockyard.network import dns

    root, run_root = argv[0], argv[1]
    config = load_config(root, argv[2] if len(argv) > 2 else None, run_root)
    control = control_path(run_root)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        os.unlink(control)      # a dead server's (we run under the network lock)
    except FileNotFoundError:
        pass
    listener.bind(control)
    listener.listen(64)
    # Once listening, the spawner may go on: our parent's exit says so. Forking here is safe:
    # this is a fresh, single-threaded interpreter.
    if os.fork():
        os._exit(0)
    with open(pid_path(run_root), "w") as f:
        f.write(f"{os.getpid()}\n")
    try:
        records = DatabaseRecords(config)
        lock = os.path.join(config.root, "network.lock")
        server = dns.Server(listener, records, lock=lambda: dns.try_lock(lock),
                            control_path=control)
        server.run()
    finally:
        try:
            with open(pid_path(run_root)) as f:
                mine = f.read().strip() == str(os.getpid())
            if mine:        # not a successor's
                os.unlink(pid_path(run_root))
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
