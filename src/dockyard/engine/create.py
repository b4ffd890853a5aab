"""Creating a container from what a front end was asked: ``docker run`` flags (cli/runflags.py)
or docker's create JSON (api/), both turned into one :class:`CreateRequest` first, so the two
front ends make the same container from the same request.

What is kept in the container's row is docker's shape of it (``inspect``'s Config and
HostConfig), besides the OCI spec written into its bundle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument
from dockyard.values import field, value

if TYPE_CHECKING:
    from dockyard.engine.containers import Container, ContainerService
    from dockyard.engine.specgen import RunOptions
    from dockyard.image.store import ImageRecord


def _no_healthcheck_override(_image_config: Any) -> dict[str, Any] | None:
    return None


@value
class CreateRequest:
    """A container to create. ``restart``: docker's ``--restart`` text (``on-failure:3``);
    ``runtime``: the name the user gave ("" or "dockyard": ours); ``healthcheck(image_config)``
    gives Config.Healthcheck (the image's, overridden as asked; None: none)."""

    image: str
    opts: RunOptions
    name: str = ""
    port_bindings: Mapping[str, list[dict[str, str]]] = field(default_factory=dict)
    restart: str = ""
    auto_remove: bool = False
    attach_output: bool = False
    log_config: Mapping[str, Any] = field(default_factory=lambda: {"Type": "json-file",
                                                                    "Config": {}})
    runtime: str = ""
    stop_timeout: int | None = None
    healthcheck: Callable[[Any], dict[str, Any] | None] = _no_healthcheck_override
    volumes: tuple[str, ...] = ()        # -v / docker's Binds
    mounts: tuple[str, ...] = ()         # --mount, in the flag's syntax
    volumes_from: tuple[str, ...] = ()
    publish_all: bool = False            # -P: every EXPOSEd port on a random host port
    # HostConfig's ExtraHosts, Dns, DnsSearch, DnsOptions, PublishAllPorts, and a
    # "NetworkingConfig" (aliases, ip, mac), checked by the front end (cli/runflags.py)
    network_settings: Mapping[str, Any] = field(default_factory=dict)


def create_container(svc: ContainerService, req: CreateRequest) -> Container:
    from dockyard.engine import runopts as ro
    from dockyard.engine.networks import add_to_spec, netns_path, wants_network
    from dockyard.engine.specgen import generate_spec, merge_config, rootfs_user_lookup

    opts = req.opts
    from dockyard.engine import netjoin

    if netjoin.is_join(opts.network):
        from dockyard.values import replace

        opts = replace(opts, network=netjoin.resolve_mode(svc, opts.network))
        req = replace(req, opts=opts)
    if req.restart and req.restart != "no" and req.auto_remove:
        raise InvalidArgument("Conflicting options: --restart and --rm")
    restart = ro.parse_restart(req.restart) if req.restart else None
    image_config = svc.images.image_config(svc.images.resolve(req.image))
    runtime = runtime_path(req.runtime)
    init_path = None
    if opts.init:
        from dockyard.engine.config import lookup_init_path

        init_path = lookup_init_path(svc.config)
    stop_signal = opts.stop_signal or image_config.config.stop_signal or "SIGTERM"
    ro.parse_stop_signal(stop_signal)
    port_bindings = dict(req.port_bindings) if wants_network(opts.network) else {}
    if req.publish_all and wants_network(opts.network):
        for key in image_config.config.exposed_ports:
            port, _, proto = key.partition("/")
            port_bindings.setdefault(f"{port}/{proto or 'tcp'}", [{"HostIp": "", "HostPort": ""}])
    from dockyard.engine.createvolumes import ContainerVolumes

    volumes = ContainerVolumes(svc, image_config, binds=req.volumes, mounts=req.mounts,
                               volumes_from=req.volumes_from)  # checked before anything is made
    saved: dict[str, Any] = {}

    def spec_for(cid: str, rootfs: str, record: ImageRecord) -> dict[str, Any]:
        merged = merge_config(image_config, opts, container_id=cid)
        if not merged.path:
            raise InvalidArgument("no command specified")
        if volumes.requests or volumes.sources:
            # every other option is checked before a volume is made: a named volume made for
            # a create that then fails would stay behind
            generate_spec(image_config, opts, container_id=cid, rootfs=rootfs,
                          cgroups_path=os.path.join(svc.cgroup_parent, cid),
                          user_lookup=rootfs_user_lookup(rootfs), init_path=init_path)
        binds, spec_opts = volumes.resolve(cid, opts)
        spec = generate_spec(image_config, spec_opts, container_id=cid, rootfs=rootfs,
                             cgroups_path=os.path.join(svc.cgroup_parent, cid),
                             user_lookup=rootfs_user_lookup(rootfs), init_path=init_path,
                             binds=binds)
        if wants_network(opts.network) or netjoin.is_join(opts.network):
            add_to_spec(spec, netns=netns_path(os.path.dirname(svc.run_dir), cid),
                        bundle=svc.bundle(cid))
        saved.update(_docker_config(req, merged, record, runtime=runtime,
                                    stop_signal=stop_signal))
        health = req.healthcheck(image_config)
        if health is not None:
            saved["Config"]["Healthcheck"] = health
        if port_bindings:
            saved["HostConfig"]["PortBindings"] = port_bindings
            saved["Config"]["ExposedPorts"] = {key: {} for key in port_bindings}
        for key, val in req.network_settings.items():
            if key == "NetworkingConfig":
                saved[key] = val
            else:
                saved["HostConfig"][key] = val
        if restart is not None:
            saved["HostConfig"]["RestartPolicy"] = {
                "Name": restart.name, "MaximumRetryCount": restart.maximum_retry_count}
        volumes.save(saved)
        return spec

    try:
        return svc.create(req.image, spec_for, name=req.name, config_of=lambda: saved)
    except BaseException:
        volumes.undo()
        raise


def runtime_path(name: str) -> str:
    """The OCI runtime binary a container runs with ("" for ours)."""
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


def _docker_config(req: CreateRequest, merged: Any, record: ImageRecord, *, runtime: str,
                   stop_signal: str) -> dict[str, Any]:
    opts = req.opts
    log = dict(req.log_config)
    return {
        "Path": merged.path,
        "Args": list(merged.args),
        "Labels": dict(merged.labels),
        "StopSignal": stop_signal,
        "StopTimeout": req.stop_timeout,
        "AutoRemove": req.auto_remove,
        "Runtime": runtime,
        "LogConfig": log,
        "Config": {
            "Hostname": merged.hostname, "Domainname": "", "User": merged.user,
            "AttachStdin": False, "AttachStdout": req.attach_output,
            "AttachStderr": req.attach_output, "Tty": opts.tty,
            "OpenStdin": opts.stdin_open, "StdinOnce": False, "Env": list(merged.env),
            "Cmd": None if merged.cmd is None else list(merged.cmd),
            "Image": req.image, "Volumes": None, "WorkingDir": merged.working_dir,
            "Entrypoint": None if merged.entrypoint is None else list(merged.entrypoint),
            "OnBuild": None, "Labels": dict(merged.labels), "StopSignal": stop_signal,
            **({"StopTimeout": req.stop_timeout} if req.stop_timeout is not None else {}),
        },
        "HostConfig": {
            "NetworkMode": opts.network, "AutoRemove": req.auto_remove,
            "RestartPolicy": {"Name": req.restart or "no", "MaximumRetryCount": 0},
            "Privileged": opts.privileged, "ReadonlyRootfs": opts.read_only,
            "CapAdd": list(opts.cap_add) or None, "CapDrop": list(opts.cap_drop) or None,
            "Memory": opts.memory, "MemorySwap": opts.memory_swap, "NanoCpus": opts.nano_cpus,
            "CpuShares": opts.cpu_shares, "CpusetCpus": opts.cpuset_cpus,
            "PidsLimit": opts.pids_limit, "ShmSize": opts.shm_size or 67108864,
            # the name the user gave, as docker shows it (the path runs it: "Runtime" above)
            "LogConfig": log, "Runtime": req.runtime or "dockyard",
            "Init": True if opts.init else None,   # docker's *bool: null unless --init
            "Tmpfs": dict(opts.tmpfs) or None,
        },
        "Image": record.id,
    }
