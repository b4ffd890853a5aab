"""docker's ``container inspect`` JSON for a container (the shapes of Docker Engine API 1.44)."""

from __future__ import annotations

import datetime as _dt
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.engine.containers import Container, ContainerService

_ZERO_TIME = "0001-01-01T00:00:00Z"


def _iso(ts: float) -> str:
    if not ts:
        return _ZERO_TIME
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def container_state(c: Container, paused: bool = False) -> dict[str, Any]:
    status = "paused" if paused and c.running else {"creating": "created"}.get(c.state, c.state)
    return {
        "Status": status,
        "Running": c.running,
        "Paused": paused and c.running,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": c.pid if c.running else 0,
        "ExitCode": c.exit_code,
        "Error": c.error,
        "StartedAt": _iso(c.started_at),
        "FinishedAt": _iso(c.finished_at),
    }


def ps_status(c: Container, health: dict[str, Any] | None = None, now: float | None = None,
              paused: bool = False) -> str:
    """docker's STATUS text of a container ("Up 2 minutes (healthy)", "Exited (0) 3 seconds
    ago", "Created"), as ``ps`` shows it and the API's container list sends it."""
    import time

    from dockyard.durations import human_duration

    now = time.time() if now is None else now
    if c.running:
        status = f"Up {human_duration(now - c.started_at)}"
        if paused:
            return status + " (Paused)"
        word = (health or {}).get("Status")
        if word == "starting":
            status += " (health: starting)"
        elif word:
            status += f" ({word})"
        return status
    if c.state == "exited":
        return (f"Exited ({c.exit_code}) {human_duration(now - c.finished_at)} ago"
                if c.finished_at else f"Exited ({c.exit_code})")
    return "Created"


def _log_driver(c: Container) -> str:
    return str((c.config.get("LogConfig") or {}).get("Type") or "json-file")


def inspect_container(svc: ContainerService, c: Container) -> dict[str, Any]:
    cfg = c.config
    bundle = svc.bundle(c.id)
    driver = svc.images.storage_driver
    snap = os.path.join(svc.images.snapshots.root, "containers", c.id)
    from dockyard.engine.networks import network_mode, wants_network

    mode = network_mode(cfg)
    networked = wants_network(mode)
    network = svc.networks().settings(c.id, mode) if networked else {
        "Bridge": "", "SandboxID": "", "Ports": {}, "Networks": {}}
    paths = {key: os.path.join(bundle, name) if networked else ""
             for name, key in (("resolv.conf", "ResolvConfPath"), ("hostname", "HostnamePath"),
                               ("hosts", "HostsPath"))}
    if mode.startswith("container:"):
        from dockyard.engine.netjoin import files_of

        paths = files_of(svc, c)
        network = {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {},
                   "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": "",
                   "Networks": {}}
    return {
        "Id": c.id,
        "Created": _iso(c.created),
        "Path": cfg.get("Path", ""),
        "Args": cfg.get("Args") or [],
        "State": {**container_state(c, svc.is_paused(c)),
                  **({"Health": h} if (h := svc.health(c)) is not None else {})},
        "Image": c.image_id,
        **paths,
        # as docker: only the json-file driver's file is shown
        "LogPath": svc.log_path(c.id) if _log_driver(c) == "json-file" else "",
        "Name": "/" + c.name,
        "RestartCount": c.restart_count,
        "Driver": driver,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": cfg.get("HostConfig") or {},
        "GraphDriver": {
            "Name": driver,
            "Data": {"MergedDir": os.path.join(bundle, "rootfs"),
                     "UpperDir": os.path.join(snap, "upper"),
                     "WorkDir": os.path.join(snap, "work")},
        },
        "Mounts": _mounts(cfg),
        "Config": cfg.get("Config") or {},
        "NetworkSettings": network,
    }


def _mounts(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    if not cfg.get("MountPoints"):
        return []
    from dockyard.engine.volumes import VolumeService

    return VolumeService.mounts(cfg["MountPoints"])
