"""The volumes of a container being created: ``-v``, ``--mount``, ``--volumes-from`` and the
image's VOLUMEs (docker's Binds, Mounts and VolumesFrom from the API), for
:func:`dockyard.engine.create.create_container`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.engine.containers import ContainerService
    from dockyard.engine.specgen import RunOptions


class ContainerVolumes:
    """``-v``, ``--mount``, ``--volumes-from`` and the image's VOLUMEs of one new container
    (engine/volumes.py): parsed up front, resolved (volumes created, the container recorded as
    their user) once the container has an id, undone if its creation fails."""

    def __init__(self, svc: ContainerService, image_config: Any, *, binds: Sequence[str] = (),
                 mounts: Sequence[str] = (), volumes_from: Sequence[str] = ()) -> None:
        from dockyard.engine.mountspec import parse_mount, parse_volume, parse_volumes_from

        self.svc = svc
        self.binds = list(binds)
        self.mount_flags = list(mounts)
        self.volumes_from = list(volumes_from)
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
