"""``network connect`` and ``network disconnect``: a container's extra networks.

What a container is connected to is part of its configuration (docker's
NetworkingConfig.EndpointsConfig, by network name), so a restart connects it again; a running
container is connected or disconnected at once by the network service
(:meth:`NetworkService.connect_running` / :meth:`NetworkService.disconnect_running`). The host
changes first, then the configuration: a failure changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dockyard.db import transaction
from dockyard.errors import FailedPrecondition

if TYPE_CHECKING:
    from dockyard.engine.containers import Container, ContainerService


def connect(svc: ContainerService, net_ref: str, ref: str, *, aliases: Sequence[str] = (),
            ip: str = "") -> None:
    from dockyard.engine.networks import (
        check_endpoint,
        endpoint_configs,
        network_mode,
        wants_network,
    )

    nets = svc.networks()
    net = nets.get(net_ref)
    c = svc.get(ref)
    mode = network_mode(c.config)
    if not wants_network(mode):
        raise FailedPrecondition("container sharing network namespace with another container "
                                 "or host cannot be connected to any other network")
    check_endpoint(net, aliases, ip)
    primary = nets.get(mode)
    configured = net.id == primary.id or net.name in endpoint_configs(c.config)
    if configured and (not c.running or any(e.network_id == net.id
                                            for e in nets.endpoints(c.id))):
        raise FailedPrecondition(f"endpoint with name {c.name} already exists in network "
                                     f"{net.name}")
    if c.running:
        had_user = _on_user_network(svc, c.id)
        nets.connect_running(c.id, net, name=c.name, aliases=aliases, ip=ip)
        if not had_user and not net.builtin:
            _resolv_conf(svc, c, embedded=True)
    settings: dict[str, Any] = {}
    if aliases:
        settings["Aliases"] = list(aliases)
    if ip:
        settings["IPAMConfig"] = {"IPv4Address": ip}
    _update(svc, c, net.name, settings)


def disconnect(svc: ContainerService, net_ref: str, ref: str, *, force: bool = False) -> None:
    from dockyard.engine.networks import endpoint_configs, network_mode

    nets = svc.networks()
    net = nets.get(net_ref)
    c = svc.get(ref)
    connected = c.running and any(e.network_id == net.id for e in nets.endpoints(c.id))
    configured = net.name in endpoint_configs(c.config) or network_mode(c.config) in (
        net.name, net.id)
    if not connected and not (configured and not c.running):
        if force and not c.running and not configured:
            return
        raise FailedPrecondition(f"container {c.id} is not connected to network {net.name}")
    if connected:
        nets.disconnect_running(c.id, net, name=c.name)
        if not net.builtin and not _on_user_network(svc, c.id):
            _resolv_conf(svc, c, embedded=False)
    _update(svc, c, net.name, None)


def _on_user_network(svc: ContainerService, container_id: str) -> bool:
    return svc.db.execute(
        "SELECT 1 FROM endpoints e JOIN networks n ON n.id = e.network_id "
        "WHERE e.container_id = ? AND n.name NOT IN ('bridge', 'host', 'none')",
        (container_id,)).fetchone() is not None


def _resolv_conf(svc: ContainerService, c: Container, *, embedded: bool) -> None:
    """A running container's /etc/resolv.conf follows its networks (docker's rebuild of it):
    the embedded server from its first user-defined network on, the host's resolvers again
    once it has none (the embedded server no longer answers there). Written in place: it is
    bind-mounted in the container."""
    import os

    from dockyard.network import files

    path = os.path.join(svc.bundle(c.id), "resolv.conf")
    if not os.path.exists(path):
        return
    host = c.config.get("HostConfig") or {}
    dns = files.DnsSettings(servers=tuple(host.get("Dns") or ()),
                            search=tuple(host.get("DnsSearch") or ()),
                            options=tuple(host.get("DnsOptions") or ()))
    resolv = files.host_resolv_conf()
    files.write(path, files.resolv_conf_embedded(resolv, dns) if embedded
                else files.resolv_conf_with(resolv, dns))


def _update(svc: ContainerService, c: Container, network: str,
            settings: dict[str, Any] | None) -> None:
    """Record (or, with None, forget) the container's endpoint settings on ``network``."""
    with transaction(svc.db) as db:
        row = db.execute("SELECT config FROM containers WHERE id = ?", (c.id,)).fetchone()
        if row is None:
            return
        config = json.loads(row[0])
        endpoints = config.setdefault("NetworkingConfig", {}).setdefault("EndpointsConfig", {})
        if settings is None:
            endpoints.pop(network, None)
        else:
            endpoints[network] = settings
        db.execute("UPDATE containers SET config = ? WHERE id = ?", (json.dumps(config), c.id))
