"""The networks endpoints (``/networks``...) and the network side of a container's create and
inspect: docker's request and response shapes over the engine's network service
(engine/networks.py) and ``network connect``/``disconnect`` (engine/netconnect.py).

Status codes follow docker's errdefs where the engine's category differs: a pre-defined
network and a network with active endpoints cannot be removed (403, docker's Forbidden), an
overlapping pool is refused with 403 (libnetwork's ErrPoolOverlap), an endpoint that exists
already is 403, and connecting a container that shares the host's or another container's
namespace is a bad request (400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dockyard.api.http import version_before
from dockyard.engine.prunefilter import label_matches
from dockyard.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)

if TYPE_CHECKING:
    from dockyard.api.handlers import App
    from dockyard.api.http import Handler, Request
    from dockyard.engine.containers import Container, ContainerService
    from dockyard.engine.create import CreateRequest
    from dockyard.engine.networks import Network, NetworkService

_LIST_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")


# --- filters ------------------------------------------------------------------------------------


def match(pattern: str, source: str) -> bool:
    """docker's ``filters.Match``: equal, or the value read as a regular expression finds
    something in ``source``."""
    if pattern == source:
        return True
    try:
        return re.search(pattern, source) is not None
    except re.error:
        return False


def _truth(key: str, value: str) -> bool:
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise InvalidArgument(f"invalid filter '{key}={value}'")


def _used(svc: ContainerService, nets: NetworkService) -> set[str]:
    """Names and ids of the networks some container (running or not) is configured for, or
    connected to."""
    import json

    from dockyard.engine.networks import endpoint_configs, network_mode

    used: set[str] = set()
    for (config,) in svc.db.execute("SELECT config FROM containers"):
        doc = json.loads(config)
        used.add(network_mode(doc))
        used.update(endpoint_configs(doc))
    used.update(str(r[0]) for r in svc.db.execute("SELECT DISTINCT network_id FROM endpoints"))
    return used


def list_matches(net: Network, filters: Mapping[str, list[str]], used: set[str]) -> bool:
    for key, values in filters.items():
        if not values:
            continue
        if key == "name":
            ok = any(match(v, net.name) for v in values)
        elif key == "id":
            ok = any(match(v, net.id) for v in values)
        elif key == "driver":
            ok = net.driver in values
        elif key == "scope":
            ok = "local" in values
        elif key == "label":
            ok = all(label_matches(net.labels, v) for v in values)
        elif key == "type":
            for v in values:
                if v not in ("custom", "builtin"):
                    raise InvalidArgument(f"invalid filter: 'type'='{v}'")
            ok = ("builtin" if net.builtin else "custom") in values
        elif key == "dangling":
            wants = {_truth(key, v) for v in values}
            dangling = not net.builtin and net.name not in used and net.id not in used
            ok = dangling in wants
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
        if not ok:
            return False
    return True


def _check_keys(filters: Mapping[str, list[str]], allowed: tuple[str, ...]) -> None:
    for key in filters:
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")


# --- endpoints ----------------------------------------------------------------------------------


def networks_list(app: App, h: Handler, req: Request) -> None:
    filters = req.filters()
    _check_keys(filters, _LIST_FILTERS)
    with app.services() as svc:
        nets = svc.networks()
        used = _used(svc, nets)
        out = []
        for net in nets.networks():
            if list_matches(net, filters, used):
                doc = resource(nets, net)
                doc["Containers"] = {}      # docker: not filled in a list (API 1.28+)
                out.append(doc)
    h.reply_json(200, out)


def network_inspect(app: App, h: Handler, req: Request, id: str) -> None:
    scope = req.arg("scope")
    if scope and scope != "local":
        raise NotFound(f"network {id} not found")
    with app.services() as svc:
        nets = svc.networks()
        h.reply_json(200, resource(nets, nets.get(id)))


def resource(nets: NetworkService, net: Network) -> dict[str, Any]:
    """docker's NetworkResource: a user-defined network's Options are the ones it was created
    with (docker-compose compares them with its file's and recreates on a difference)."""
    doc = nets.inspect(net)
    if not net.builtin:
        doc["Options"] = dict(net.options)
    return doc


def _create_args(body: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's create arguments from docker's NetworkCreateRequest (checked: what the
    engine cannot do is a 400, never ignored)."""
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("network name must not be empty")
    driver = str(body.get("Driver") or "bridge")
    if body.get("EnableIPv6"):
        raise InvalidArgument("IPv6 networks are not supported by Dockyard yet")
    if body.get("Ingress") or body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get(
            "Network"):
        raise InvalidArgument("ingress and config-only networks are not supported (no swarm)")
    if str(body.get("Scope") or "local") != "local":
        raise InvalidArgument(f"unsupported network scope {body.get('Scope')!r}")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("IPAM: expected an object")
    if str(ipam.get("Driver") or "default") != "default":
        raise NotFound(f'plugin "{ipam.get("Driver")}" not found')
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise InvalidArgument("IPAM.Config: expected a list of objects")
    if len(configs) > 1:
        raise InvalidArgument("only one IPv4 subnet per network is supported")
    subnet = gateway = ""
    if configs:
        conf = configs[0]
        if conf.get("IPRange") or conf.get("AuxiliaryAddresses"):
            raise InvalidArgument("IPAM IPRange and AuxiliaryAddresses are not supported by "
                                  "Dockyard yet")
        subnet = str(conf.get("Subnet") or "")
        gateway = str(conf.get("Gateway") or "")
        if gateway and not subnet:
            raise InvalidArgument("every ip-range or gateway must have a corresponding subnet")
    labels = body.get("Labels") or {}
    options = body.get("Options") or {}
    if not isinstance(labels, dict) or not isinstance(options, dict):
        raise InvalidArgument("Labels and Options: expected objects")
    return {"name": name, "driver": driver, "subnet": subnet, "gateway": gateway,
            "internal": bool(body.get("Internal")),
            "labels": {str(k): str(v) for k, v in labels.items()},
            "options": {str(k): str(v) for k, v in options.items()}}


def network_create(app: App, h: Handler, req: Request) -> None:
    from dockyard.engine.networks import PREDEFINED

    args = _create_args(req.json())
    if args["name"] in PREDEFINED:
        raise PermissionDenied(f"operation is not permitted on predefined {args['name']} "
                               "network ")
    with app.services() as svc:
        try:
            net = svc.networks().create(**args)
        except FailedPrecondition as e:     # an overlapping pool: docker's Forbidden
            raise PermissionDenied(e.message) from None
        svc_event(svc, "create", net)
    h.reply_json(201, {"Id": net.id, "Warning": ""})


def network_delete(app: App, h: Handler, req: Request, id: str) -> None:
    with app.services() as svc:
        nets = svc.networks()
        net = nets.get(id)
        if net.builtin:
            raise PermissionDenied(f"{net.name} is a pre-defined network and cannot be removed")
        try:
            nets.remove(net.id)
        except FailedPrecondition as e:     # active endpoints: docker's Forbidden
            raise PermissionDenied(e.message) from None
        svc_event(svc, "destroy", net)
    h.reply(204)


def networks_prune(app: App, h: Handler, req: Request) -> None:
    from dockyard.engine import prunefilter

    spare = prunefilter.parse(req.filters())
    with app.services() as svc:
        nets = svc.networks()
        used = _used(svc, nets)
        removed = []
        for net in nets.networks():
            if net.builtin or net.name in used or net.id in used:
                continue
            if spare.keeps(net.created, net.labels):
                continue
            try:
                nets.remove(net.id)
            except (FailedPrecondition, NotFound):  # taken or removed meanwhile
                continue
            svc_event(svc, "destroy", net)
            removed.append(net.name)
    h.reply_json(200, {"NetworksDeleted": removed or None})


def _endpoint_body(doc: Any, *, links: bool = False) -> tuple[list[str], str]:
    """(aliases, IPv4 address) of docker's EndpointSettings, checked (its Links refused
    unless the caller takes them)."""
    if doc is None:
        return [], ""
    if not isinstance(doc, dict):
        raise InvalidArgument("EndpointConfig: expected an object")
    aliases = doc.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise InvalidArgument("EndpointConfig.Aliases: expected a list of strings")
    ipam = doc.get("IPAMConfig") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("EndpointConfig.IPAMConfig: expected an object")
    if ipam.get("IPv6Address"):
        raise InvalidArgument("IPv6 addresses are not supported by Dockyard yet")
    if doc.get("Links") and not links:
        raise InvalidArgument("links are supported at create only by Dockyard")
    return list(dict.fromkeys(aliases)), str(ipam.get("IPv4Address") or "")


def network_connect(app: App, h: Handler, req: Request, id: str) -> None:
    from dockyard.engine import netconnect
    from dockyard.engine.networks import network_mode, wants_network

    body = req.json()
    ref = body.get("Container")
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument("container is required")
    aliases, ip = _endpoint_body(body.get("EndpointConfig"))
    with app.services() as svc:
        net = svc.networks().get(id)
        c = svc.get(ref)
        if net.name in ("host", "none") or not wants_network(network_mode(c.config)):
            raise InvalidArgument("container sharing network namespace with another container "
                                  "or host cannot be connected to any other network"
                                  if net.name not in ("host", "none") else
                                  "container cannot be disconnected from host network or "
                                  "connected to host network")
        c_short = c.id[:12]
        aliases = [a for a in aliases if a != c_short]  # docker-py/compose send the short id
        try:
            netconnect.connect(svc, net.id, c.id, aliases=aliases, ip=ip)
        except FailedPrecondition as e:     # an existing endpoint: docker's Forbidden
            raise PermissionDenied(e.message) from None
        svc_event(svc, "connect", net, container=c.id)
    h.reply(200, b"", "text/plain")


def network_disconnect(app: App, h: Handler, req: Request, id: str) -> None:
    from dockyard.engine import netconnect

    body = req.json()
    ref = body.get("Container")
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument("container is required")
    force = bool(body.get("Force"))
    with app.services() as svc:
        net = svc.networks().get(id)
        if net.name in ("host", "none"):
            raise InvalidArgument("container cannot be disconnected from host network or "
                                  "connected to host network")
        try:
            c = svc.get(ref)
        except NotFound:
            if force:       # docker: force removes a stale endpoint of a container gone
                h.reply(200, b"", "text/plain")
                return
            raise
        netconnect.disconnect(svc, net.id, c.id, force=force)
        svc_event(svc, "disconnect", net, container=c.id)
    h.reply(200, b"", "text/plain")


def svc_event(svc: ContainerService, action: str, net: Network, **extra: str) -> None:
    """Journal a network event (docker's Type "network")."""
    from dockyard.engine import events

    events.record(svc.config.root, "network", action, net.id,
                  {"name": net.name, "type": net.driver, **extra}, db=svc.db)


# --- containers: create and inspect -------------------------------------------------------------


def with_network_settings(svc: ContainerService, creq: CreateRequest,
                          body: Mapping[str, Any]) -> CreateRequest:
    """``creq`` with the network side of docker's create body: HostConfig's ExtraHosts, Dns,
    DnsSearch, DnsOptions, PublishAllPorts and NetworkingConfig.EndpointsConfig (aliases, IPv4
    address, MAC), checked before anything is made, keyed by network name as the engine
    keeps them. The networks must exist (400)."""
    try:
        return _with_network_settings(svc, creq, body)
    except NotFound as e:
        # docker creates the container and fails its start; refused here, nothing is made.
        # Not a 404: the docker CLI reads a 404 of create as a missing image and pulls
        raise InvalidArgument(e.message) from None


def _with_network_settings(svc: ContainerService, creq: CreateRequest,
                           body: Mapping[str, Any]) -> CreateRequest:
    import ipaddress

    from dockyard.engine.networks import check_endpoint, parse_extra_host, wants_network
    from dockyard.network.ipam import check_mac
    from dockyard.values import replace

    host = body.get("HostConfig") or {}
    mode = creq.opts.network
    nets = svc.networks()
    if mode not in ("none", "host", "default", "bridge"):
        nets.check_mode(mode)
    out: dict[str, Any] = {}
    for key in ("ExtraHosts", "Dns", "DnsSearch", "DnsOptions"):
        val = host.get(key)
        if val is None or val == []:
            continue
        if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
            raise InvalidArgument(f"HostConfig.{key}: expected a list of strings")
        out[key] = list(val)
    for h in out.get("ExtraHosts", []):
        parse_extra_host(h)
    for s in out.get("Dns", []):
        try:
            ipaddress.ip_address(s)
        except ValueError:
            raise InvalidArgument(f"{s} is not an ip address") from None
    publish_all = bool(host.get("PublishAllPorts"))
    if publish_all:
        out["PublishAllPorts"] = True
    networking = body.get("NetworkingConfig") or {}
    if not isinstance(networking, dict):
        raise InvalidArgument("NetworkingConfig: expected an object")
    raw = networking.get("EndpointsConfig") or {}
    if not isinstance(raw, dict):
        raise InvalidArgument("NetworkingConfig.EndpointsConfig: expected an object")
    endpoints: dict[str, Any] = {}
    primary = "bridge" if mode == "default" else mode
    if wants_network(mode):
        primary_net = nets.get(primary)
        for ref, doc in raw.items():
            net = nets.get("bridge" if ref == "default" else ref)
            aliases, ip = _endpoint_body(doc, links=not net.builtin)
            mac = str((doc or {}).get("MacAddress") or "")
            mac = check_mac(mac) if mac else ""
            check_endpoint(net, aliases, ip)
            settings: dict[str, Any] = {}
            links = list((doc or {}).get("Links") or [])
            if net.id == primary_net.id:
                links = [*(host.get("Links") or []), *links]
            if links:
                settings["Links"] = parse_links(svc, links)
            if aliases:
                settings["Aliases"] = aliases
            if ip:
                settings["IPAMConfig"] = {"IPv4Address": ip}
            if mac:
                settings["MacAddress"] = mac
            if settings or net.id != primary_net.id:
                endpoints[net.name] = settings
        if host.get("Links") and primary_net.name not in endpoints:
            endpoints[primary_net.name] = {"Links": parse_links(svc, host["Links"])}
    elif any(ref not in (mode, "default") for ref in raw):
        raise InvalidArgument("conflicting options: cannot attach both user-defined and "
                              f"non-user-defined network-modes ({mode})")
    if endpoints:
        out["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    return replace(creq, publish_all=publish_all, network_settings=out)


def parse_links(svc: ContainerService, links: Any) -> list[str]:
    """docker's links (``container[:alias]``, or the legacy ``/container:/me/alias``) as
    ``name:alias``; each container must exist."""
    if not isinstance(links, list) or not all(isinstance(x, str) for x in links):
        raise InvalidArgument("Links: expected a list of strings")
    out = []
    for text in links:
        target, _, alias = text.partition(":")
        alias = alias.rsplit("/", 1)[-1] or target.strip("/")
        if not target.strip("/") or not alias:
            raise InvalidArgument(f"invalid link {text!r}: expected container[:alias]")
        try:
            c = svc.get(target.strip("/"))
        except NotFound:
            raise InvalidArgument(f"could not get container for {target.strip('/')}") from None
        link = f"{c.name}:{alias}"
        if link not in out:
            out.append(link)
    return out


def container_networks(svc: ContainerService, c: Container, settings: dict[str, Any],
                       version: str) -> dict[str, Any]:
    """docker's NetworkSettings of ``c`` as a client of API ``version`` sees them: the networks
    a stopped container is configured for are listed too (with their aliases and IPAMConfig),
    and before API 1.45 the container's short id is among the aliases of its user-defined
    networks (docker-compose looks for it to know a container is connected)."""
    from dockyard.engine.networks import endpoint_configs, network_mode, wants_network

    mode = network_mode(c.config)
    if not wants_network(mode):
        if mode in ("host", "none"):
            nets = svc.networks()
            net = nets.get(mode)
            settings.setdefault("Networks", {})[net.name] = _empty_entry(net)
        return settings
    nets = svc.networks()
    shown = settings.setdefault("Networks", {})
    configured = endpoint_configs(c.config)
    for name in configured:
        if name in shown:
            continue
        try:
            net = nets.get(name)
        except NotFound:
            continue
        shown[net.name] = _empty_entry(net)
    old = version_before(version, "1.45")
    for name, entry in shown.items():
        conf = configured.get(name) or {}
        if conf.get("IPAMConfig") and not entry.get("IPAMConfig"):
            entry["IPAMConfig"] = dict(conf["IPAMConfig"])
        if not entry.get("Aliases") and conf.get("Aliases"):
            entry["Aliases"] = list(conf["Aliases"])
        if conf.get("Links"):
            entry["Links"] = list(conf["Links"])
        dns = entry.get("DNSNames")
        if dns is not None and c.name not in dns:     # docker: the name comes first
            entry["DNSNames"] = [c.name, *dns]
        if old and name not in ("bridge", "host", "none"):
            aliases = list(entry.get("Aliases") or [])
            if c.id[:12] not in aliases:
                aliases.append(c.id[:12])
            entry["Aliases"] = aliases
    return settings


def _empty_entry(net: Network) -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "",
            "NetworkID": net.id, "EndpointID": "", "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DNSNames": None}
