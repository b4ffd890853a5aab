"""docker's ``POST /containers/create`` body -> the engine's :class:`CreateRequest`: the same
request the CLI's ``run`` flags become (engine/create.py), so both front ends make the same
container. What the body asks that the engine cannot do yet is refused (400), not ignored."""

from __future__ import annotations

from typing import Any

from dockyard.engine.create import CreateRequest
from dockyard.errors import InvalidArgument

_INT64 = (-(2**63), 2**63 - 1)


def _bad(key: str, kind: str, v: Any) -> InvalidArgument:
    # docker's words for a field of the wrong JSON type (encoding/json's UnmarshalTypeError)
    return InvalidArgument(f"json: cannot unmarshal {_json_kind(v)} into Go struct field "
                           f"{key} of type {kind}")


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


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
    if not isinstance(v, int) or isinstance(v, bool) or not _INT64[0] <= v <= _INT64[1]:
        raise InvalidArgument(f"{key}: expected an integer")
    return v


def _opt_int(doc: dict[str, Any], key: str) -> int | None:
    return None if doc.get(key) is None else _int(doc, key)


def _str(doc: dict[str, Any], key: str) -> str:
    v = doc.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _bad(key, "string", v)
    return v


def _bool(doc: dict[str, Any], key: str) -> bool:
    v = doc.get(key)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise _bad(key, "bool", v)
    return v


def _obj(doc: dict[str, Any], key: str) -> dict[str, Any]:
    v = doc.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _bad(key, "object", v)
    return v


