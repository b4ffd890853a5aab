"""The volume service: docker's volumes (the ``local`` driver of :mod:`dockyard.volumes.local`)
and a container's mount points.

**A container's mount points** are resolved once, when it is created (:meth:`VolumeService.
mount_points`), from ``--volumes-from``, ``-v``, ``--mount`` and the image's VOLUMEs, in docker's
order (a later source replaces an earlier one at the same destination; two of the user's own
at one place are refused). Named volumes that do not exist are created, anonymous ones get a
64-hex name and docker's ``com.docker.volume.anonymous`` label, and each volume records the
container as a user (``volume_refs``) in the transaction that creates or finds it; a missing
``-v`` host directory is made. They are kept in the container's row (``MountPoints``, docker's
name) and become bind mounts of its config.json.

**At each start** (:meth:`VolumeService.prepare`), with the container's rootfs mounted: volumes
with a device (``-o type=tmpfs,device=tmpfs``) are mounted on their ``_data``, and an empty
volume whose mount point asks for it is filled from the image (copy-up). **When the container
exits** (:meth:`release`), a device volume no other running container uses is unmounted.
**When it is removed** (:meth:`forget`) its references go, and with ``rm -v`` or ``run --rm``
its anonymous volumes too, unless another container still uses them.
"""

from __future__ import annotations

import datetime
import os
import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dockyard.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.logs import get_logger
from dockyard.volumes.local import ANONYMOUS_LABEL, DRIVER, Volume, VolumeStore

if TYPE_CHECKING:
    from dockyard.engine.config import EngineConfig
    from dockyard.engine.mountspec import MountRequest
    from dockyard.engine.specgen import BindMount

log = get_logger(__name__)

FILTERS = ("dangling", "name", "label", "driver")


def _created_at(ts: float) -> str:
    """docker's CreatedAt: RFC 3339 in the engine's local time, whole seconds."""
    text = datetime.datetime.fromtimestamp(int(ts)).astimezone().isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def volume_json(vol: Volume) -> dict[str, Any]:
    """docker's Volume object."""
    return {"CreatedAt": _created_at(vol.created), "Driver": vol.driver,
            "Labels": dict(vol.labels) or None, "Mountpoint": vol.mountpoint,
            "Name": vol.name, "Options": dict(vol.options) or None, "Scope": "local"}


