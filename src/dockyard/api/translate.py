"""docker's ``POST /containers/create`` body -> the engine's :class:`CreateRequest`: the same
request the CLI's ``run`` flags become (engine/create.py), so both front ends make the same
container. What the body asks that the engine cannot do yet is refused (400), not ignored."""

from __future__ import annotations

from typing import Any

from dockyard.engine.create import CreateRequest
from dockyard.errors import InvalidArgument


def _strings(doc: dict[str, Any], key: str) -> tuple[str, ...] | None:
    v = doc.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidArgument(f"{key}: expected a list of strings")
    return tuple(v)


def _int(doc: dict[str, Any], key: str) -> int:
    v = doc.get(key) or 0
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidArgument(f"{key}: expected an integer")
    return v


def create_request(body: dict[str, Any], name: str) -> CreateRequest:
    from dockyard.engine import runopts as ro
    from dockyard.engine.logopts import check_log_config
    from dockyard.engine.specgen import RunOptions

    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise InvalidArgument("Config cannot be empty in order to create a container")
    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise InvalidArgument("HostConfig: expected an object")
    if host.get("Links") and str(host.get("NetworkMode") or "default") in (
            "default", "bridge", "host", "none"):
        # on a user-defined network a link is a name only the linking container resolves
        # (api/networks.py); the default bridge's legacy links are not done
        raise InvalidArgument("HostConfig.Links is supported on user-defined networks only "
                              "by Dockyard (legacy links of the default bridge are not)")
    mounts = host.get("Mounts") or []
    if not isinstance(mounts, list) or not all(isinstance(m, dict) for m in mounts):
        raise InvalidArgument("HostConfig.Mounts: expected a list of objects")
    env = [ro.parse_env(e, lambda _k: None) for e in (_strings(body, "Env") or ())]
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict):
        raise InvalidArgument("Labels: expected an object")
    network = str(host.get("NetworkMode") or "default")
    security = ro.parse_security_opts(_strings(host, "SecurityOpt") or ())
    devices = tuple(ro.parse_device(":".join(
        x for x in (d.get("PathOnHost", ""), d.get("PathInContainer", ""),
                    d.get("CgroupPermissions", "")) if x))
        for d in host.get("Devices") or [])
    ulimits = tuple(ro.parse_ulimit(f"{u['Name']}={u['Soft']}:{u['Hard']}")
                    for u in host.get("Ulimits") or [])
    tmpfs = host.get("Tmpfs") or {}
    pids = host.get("PidsLimit")
    opts = RunOptions(
        command=_strings(body, "Cmd") or (),
        entrypoint=_strings(body, "Entrypoint"),
        env=tuple(env),
        workdir=str(body.get("WorkingDir") or ""),
        user=str(body.get("User") or ""),
        hostname=str(body.get("Hostname") or ""),
        labels={str(k): str(v) for k, v in labels.items()},
        read_only=bool(host.get("ReadonlyRootfs")),
        tmpfs=tuple((str(k), str(v)) for k, v in dict(tmpfs).items()),
        privileged=bool(host.get("Privileged")),
        cap_add=_strings(host, "CapAdd") or (),
        cap_drop=_strings(host, "CapDrop") or (),
        security=security,
        devices=devices,
        shm_size=_int(host, "ShmSize"),
        ulimits=ulimits,
        memory=_int(host, "Memory"),
        memory_swap=_int(host, "MemorySwap"),
        nano_cpus=_int(host, "NanoCpus"),
        cpu_shares=_int(host, "CpuShares"),
        cpuset_cpus=str(host.get("CpusetCpus") or ""),
        pids_limit=int(pids) if isinstance(pids, int) and pids > 0 else None,
        stop_signal=str(body.get("StopSignal") or ""),
        network=network,
        init=bool(host.get("Init")),
        tty=bool(body.get("Tty")),
        stdin_open=bool(body.get("OpenStdin")),
    )
    restart = host.get("RestartPolicy") or {}
    policy = str(restart.get("Name") or "")
    if policy == "on-failure" and restart.get("MaximumRetryCount"):
        policy = f"on-failure:{int(restart['MaximumRetryCount'])}"
    log = host.get("LogConfig") or {}
    driver = str(log.get("Type") or "json-file")
    log_config = {"Type": driver,
                  "Config": check_log_config(driver, {str(k): str(v) for k, v in
                                                      (log.get("Config") or {}).items()})}
    bindings: dict[str, list[dict[str, str]]] = {}
    for port, binds in (host.get("PortBindings") or {}).items():
        key = port if "/" in port else f"{port}/tcp"
        bindings[key] = [{"HostIp": str(b.get("HostIp") or ""),
                          "HostPort": str(b.get("HostPort") or "")} for b in binds or []]
    health = body.get("Healthcheck")
    stop_timeout = body.get("StopTimeout")

    def healthcheck(image_config: Any) -> dict[str, Any] | None:
        base = image_config.config.healthcheck
        out: dict[str, Any] = {}
        if base is not None:
            out = {"Test": list(base.test), "Interval": base.interval,
                   "Timeout": base.timeout, "StartPeriod": base.start_period,
                   "Retries": base.retries}
        if isinstance(health, dict):     # docker's merge: what is set wins
            for key in ("Test", "Interval", "Timeout", "StartPeriod", "Retries"):
                if health.get(key):
                    out[key] = health[key]
        return out or None

    return CreateRequest(
        image=image, opts=opts, name=name, port_bindings=bindings, restart=policy,
        auto_remove=bool(host.get("AutoRemove")),
        attach_output=bool(body.get("AttachStdout") or body.get("AttachStderr")),
        log_config=log_config, runtime=str(host.get("Runtime") or ""),
        stop_timeout=int(stop_timeout) if isinstance(stop_timeout, int) else None,
        healthcheck=healthcheck, volumes=_strings(host, "Binds") or (),
        mounts=tuple(mount_flag(m) for m in mounts),
        volumes_from=_strings(host, "VolumesFrom") or ())


def mount_flag(m: dict[str, Any]) -> str:
    """docker's HostConfig.Mounts entry in ``--mount``'s syntax, which the engine parses (one
    parser, one set of errors, for both front ends)."""
    parts = [f"type={m.get('Type') or 'volume'}"]
    if m.get("Source"):
        parts.append(f"source={m['Source']}")
    if m.get("Target"):
        parts.append(f"target={m['Target']}")
    if m.get("ReadOnly"):
        parts.append("readonly")
    bind = m.get("BindOptions") or {}
    if bind.get("Propagation"):
        parts.append(f"bind-propagation={bind['Propagation']}")
    vol = m.get("VolumeOptions") or {}
    if vol.get("NoCopy"):
        parts.append("volume-nocopy")
    parts += [f"volume-label={k}={v}" for k, v in (vol.get("Labels") or {}).items()]
    driver = vol.get("DriverConfig") or {}
    parts += [f"volume-opt={k}={v}" for k, v in (driver.get("Options") or {}).items()]
    tmpfs = m.get("TmpfsOptions") or {}
    if tmpfs.get("SizeBytes"):
        parts.append(f"tmpfs-size={int(tmpfs['SizeBytes'])}")
    if tmpfs.get("Mode"):
        parts.append(f"tmpfs-mode={int(tmpfs['Mode']):o}")
    return ",".join(parts)
