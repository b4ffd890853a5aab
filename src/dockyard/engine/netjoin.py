"""``--network container:<name|id>``: a container that joins another's network namespace, as
docker does.

What docker does, and so we do:

* **create**: ``container:`` without a name is refused ("Invalid network mode: invalid
  container format container:<name|id>"); so are the options that would give the joiner a
  network identity of its own (``--hostname``, ``--dns``, ``--add-host``, ``--mac-address``,
  ``-p``/``-P``, exposed ports, links, ``--ip``, ``--network-alias``), with docker's
  "conflicting options: ..." messages (:func:`check_conflicts`). A target that exists is
  recorded by its full id (``HostConfig.NetworkMode`` is ``container:<64 hex>``, as docker
  shows it); one that does not is kept as given and looked up at start.
* **start** (:func:`join`): the target must exist (else "No such container: <ref>"), not be the
  joiner itself ("cannot join own network") and be running ("cannot join network of a non
  running container: <ref>"). The joiner gets the target's namespace, its hostname (in its own
  UTS namespace) and its /etc/hosts, /etc/resolv.conf and /etc/hostname (the target's files,
  bind-mounted, where the target has them); it has no address, endpoint or published port of
  its own, and its NetworkSettings are empty.
* **the target goes** while the joiner runs (``stop``, ``rm -f``): allowed, as in docker; the
  namespace lives on with the joiner, without the target's interfaces (the network service
  deletes their veth pairs when it sees another pin on the namespace), so the joiner is left
  with ``lo``. Starting the joiner again needs a running target.

How: at start, the target's namespace (its pin, or ``/proc/<pid>/ns/net`` of a target that has
no pin: ``--network none`` or ``host``) is bind-mounted at the joiner's own pin path, which its
config.json names since create; the joiner's exit unpins it like any networked container's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dockyard.errors import FailedPrecondition, InvalidArgument, NotFound

if TYPE_CHECKING:
    from dockyard.engine.containers import Container, ContainerService

PREFIX = "container:"
FILES = ("hosts", "resolv.conf", "hostname")


def is_join(mode: str) -> bool:
    return mode.startswith(PREFIX)


def target_ref(mode: str) -> str:
    return mode[len(PREFIX):]


def check_format(mode: str) -> str:
    if not target_ref(mode):
        raise InvalidArgument("Invalid network mode: invalid container format "
                              "container:<name|id>")
    return mode


def resolve_mode(svc: ContainerService, mode: str) -> str:
    """The mode to record: ``container:<full id>`` of a target that exists, else as given."""
    check_format(mode)
    try:
        return PREFIX + svc.get(target_ref(mode)).id
    except NotFound:
        return mode


def check_conflicts(*, hostname: bool = False, links: bool = False, dns: bool = False,
                    extra_hosts: bool = False, mac: bool = False, ports: bool = False,
                    exposed: bool = False, ip: bool = False, aliases: bool = False) -> None:
    """docker's checks of a ``container:`` mode against the other network options, in its
    order (the CLI's alias check first, then the daemon's validateNetContainerMode, then its
    endpoint check)."""
    if aliases:
        raise InvalidArgument("network-scoped aliases are only supported for user-defined "
                              "networks")
    for bad, what in ((hostname, "hostname and the network mode"),
                      (links, "container type network can't be used with links. This would "
                              "result in undefined behavior"),
                      (dns, "dns and the network mode"),
                      (extra_hosts, "custom host-to-IP mapping and the network mode"),
                      (mac, "mac-address and the network mode"),
                      (ports, "port publishing and the container type network mode"),
                      (exposed, "port exposing and the container type network mode")):
        if bad:
            raise InvalidArgument(f"conflicting options: {what}")
    if ip:
        raise InvalidArgument("user specified IP address is supported on user defined "
                              "networks only")


def check_request(body: Mapping[str, Any]) -> None:
    """:func:`check_conflicts` for docker's create JSON (the REST API)."""
    host = body.get("HostConfig") or {}
    mode = str(host.get("NetworkMode") or "")
    if not is_join(mode):
        return
    check_format(mode)
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    ip = any(((ep or {}).get("IPAMConfig") or {}).get("IPv4Address")
             for ep in endpoints.values())
    aliases = any((ep or {}).get("Aliases") for ep in endpoints.values())
    check_conflicts(hostname=bool(body.get("Hostname")), links=bool(host.get("Links")),
                    dns=bool(host.get("Dns")), extra_hosts=bool(host.get("ExtraHosts")),
                    mac=bool(body.get("MacAddress")),
                    ports=bool(host.get("PortBindings")) or bool(host.get("PublishAllPorts")),
                    exposed=bool(body.get("ExposedPorts")), ip=bool(ip), aliases=bool(aliases))