def _objs(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    v = doc.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise InvalidArgument(f"{key}: expected a list of objects")
    return v


def _str_map(doc: dict[str, Any], key: str) -> dict[str, str]:
    """A JSON object of strings (null values read as "", as Go reads them)."""
    out = {}
    for k, v in _obj(doc, key).items():
        if v is not None and not isinstance(v, str):
            raise _bad(f"{key}", "map[string]string", v)
        out[k] = v or ""
    return out


def create_request(body: dict[str, Any], name: str) -> CreateRequest:
    from dockyard.engine import runopts as ro
    from dockyard.engine.logopts import check_log_config
    from dockyard.engine.specgen import RunOptions

    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise InvalidArgument("Config cannot be empty in order to create a container")
    host = _obj(body, "HostConfig")
    if host.get("Links") and (_str(host, "NetworkMode") or "default") in (
            "default", "bridge", "host", "none"):
        # on a user-defined network a link is a name only the linking container resolves
        # (api/networks.py); the default bridge's legacy links are not done
        raise InvalidArgument("HostConfig.Links is supported on user-defined networks only "
                              "by Dockyard (legacy links of the default bridge are not)")
    mounts = _objs(host, "Mounts")
    env = [ro.parse_env(e, lambda _k: None) for e in (_strings(body, "Env") or ())]
    labels = _str_map(body, "Labels")
    network = _str(host, "NetworkMode") or "default"
    security = ro.parse_security_opts(_strings(host, "SecurityOpt") or ())
    devices = tuple(ro.parse_device(":".join(
        x for x in (_str(d, "PathOnHost"), _str(d, "PathInContainer"),
                    _str(d, "CgroupPermissions")) if x))
        for d in _objs(host, "Devices"))
    ulimits = tuple(ro.parse_ulimit(f"{_str(u, 'Name')}={_int(u, 'Soft')}:{_int(u, 'Hard')}")
                    for u in _objs(host, "Ulimits"))
    tmpfs = _str_map(host, "Tmpfs")
    pids = _opt_int(host, "PidsLimit")
    opts = RunOptions(
        command=_strings(body, "Cmd") or (),
        entrypoint=_strings(body, "Entrypoint"),
        env=tuple(env),
        workdir=_str(body, "WorkingDir"),
        user=_str(body, "User"),
        hostname=_str(body, "Hostname"),
        labels=labels,
        read_only=_bool(host, "ReadonlyRootfs"),
        tmpfs=tuple(tmpfs.items()),
        privileged=_bool(host, "Privileged"),
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
        cpuset_cpus=_str(host, "CpusetCpus"),
        pids_limit=pids if pids is not None and pids > 0 else None,
        stop_signal=_str(body, "StopSignal"),
        network=network,
        init=_bool(host, "Init"),
        tty=_bool(body, "Tty"),
        stdin_open=_bool(body, "OpenStdin"),
    )
    restart = _obj(host, "RestartPolicy")
    policy = _str(restart, "Name")
    retries = _int(restart, "MaximumRetryCount")
    if policy == "on-failure" and retries:
        policy = f"on-failure:{retries}"
    log = _obj(host, "LogConfig")
    driver = _str(log, "Type") or "json-file"
    log_config = {"Type": driver, "Config": check_log_config(driver, _str_map(log, "Config"))}
    bindings: dict[str, list[dict[str, str]]] = {}
    for port, binds in _obj(host, "PortBindings").items():
        key = port if "/" in port else f"{port}/tcp"
        if binds is not None and (not isinstance(binds, list)
                                  or not all(isinstance(b, dict) for b in binds)):
            raise InvalidArgument(f"HostConfig.PortBindings[{port!r}]: expected a list of "
                                  "objects")
        bindings[key] = [{"HostIp": _str(b, "HostIp"), "HostPort": _str(b, "HostPort")}
                         for b in binds or []]
    health = _obj(body, "Healthcheck")
    if health:
        _strings(health, "Test")
        for k in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
            _int(health, k)
    stop_timeout = _opt_int(body, "StopTimeout")
    attach_output = _bool(body, "AttachStdout") | _bool(body, "AttachStderr")
    auto_remove = _bool(host, "AutoRemove")
    runtime = _str(host, "Runtime")
    mount_flags = tuple(mount_flag(m) for m in mounts)

    def healthcheck(image_config: Any) -> dict[str, Any] | None:
        base = image_config.config.healthcheck
        out: dict[str, Any] = {}
        if base is not None:
            out = {"Test": list(base.test), "Interval": base.interval,
                   "Timeout": base.timeout, "StartPeriod": base.start_period,
                   "Retries": base.retries}
        if health:      # docker's merge: what is set wins
            for key in ("Test", "Interval", "Timeout", "StartPeriod", "Retries"):
                if health.get(key):
                    out[key] = health[key]
        return out or None

    return CreateRequest(
        image=image, opts=opts, name=name, port_bindings=bindings, restart=policy,
        auto_remove=auto_remove, attach_output=attach_output, log_config=log_config,
        runtime=runtime, stop_timeout=stop_timeout, healthcheck=healthcheck,
        volumes=_strings(host, "Binds") or (), mounts=mount_flags,
        volumes_from=_strings(host, "VolumesFrom") or ())


def mount_flag(m: dict[str, Any]) -> str:
    """docker's HostConfig.Mounts entry in ``--mount``'s syntax, which the engine parses (one
    parser, one set of errors, for both front ends)."""
    parts = [f"type={_str(m, 'Type') or 'volume'}"]
    if _str(m, "Source"):
        parts.append(f"source={m['Source']}")
    if _str(m, "Target"):
        parts.append(f"target={m['Target']}")
    if _bool(m, "ReadOnly"):
        parts.append("readonly")
    bind = _obj(m, "BindOptions")
    if _str(bind, "Propagation"):
        parts.append(f"bind-propagation={bind['Propagation']}")
    vol = _obj(m, "VolumeOptions")
    if _bool(vol, "NoCopy"):
        parts.append("volume-nocopy")
    parts += [f"volume-label={k}={v}" for k, v in _str_map(vol, "Labels").items()]
    driver = _obj(vol, "DriverConfig")
    parts += [f"volume-opt={k}={v}" for k, v in _str_map(driver, "Options").items()]
    tmpfs = _obj(m, "TmpfsOptions")
    if _int(tmpfs, "SizeBytes"):
        parts.append(f"tmpfs-size={tmpfs['SizeBytes']}")
    if _int(tmpfs, "Mode"):
        parts.append(f"tmpfs-mode={tmpfs['Mode']:o}")
    return ",".join(parts)
