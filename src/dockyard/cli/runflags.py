"""``run``/``create`` flags → the engine's RunOptions, and the container's docker-shaped config
(what ``inspect`` shows as Config and HostConfig)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.engine.containers import Container, ContainerService
    from dockyard.engine.create import CreateRequest
    from dockyard.engine.specgen import RunOptions


def run_options(a: argparse.Namespace) -> RunOptions:
    from dockyard.engine import runopts as ro
    from dockyard.engine.specgen import RunOptions

    env: list[str] = []
    for path in a.env_file:
        env += ro.parse_env_file(path)
    env += [ro.parse_env(e) for e in a.env]
    entrypoint = None if a.entrypoint is None else (
        (a.entrypoint,) if a.entrypoint else ("",))
    return RunOptions(
        command=tuple(a.command),
        entrypoint=entrypoint,
        env=tuple(env),
        workdir=a.workdir or "",
        user=a.user or "",
        hostname=a.hostname or "",
        labels=dict(ro.parse_label(x) for x in a.label),
        read_only=a.read_only,
        tmpfs=tuple(ro.parse_tmpfs(t) for t in a.tmpfs),
        privileged=a.privileged,
        cap_add=tuple(a.cap_add),
        cap_drop=tuple(a.cap_drop),
        security=ro.parse_security_opts(a.security_opt),
        devices=tuple(ro.parse_device(d) for d in a.device),
        shm_size=ro.parse_shm_size(a.shm_size) if a.shm_size else 0,
        ulimits=tuple(ro.parse_ulimit(u) for u in a.ulimit),
        memory=ro.parse_memory(a.memory) if a.memory else 0,
        memory_swap=ro.parse_memory_swap(a.memory_swap) if a.memory_swap else 0,
        nano_cpus=ro.parse_cpus(a.cpus) if a.cpus else 0,
        cpu_shares=ro.parse_int_flag(a.cpu_shares, "-c, --cpu-shares") if a.cpu_shares
        else 0,
        cpuset_cpus=a.cpuset_cpus or "",
        pids_limit=ro.parse_int_flag(a.pids_limit, "--pids-limit") if a.pids_limit
        else None,
        stop_signal=a.stop_signal or "",
        network=a.network,
        init=a.init,
        tty=a.tty,
        stdin_open=a.interactive,
    )


def log_config(a: argparse.Namespace) -> dict[str, Any]:
    """HostConfig.LogConfig from --log-driver and --log-opt (checked as docker does)."""
    from dockyard.engine.logopts import check_log_config

    opts: dict[str, str] = {}
    for item in a.log_opt:
        key, _, value = item.partition("=")   # docker's CLI: "key" alone is key=""
        opts[key] = value
    if a.log_driver == "none" and opts:
        raise InvalidArgument("invalid logging opts for driver none")   # docker's CLI check
    return {"Type": a.log_driver, "Config": check_log_config(a.log_driver, opts)}


def create_request(a: argparse.Namespace) -> CreateRequest:
    """The engine's create request for ``run``/``create`` flags."""
    from dockyard.engine.create import CreateRequest

    opts = run_options(a)
    return CreateRequest(
        image=a.image, opts=opts, name=a.name,
        port_bindings=publish_bindings(getattr(a, "publish", []), opts.network),
        restart=a.restart, auto_remove=bool(getattr(a, "rm", False)),
        attach_output=not getattr(a, "detach", True), log_config=log_config(a),
        runtime=a.runtime, stop_timeout=a.stop_timeout,
        healthcheck=lambda image_config: healthcheck(a, image_config),
        volumes=tuple(getattr(a, "volume", [])), mounts=tuple(getattr(a, "mount", [])),
        volumes_from=tuple(getattr(a, "volumes_from", [])))


def create_container(svc: ContainerService, a: argparse.Namespace) -> Container:
    from dockyard.engine.create import create_container as create
    from dockyard.values import replace

    req = create_request(a)
    req = replace(req, publish_all=bool(getattr(a, "publish_all", False)),
                  network_settings=network_settings(svc, a, req.opts.network))
    return create(svc, req)