def target_of(svc: ContainerService, c: Container) -> Container:
    """The running container whose namespace ``c`` joins (docker's getNetworkedContainer)."""
    from dockyard.engine.networks import network_mode

    ref = target_ref(network_mode(c.config))
    target = svc.get(ref)       # NotFound: "No such container: <ref>"
    if target.id == c.id:
        raise InvalidArgument("cannot join own network")
    if not target.running or not target.pid:
        raise FailedPrecondition(f"cannot join network of a non running container: {ref}")
    return target


def join(svc: ContainerService, c: Container) -> None:
    """Before ``c`` starts: pin the target's namespace at ``c``'s pin path, and make ``c``'s
    config.json take the target's hostname and /etc files."""
    from dockyard.engine.networks import netns_path, network_mode, wants_network
    from dockyard.linux import netns

    target = target_of(svc, c)
    run_root = os.path.dirname(svc.run_dir)
    pin = netns_path(run_root, c.id)
    own = netns_path(run_root, target.id)
    source = own if netns.is_pinned(own) else f"/proc/{target.pid}/ns/net"
    netns.remove(pin)           # what a crash or failed launch left
    netns.pin(source, pin)
    try:
        host_mode = network_mode(target.config) == "host"
        _rewrite_spec(svc, c, target, networked=wants_network(network_mode(target.config)),
                      host_mode=host_mode)
    except BaseException:
        netns.remove(pin)
        raise


def _rewrite_spec(svc: ContainerService, c: Container, target: Container, *, networked: bool,
                  host_mode: bool) -> None:
    from dockyard.db import transaction
    from dockyard.network import files

    bundle = svc.bundle(c.id)
    target_bundle = svc.bundle(target.id)
    spec_path = os.path.join(bundle, "config.json")
    with open(spec_path) as f:
        spec = json.load(f)
    with open(os.path.join(target_bundle, "config.json")) as f:
        target_spec = json.load(f)
    hostname = str(target_spec.get("hostname") or "")
    # a target that joined another itself: the files it was given
    theirs_by_name = {str(m.get("destination", ""))[len("/etc/"):]: str(m.get("source", ""))
                      for m in target_spec.get("mounts", [])
                      if str(m.get("destination", "")) in {f"/etc/{n}" for n in FILES}}
    if not hostname:            # a host-mode target: the host's name
        import socket

        hostname = socket.gethostname()
    sources = {}
    for name in FILES:
        theirs = theirs_by_name.get(name) or os.path.join(target_bundle, name)
        if (networked or name in theirs_by_name) and os.path.exists(theirs):
            sources[name] = theirs
            continue
        mine = os.path.join(bundle, name)      # a target without files of its own
        if name == "hosts":
            files.write(mine, files.hosts(hostname, "", []))
        elif name == "resolv.conf":
            files.write(mine, files.resolv_conf_with(files.host_resolv_conf(),
                                                     files.DnsSettings()))
        else:
            files.write(mine, hostname + "\n")
        sources[name] = mine
    for m in spec.get("mounts", []):
        name = m.get("destination", "")[len("/etc/"):]
        if m.get("destination", "").startswith("/etc/") and name in sources:
            m["source"] = sources[name]
    spec["hostname"] = hostname
    process = spec.setdefault("process", {})
    process["env"] = [f"HOSTNAME={hostname}" if e.startswith("HOSTNAME=") else e
                      for e in process.get("env", [])]
    if host_mode:               # the host's own namespace: its sysctls are not ours to set
        sysctl = spec.get("linux", {}).get("sysctl") or {}
        for key in [k for k in sysctl if k.startswith("net.")]:
            del sysctl[key]
    tmp = spec_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(spec, f)
    os.replace(tmp, spec_path)
    with transaction(svc.db) as db:
        row = db.execute("SELECT config FROM containers WHERE id = ?", (c.id,)).fetchone()
        if row is not None:
            config = json.loads(row[0])
            config.setdefault("Config", {})["Hostname"] = hostname
            db.execute("UPDATE containers SET config = ? WHERE id = ?",
                       (json.dumps(config), c.id))


def files_of(svc: ContainerService, c: Container) -> dict[str, str]:
    """inspect's ResolvConfPath, HostnamePath and HostsPath of a joiner: the target's."""
    from dockyard.engine.networks import network_mode, wants_network

    keys = {"resolv.conf": "ResolvConfPath", "hostname": "HostnamePath", "hosts": "HostsPath"}
    try:
        target = svc.get(target_ref(network_mode(c.config)))
    except (NotFound, InvalidArgument):
        return {k: "" for k in keys.values()}
    networked = wants_network(network_mode(target.config))
    return {key: os.path.join(svc.bundle(target.id), name) if networked else ""
            for name, key in keys.items()}
