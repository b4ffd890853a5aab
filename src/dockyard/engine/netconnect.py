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
        nets.connect_running(c.id, net, name=c.name, aliases=aliases, ip=ip)
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
    _update(svc, c, net.name, None)


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
