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
    log = log_config(a)
    runtime = _runtime_path(a.runtime)
    init_path = None
    if opts.init:
        from dockyard.engine.config import lookup_init_path

        init_path = lookup_init_path(svc.config)
    stop_signal = opts.stop_signal or image_config.config.stop_signal or "SIGTERM"
    ro.parse_stop_signal(stop_signal)
    volumes = ContainerVolumes(svc, a, image_config)   # checked before anything is made
    saved: dict[str, Any] = {}

    def spec_for(cid: str, rootfs: str, record: ImageRecord) -> dict[str, Any]:
        merged = merge_config(image_config, opts, container_id=cid)
        if not merged.path:
            raise InvalidArgument("no command specified")
        binds, spec_opts = volumes.resolve(cid, opts)
        spec = generate_spec(image_config, spec_opts, container_id=cid, rootfs=rootfs,
                             cgroups_path=os.path.join(svc.cgroup_parent, cid),
                             user_lookup=rootfs_user_lookup(rootfs), init_path=init_path,
                             binds=binds)
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
        if restart is not None:
            saved["HostConfig"]["RestartPolicy"] = {
                "Name": restart.name, "MaximumRetryCount": restart.maximum_retry_count}
        volumes.save(saved)
        return spec

    try:
        return svc.create(a.image, spec_for, name=a.name, config_of=lambda: saved)
    except BaseException:
        volumes.undo()
        raise


class ContainerVolumes:
    """``-v``, ``--mount``, ``--volumes-from`` and the image's VOLUMEs of one new container
    (engine/volumes.py): parsed up front, resolved (volumes created, the container recorded as
    their user) once the container has an id, undone if its creation fails."""

    def __init__(self, svc: ContainerService, a: argparse.Namespace, image_config: Any) -> None:
        from dockyard.engine.mountspec import parse_mount, parse_volume, parse_volumes_from

        self.svc = svc
        self.binds = list(getattr(a, "volume", []))
        self.mount_flags = list(getattr(a, "mount", []))
        self.volumes_from = list(getattr(a, "volumes_from", []))
        self.requests = [*(parse_volume(v) for v in self.binds),
                         *(parse_mount(m) for m in self.mount_flags)]
        self.sources = []
        for spec in self.volumes_from:
            name, mode = parse_volumes_from(spec)
            self.sources.append((svc.get(name).config, mode))
        self.image_volumes = tuple(image_config.config.volumes)
        self.cid = ""
        self.points: list[dict[str, Any]] = []

    def resolve(self, cid: str, opts: RunOptions) -> tuple[list[Any], RunOptions]:
        """The bind mounts of config.json, and the run options with --mount's tmpfs mounts."""
        from dockyard.engine.volumes import VolumeService
        from dockyard.values import replace

        if not (self.requests or self.sources or self.image_volumes):
            return [], opts
        self.cid = cid
        self.points = self.svc.volumes().mount_points(
            cid, self.requests, volumes_from=self.sources, image_volumes=self.image_volumes,
            tmpfs=[dest for dest, _ in opts.tmpfs])
        binds, tmpfs = VolumeService.binds(self.points)
        return binds, replace(opts, tmpfs=(*opts.tmpfs, *tmpfs)) if tmpfs else opts

    def save(self, saved: dict[str, Any]) -> None:
        """docker's Config.Volumes, HostConfig.Binds/Mounts/VolumesFrom, our MountPoints."""
        anonymous: dict[str, Any] = {
            r.target: {} for r in self.requests
            if r.type == "volume" and not r.source and r.from_flag == "-v"}
        anonymous.update({v: {} for v in self.image_volumes})
        saved["Config"]["Volumes"] = anonymous or None
        host = saved["HostConfig"]
        host["Binds"] = [b for b in self.binds if ":" in b] or None
        host["Mounts"] = [_mount_doc(r) for r in self.requests if r.from_flag == "--mount"] \
            or None
        host["VolumesFrom"] = self.volumes_from or None
        if self.points:
            saved["MountPoints"] = self.points

    def undo(self) -> None:
        if self.cid:
            self.svc.volumes().forget(self.cid, remove_anonymous=True, points=self.points)


def _mount_doc(r: Any) -> dict[str, Any]:
    """A ``--mount`` as docker keeps it in HostConfig.Mounts."""
    doc: dict[str, Any] = {"Type": r.type, "Source": r.source, "Target": r.target}
    if r.readonly:
        doc["ReadOnly"] = True
    if r.type == "bind" and r.propagation != "rprivate":
        doc["BindOptions"] = {"Propagation": r.propagation}
    if r.type == "volume" and (r.nocopy or r.volume_labels or r.volume_options):
        doc["VolumeOptions"] = {
            **({"NoCopy": True} if r.nocopy else {}),
            **({"Labels": dict(r.volume_labels)} if r.volume_labels else {}),
            **({"DriverConfig": {"Name": "local", "Options": dict(r.volume_options)}}
               if r.volume_options else {})}
    if r.type == "tmpfs" and (r.tmpfs_size or r.tmpfs_mode):
        doc["TmpfsOptions"] = {**({"SizeBytes": r.tmpfs_size} if r.tmpfs_size else {}),
                               **({"Mode": r.tmpfs_mode} if r.tmpfs_mode else {})}
    return doc


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
