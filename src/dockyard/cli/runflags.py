"""``run``/``create`` flags → the engine's RunOptions, and the container's docker-shaped config
(what ``inspect`` shows as Config and HostConfig)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.engine.containers import Container, ContainerService
    from dockyard.engine.specgen import RunOptions
    from dockyard.image.store import ImageRecord


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


def create_container(svc: ContainerService, a: argparse.Namespace) -> Container:
    from dockyard.engine import runopts as ro
    from dockyard.engine.networks import add_to_spec, netns_path, wants_network
    from dockyard.engine.specgen import generate_spec, merge_config, rootfs_user_lookup

    opts = run_options(a)
    port_bindings = publish_bindings(getattr(a, "publish", []), opts.network)
    if a.restart and a.restart != "no" and getattr(a, "rm", False):
        raise InvalidArgument("Conflicting options: --restart and --rm")
    restart = ro.parse_restart(a.restart) if a.restart else None
    image = svc.images.resolve(a.image)
    image_config = svc.images.image_config(image)
    port_bindings = publish_all(a, image_config.config.exposed_ports, port_bindings,
                                opts.network)
    networking = network_settings(svc, a, opts.network)
    log = log_config(a)
    runtime = _runtime_path(a.runtime)
    init_path = None
    if opts.init:
        from dockyard.engine.config import lookup_init_path

        init_path = lookup_init_path(svc.config)
    stop_signal = opts.stop_signal or image_config.config.stop_signal or "SIGTERM"
    ro.parse_stop_signal(stop_signal)
    saved: dict[str, Any] = {}

    def spec_for(cid: str, rootfs: str, record: ImageRecord) -> dict[str, Any]:
        merged = merge_config(image_config, opts, container_id=cid)
        if not merged.path:
            raise InvalidArgument("no command specified")
        spec = generate_spec(image_config, opts, container_id=cid, rootfs=rootfs,
                             cgroups_path=os.path.join(svc.cgroup_parent, cid),
                             user_lookup=rootfs_user_lookup(rootfs), init_path=init_path)
        if wants_network(opts.network):
            add_to_spec(spec, netns=netns_path(os.path.dirname(svc.run_dir), cid),
                        bundle=svc.bundle(cid))
        saved.update(_docker_config(a, merged, record, opts, log=log, runtime=runtime,
                                    stop_signal=stop_signal))
        health = healthcheck(a, image_config)
        if health is not None:
            saved["Config"]["Healthcheck"] = health
        if port_bindings:
            saved["HostConfig"]["PortBindings"] = port_bindings
            saved["Config"]["ExposedPorts"] = {key: {} for key in port_bindings}
        for key, val in networking.items():
            if key == "NetworkingConfig":
                saved[key] = val
            else:
                saved["HostConfig"][key] = val
        if restart is not None:
            saved["HostConfig"]["RestartPolicy"] = {
                "Name": restart.name, "MaximumRetryCount": restart.maximum_retry_count}
        return spec

    c = svc.create(a.image, spec_for, name=a.name, config_of=lambda: saved)
    return c


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


def publish_all(a: argparse.Namespace, exposed: tuple[str, ...],
                bindings: dict[str, list[dict[str, str]]],
                network: str) -> dict[str, list[dict[str, str]]]:
    """``-P``: every port the image EXPOSEs, not published by a ``-p``, on a random port."""
    from dockyard.engine.networks import wants_network

    if not getattr(a, "publish_all", False) or not wants_network(network):
        return bindings
    out = dict(bindings)
    for key in exposed:
        port, _, proto = key.partition("/")
        out.setdefault(f"{port}/{proto or 'tcp'}", [{"HostIp": "", "HostPort": ""}])
    return out


def network_settings(svc: ContainerService, a: argparse.Namespace,
                     network: str) -> dict[str, Any]:
    """HostConfig's ExtraHosts, Dns, DnsSearch, DnsOptions, PublishAllPorts and the
    NetworkingConfig of ``--network-alias``/``--ip``/``--mac-address``, checked as docker
    does before anything is created."""
    from dockyard.engine.networks import check_endpoint, parse_extra_host, wants_network
    from dockyard.network.ipam import check_mac

    out: dict[str, Any] = {}
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


def _runtime_path(name: str) -> str:
    if not name or name in ("dockyard", "dockyard-runc"):
        return ""
    if os.sep in name:
        path = name
    else:
        import shutil

        found = shutil.which(name)
        if found is None:
            raise InvalidArgument(f"unknown or invalid runtime name: {name}")
        path = found
    if not os.access(path, os.X_OK):
        raise InvalidArgument(f"unknown or invalid runtime name: {name}")
    return path


def _docker_config(a: argparse.Namespace, merged: Any, record: ImageRecord, opts: RunOptions,
                   *, log: dict[str, Any], runtime: str, stop_signal: str) -> dict[str, Any]:
    return {
        "Path": merged.path,
        "Args": list(merged.args),
        "Labels": dict(merged.labels),
        "StopSignal": stop_signal,
        "StopTimeout": a.stop_timeout,
        "AutoRemove": bool(getattr(a, "rm", False)),
        "Runtime": runtime,
        "LogConfig": log,
        "Config": {
            "Hostname": merged.hostname, "Domainname": "", "User": merged.user,
            "AttachStdin": False, "AttachStdout": not getattr(a, "detach", True),
            "AttachStderr": not getattr(a, "detach", True), "Tty": opts.tty,
            "OpenStdin": opts.stdin_open, "StdinOnce": False, "Env": list(merged.env),
            "Cmd": None if merged.cmd is None else list(merged.cmd),
            "Image": a.image, "Volumes": None, "WorkingDir": merged.working_dir,
            "Entrypoint": None if merged.entrypoint is None else list(merged.entrypoint),
            "OnBuild": None, "Labels": dict(merged.labels), "StopSignal": stop_signal,
            **({"StopTimeout": a.stop_timeout} if a.stop_timeout is not None else {}),
        },
        "HostConfig": {
            "NetworkMode": a.network, "AutoRemove": bool(getattr(a, "rm", False)),
            "RestartPolicy": {"Name": a.restart or "no", "MaximumRetryCount": 0},
            "Privileged": opts.privileged, "ReadonlyRootfs": opts.read_only,
            "CapAdd": list(opts.cap_add) or None, "CapDrop": list(opts.cap_drop) or None,
            "Memory": opts.memory, "MemorySwap": opts.memory_swap, "NanoCpus": opts.nano_cpus,
            "CpuShares": opts.cpu_shares, "CpusetCpus": opts.cpuset_cpus,
            "PidsLimit": opts.pids_limit, "ShmSize": opts.shm_size or 67108864,
            # the name the user gave, as docker shows it (the path runs it: "Runtime" above)
            "LogConfig": log, "Runtime": a.runtime or "dockyard",
            "Init": True if opts.init else None,   # docker's *bool: null unless --init
            "Tmpfs": dict(opts.tmpfs) or None,
        },
        "Image": record.id,
    }
