"""The volumes endpoints (``/volumes``...): docker's request and response shapes over the
engine's volume service (engine/volumes.py). A volume in use is not removed (409), a missing
one is 404 unless ``force``; ``prune`` takes anonymous volumes only from API 1.42 on, every
unused one for older clients (docker's rule)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.api.http import version_before
from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.api.handlers import App
    from dockyard.api.http import Handler, Request
    from dockyard.engine.containers import ContainerService


def _event(svc: ContainerService, action: str, name: str, driver: str = "local") -> None:
    from dockyard.engine import events

    events.record(svc.config.root, "volume", action, name, {"driver": driver}, db=svc.db)


def volumes_list(app: App, h: Handler, req: Request) -> None:
    filters = req.filters()
    with app.services() as svc:
        vols = svc.volumes()
        out = [vols.inspect(v) for v in vols.volumes(filters)]
    h.reply_json(200, {"Volumes": out, "Warnings": []})


def _strings(body: dict[str, Any], key: str) -> dict[str, str]:
    val = body.get(key) or {}
    if not isinstance(val, dict):
        raise InvalidArgument(f"{key}: expected an object")
    return {str(k): str(v) for k, v in val.items()}


def volume_create(app: App, h: Handler, req: Request) -> None:
    body = req.json(required=False)
    name = body.get("Name") or ""
    if not isinstance(name, str):
        raise InvalidArgument("Name: expected a string")
    driver = body.get("Driver") or "local"
    if not isinstance(driver, str):
        raise InvalidArgument("Driver: expected a string")
    labels, options = _strings(body, "Labels"), _strings(body, "DriverOpts")
    if body.get("ClusterVolumeSpec"):
        raise InvalidArgument("cluster volumes are not supported (no swarm)")
    with app.services() as svc:
        vols = svc.volumes()
        existed = bool(name) and _exists(svc, name)
        vol = vols.create(name, driver=driver, labels=labels, options=options)
        if not existed:
            _event(svc, "create", vol.name, vol.driver)
        h.reply_json(201, vols.inspect(vol))


def _exists(svc: ContainerService, name: str) -> bool:
    from dockyard.errors import NotFound

    try:
        svc.volumes().get(name)
    except NotFound:
        return False
    return True


def volume_inspect(app: App, h: Handler, req: Request, name: str) -> None:
    with app.services() as svc:
        vols = svc.volumes()
        h.reply_json(200, vols.inspect(vols.get(name)))


def volume_delete(app: App, h: Handler, req: Request, name: str) -> None:
    with app.services() as svc:
        vol = svc.volumes().remove(name, force=req.flag("force"))
        if vol is not None:
            _event(svc, "destroy", vol.name, vol.driver)
    h.reply(204)


def volumes_prune(app: App, h: Handler, req: Request) -> None:
    filters = req.filters()
    all_volumes = version_before(req.version, "1.42")
    with app.services() as svc:
        removed, freed = svc.volumes().prune(all_volumes=all_volumes, filters=filters)
        for name in removed:
            _event(svc, "destroy", name)
    h.reply_json(200, {"VolumesDeleted": removed or None, "SpaceReclaimed": freed})