class VolumeService:
    def __init__(self, config: EngineConfig, db: sqlite3.Connection) -> None:
        self.config = config
        self.db = db
        self.store = VolumeStore(config.root, db)

    # --- volumes -----------------------------------------------------------------------------

    def create(self, name: str = "", *, driver: str = DRIVER,
               labels: Mapping[str, str] | None = None,
               options: Mapping[str, str] | None = None) -> Volume:
        vol, _ = self.store.create(name or os.urandom(32).hex(), driver=driver, labels=labels,
                                   options=options)
        return vol

    def get(self, name: str) -> Volume:
        return self.store.get(name)

    def volumes(self, filters: Mapping[str, Sequence[str]] | None = None) -> list[Volume]:
        filters = filters or {}
        for key in filters:
            if key not in FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        used = {str(r[0]) for r in self.db.execute("SELECT DISTINCT volume FROM volume_refs")}
        return [v for v in self.store.volumes() if _matches(v, filters, v.name in used)]

    def users(self, name: str) -> list[str]:
        return self.store.refs(name)

    def inspect(self, vol: Volume) -> dict[str, Any]:
        """docker's Volume object."""
        return volume_json(vol)

    def _drop_stale_refs(self) -> None:
        """References of containers whose rows are gone (a command killed between the two
        deletes) are dropped, so they do not pin their volumes forever."""
        from dockyard.db import transaction

        try:
            with transaction(self.db) as db:
                db.execute("DELETE FROM volume_refs WHERE container_id NOT IN "
                           "(SELECT id FROM containers)")
        except sqlite3.OperationalError:    # no container table yet: no references either
            pass

    def remove(self, name: str, *, force: bool = False) -> Volume | None:
        """Remove the volume; refused while a container (running or not) references it.
        ``force``: a missing volume is not an error (None)."""
        self._drop_stale_refs()
        try:
            return self.store.remove(name)
        except NotFound:
            if force:
                return None
            raise

    def prune(self, *, all_volumes: bool = False,
              filters: Mapping[str, Sequence[str]] | None = None) -> tuple[list[str], int]:
        """Remove unused volumes: anonymous ones only unless ``all_volumes`` (docker 23+).
        (names removed, bytes reclaimed)."""
        filters = dict(filters or {})
        for key in filters:
            if key not in ("label", "label!", "all"):
                raise InvalidArgument(f"invalid filter '{key}'")
        if any(v.lower() in ("1", "true") for v in filters.pop("all", [])):
            all_volumes = True
        removed, freed = [], 0
        self._drop_stale_refs()
        for vol in self.volumes({"dangling": ["true"]}):
            if not all_volumes and not vol.anonymous:
                continue
            if not _label_filters(vol, filters):
                continue
            size = self.store.size(vol.name)
            try:
                self.store.remove(vol.name)
            except (FailedPrecondition, NotFound):   # taken or removed meanwhile
                continue
            removed.append(vol.name)
            freed += size
        return removed, freed

    # --- a container's mount points ----------------------------------------------------------

    def mount_points(self, container_id: str, requests: Sequence[MountRequest], *,
                     volumes_from: Sequence[tuple[Mapping[str, Any], str]] = (),
                     image_volumes: Sequence[str] = (),
                     tmpfs: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Resolve (and create what is missing of) the container's mounts: see the module
        docstring. ``volumes_from``: (the other container's config, "ro"|"rw"|"")."""
        from dockyard.engine.mountspec import BIND, TMPFS, VOLUME, check_duplicates

        check_duplicates(requests)
        points: dict[str, dict[str, Any]] = {}
        for other, mode in volumes_from:
            for mp in other.get("MountPoints") or []:
                if mp["Type"] == TMPFS:
                    continue
                cp = dict(mp, CopyData=False, Anonymous=False)
                if mode:
                    cp["RW"] = mp["RW"] and mode == "rw"
                points[mp["Destination"]] = cp
        for r in requests:
            if r.type == BIND:
                points[r.target] = _point(BIND, r.target, source=r.source, mode=r.mode,
                                          rw=not r.readonly, propagation=r.propagation,
                                          create=r.create_source)
            elif r.type == TMPFS:
                points[r.target] = _point(TMPFS, r.target, rw=not r.readonly, tmpfs=r.tmpfs_data())
            elif r.type == VOLUME:
                points[r.target] = _point(VOLUME, r.target, name=r.source, mode=r.mode,
                                          rw=not r.readonly, copy=not r.nocopy,
                                          anonymous=not r.source, labels=r.volume_labels,
                                          options=r.volume_options)
        tmpfs_dests = {os.path.normpath(t) for t in tmpfs}
        for raw in image_volumes:
            dest = os.path.normpath(raw)
            if dest in points or dest in tmpfs_dests:
                continue
            points[dest] = _point(VOLUME, dest, copy=True, anonymous=True)
        out = []
        try:
            for dest in sorted(points, key=lambda d: d.count("/")):
                mp = points[dest]
                if mp["Type"] == VOLUME:
                    self._attach_volume(container_id, mp)
                elif mp["Type"] == BIND:
                    self._bind_source(mp)
                out.append(mp)
        except BaseException:
            self.forget(container_id, remove_anonymous=True)
            raise
        return out

    def _attach_volume(self, container_id: str, mp: dict[str, Any]) -> None:
        labels = dict(mp.pop("Labels", None) or {})
        options = dict(mp.pop("Options", None) or {})
        if mp.get("Anonymous") and not mp["Name"]:
            mp["Name"] = os.urandom(32).hex()
            labels[ANONYMOUS_LABEL] = ""
        elif not mp["Name"]:
            raise InvalidArgument(f"volume of {mp['Destination']} has no name")
        vol, _ = self.store.create(mp["Name"], labels=labels, options=options,
                                   ref=container_id)
        mp["Anonymous"] = vol.anonymous and bool(mp.get("Anonymous"))
        mp["Source"] = vol.mountpoint
        mp["Driver"] = vol.driver

    def _bind_source(self, mp: dict[str, Any]) -> None:
        source = mp["Source"]
        if os.path.exists(source):
            return
        if not mp.pop("CreateSource", False):
            raise InvalidArgument(f'invalid mount config for type "bind": bind source path '
                                  f"does not exist: {source}")
        try:
            os.makedirs(source, mode=0o755, exist_ok=True)
        except OSError as e:
            raise InvalidArgument(f"error while creating mount source path '{source}': "
                                  f"mkdir {source}: {os.strerror(e.errno or 0)}") from None

    @staticmethod
    def binds(points: Sequence[Mapping[str, Any]]) -> tuple[list[BindMount],
                                                              list[tuple[str, str]]]:
        """The bind mounts and tmpfs mounts of config.json for these mount points."""
        from dockyard.engine.specgen import BindMount

        binds, tmpfs = [], []
        for mp in points:
            if mp["Type"] == "tmpfs":
                tmpfs.append((str(mp["Destination"]), str(mp.get("TmpfsData") or "")))
                continue
            binds.append(BindMount(source=str(mp["Source"]),
                                   destination=str(mp["Destination"]), writable=bool(mp["RW"]),
                                   propagation=str(mp["Propagation"] or "rprivate")))
        return binds, tmpfs

    @staticmethod
    def mounts(points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """inspect's Mounts (docker's MountPoint shape)."""
        out = []
        for mp in points:
            doc: dict[str, Any] = {"Type": mp["Type"]}
            if mp["Type"] == "volume":
                doc["Name"] = mp["Name"]
            doc.update(Source=mp["Source"], Destination=mp["Destination"])
            if mp["Type"] == "volume":
                doc["Driver"] = mp["Driver"]
            doc.update(Mode=mp["Mode"], RW=mp["RW"], Propagation=mp["Propagation"])
            out.append(doc)
        return out

    # --- start, exit, removal ----------------------------------------------------------------

    def prepare(self, container_id: str, points: Sequence[Mapping[str, Any]],
                rootfs: str) -> None:
        """Before the container starts (rootfs mounted): mount device volumes, copy up."""
        from dockyard.volumes.copyup import copy_up

        wanted = [mp for mp in points if mp["Type"] == "volume"]
        if not wanted:
            return
        with self.store.lock():
            for mp in wanted:
                try:
                    vol = self.store.get(mp["Name"])
                except NotFound:
                    raise FailedPrecondition(f"error while mounting volume '{mp['Source']}': "
                                             f"volume {mp['Name']} does not exist") from None
                self.store.mount(vol)
                if mp.get("CopyData"):
                    try:
                        copy_up(rootfs, mp["Destination"], vol.mountpoint)
                    except OSError as e:
                        raise FailedPrecondition(
                            f"failed to copy image content of {mp['Destination']} to volume "
                            f"{vol.name}: {e}") from None

    def release(self, container_id: str) -> None:
        """The container stopped: unmount the device volumes no running container uses."""
        names = self.store.refs_of(container_id)
        if not names:
            return
        with self.store.lock():
            for name in names:
                try:
                    vol = self.store.get(name)
                except NotFound:
                    continue
                if not vol.options.get("device") or self._used_by_running(name, container_id):
                    continue
                self.store.unmount(name)

    def _used_by_running(self, name: str, but: str) -> bool:
        return self.db.execute(
            "SELECT 1 FROM volume_refs r JOIN containers c ON c.id = r.container_id "
            "WHERE r.volume = ? AND r.container_id != ? AND c.state = 'running'",
            (name, but)).fetchone() is not None

    def forget(self, container_id: str, *, remove_anonymous: bool = False,
               points: Sequence[Mapping[str, Any]] = ()) -> list[str]:
        """The container is gone: its references go; with ``remove_anonymous``, the anonymous
        volumes it created go too once nothing else uses them. The names removed."""
        self.release(container_id)
        names = self.store.drop_refs(container_id)
        if not remove_anonymous:
            return []
        mine = {mp["Name"] for mp in points if mp.get("Anonymous")} if points else None
        removed = []
        for name in names:
            try:
                vol = self.store.get(name)
            except NotFound:
                continue
            if not vol.anonymous or (mine is not None and name not in mine):
                continue
            try:
                self.store.remove(name)
                removed.append(name)
            except FailedPrecondition:      # another container uses it: kept (docker's rule)
                continue
        return removed


def _point(kind: str, dest: str, *, name: str = "", source: str = "", mode: str = "",
           rw: bool = True, propagation: str = "", copy: bool = False, anonymous: bool = False,
           create: bool = False, tmpfs: str = "", labels: Mapping[str, str] | None = None,
           options: Mapping[str, str] | None = None) -> dict[str, Any]:
    mp: dict[str, Any] = {"Type": kind, "Name": name, "Source": source, "Destination": dest,
                          "Driver": "", "Mode": mode, "RW": rw, "Propagation": propagation,
                          "CopyData": copy, "Anonymous": anonymous}
    if create:
        mp["CreateSource"] = True
    if tmpfs:
        mp["TmpfsData"] = tmpfs
    if labels:
        mp["Labels"] = dict(labels)
    if options:
        mp["Options"] = dict(options)
    return mp


def _label_filters(vol: Volume, filters: Mapping[str, Sequence[str]]) -> bool:
    def has(v: str) -> bool:
        key, eq, want = v.partition("=")
        return key in vol.labels and (not eq or vol.labels[key] == want)

    if any(not has(v) for v in filters.get("label", [])):
        return False
    return not any(has(v) for v in filters.get("label!", []))


def _matches(vol: Volume, filters: Mapping[str, Sequence[str]], used: bool) -> bool:
    for key, values in filters.items():
        if key == "dangling":
            wants = set()
            for v in values:
                if v.lower() in ("1", "true"):
                    wants.add(True)
                elif v.lower() in ("0", "false"):
                    wants.add(False)
                else:
                    raise InvalidArgument(f"invalid filter 'dangling={v}'")
            if (not used) not in wants:
                return False
        elif key == "name":
            if not any(v in vol.name for v in values):
                return False
        elif key == "driver":
            if vol.driver not in values:
                return False
        elif key == "label" and not _label_filters(vol, {"label": values}):
            return False
    return True


def volume_points(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The mount points kept in a container's row."""
    return [dict(mp) for mp in config.get("MountPoints") or []]