def publish_bindings(publish: list[str], network: str) -> dict[str, list[dict[str, str]]]:
    """HostConfig.PortBindings from ``-p`` flags (docker's shape: ``{"80/tcp": [{"HostIp":
    "", "HostPort": "8080"}]}``)."""
    from dockyard.engine.networks import wants_network
    from dockyard.network.ports import parse_publish

    out: dict[str, list[dict[str, str]]] = {}
    for text in publish:
        spec = parse_publish(text)
        out.setdefault(spec.key, []).append(
            {"HostIp": spec.host_ip, "HostPort": str(spec.host_port or "")})
    if out and not wants_network(network):
        return {}       # docker: published ports are discarded with --network host/none
    return out


def network_settings(svc: ContainerService, a: argparse.Namespace,
                     network: str) -> dict[str, Any]:
    """HostConfig's ExtraHosts, Dns, DnsSearch, DnsOptions, PublishAllPorts and the
    NetworkingConfig of ``--network-alias``/``--ip``/``--mac-address``, checked as docker
    does before anything is created."""
    from dockyard.engine.networks import check_endpoint, parse_extra_host, wants_network
    from dockyard.network.ipam import check_mac

    out: dict[str, Any] = {}
    if network.startswith("container:"):
        from dockyard.engine.netjoin import check_conflicts

        check_conflicts(hostname=bool(a.hostname), dns=bool(getattr(a, "dns", [])),
                        extra_hosts=bool(getattr(a, "add_host", [])),
                        mac=bool(getattr(a, "mac_address", "")),
                        ports=bool(getattr(a, "publish", [])) or bool(
                            getattr(a, "publish_all", False)),
                        ip=bool(getattr(a, "ip", "")),
                        aliases=bool(getattr(a, "network_alias", [])))
    hosts = list(getattr(a, "add_host", []))
    for h in hosts:
        parse_extra_host(h)
    servers = list(getattr(a, "dns", []))
    for s in servers:
        import ipaddress

        try:
            ipaddress.ip_address(s)
        except ValueError:
            raise InvalidArgument(f"{s} is not an ip address") from None
    for key, val in (("ExtraHosts", hosts), ("Dns", servers),
                     ("DnsSearch", list(getattr(a, "dns_search", []))),
                     ("DnsOptions", list(getattr(a, "dns_option", [])))):
        if val:
            out[key] = val
    if getattr(a, "publish_all", False):
        out["PublishAllPorts"] = True
    aliases = list(getattr(a, "network_alias", []))
    ip = getattr(a, "ip", "") or ""
    mac = check_mac(a.mac_address) if getattr(a, "mac_address", "") else ""
    if (aliases or ip or mac) and wants_network(network):
        net = svc.networks().get(network)
        check_endpoint(net, aliases, ip)
        settings: dict[str, Any] = {}
        if aliases:
            settings["Aliases"] = aliases
        if ip:
            settings["IPAMConfig"] = {"IPv4Address": ip}
        if mac:
            settings["MacAddress"] = mac
        out["NetworkingConfig"] = {"EndpointsConfig": {net.name: settings}}
    return out


def parse_go_duration(text: str) -> int:
    from dockyard.engine.logread import parse_go_duration as parse  # only when one is given

    return parse(text)


def healthcheck(a: argparse.Namespace, image_config: Any) -> dict[str, Any] | None:
    """docker's Config.Healthcheck: the image's HEALTHCHECK, overridden flag by flag."""
    if a.no_healthcheck:
        if a.health_cmd:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    base = image_config.config.healthcheck
    out: dict[str, Any] = {}
    if base is not None:
        out = {"Test": list(base.test), "Interval": base.interval, "Timeout": base.timeout,
               "StartPeriod": base.start_period, "Retries": base.retries}
    if a.health_cmd:
        out["Test"] = ["CMD-SHELL", a.health_cmd]
    for flag, key in (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                      ("health_start_period", "StartPeriod")):
        text = getattr(a, flag)
        if text is not None:
            ns = parse_go_duration(text)
            if ns < 0:
                raise InvalidArgument(f"--{flag.replace('_', '-')} cannot be negative")
            out[key] = ns
    if a.health_retries is not None:
        if a.health_retries < 0:
            raise InvalidArgument("--health-retries cannot be negative")
        out["Retries"] = a.health_retries
    return out or None
