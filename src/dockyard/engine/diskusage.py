"""How much disk the engine uses: docker's ``GET /system/df`` and the sizes of ``ps -s``.

* An image's size is the sum of its unpacked layers (what ``dockyard images`` shows); the
  engine's layers are counted once however many images share them (docker's LayersSize), and
  an image's shared size is what it has in common with other images.
* A container's size (SizeRw) is what its writable layer holds (:func:`rootfs_ops.size_rw`);
  its virtual size (SizeRootFs) adds its image's.
* A volume's size is what its ``_data`` directory holds; its reference count is how many
  containers (running or not) mount it; it is active while that is not zero (docker's
  UsageData).
* Reclaimable is what removing the unused things would free: the layers no container's image
  needs, the writable layers of containers that are not running, the volumes no container
  references.

The build cache does not exist yet: its list is empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.errors import NotFound
from dockyard.values import value

if TYPE_CHECKING:
    from dockyard.engine.containers import Container, ContainerService
    from dockyard.image.store import ImageRecord
    from dockyard.volumes.local import Volume


@value
class ImageUsage:
    record: ImageRecord
    shared_size: int         # bytes of its layers that other images have too
    containers: int          # how many containers use it

    @property
    def size(self) -> int:
        return self.record.size


@value
class ContainerUsage:
    container: Container
    size_rw: int             # its writable layer
    size_root_fs: int        # its image plus its writable layer

    @property
    def active(self) -> bool:
        """docker counts running (paused, restarting) containers as active."""
        return self.container.running


@value
class VolumeUsage:
    volume: Volume
    size: int                # bytes below its _data
    ref_count: int           # containers (running or not) that mount it


@value
class DiskUsage:
    layers_size: int                          # every image layer, once
    images_reclaimable: int                   # layers that no container's image uses
    images: tuple[ImageUsage, ...]
    containers: tuple[ContainerUsage, ...]
    volumes: tuple[VolumeUsage, ...] = ()

    @property
    def volumes_active(self) -> int:
        return sum(1 for v in self.volumes if v.ref_count)

    @property
    def volumes_size(self) -> int:
        return sum(v.size for v in self.volumes)

    @property
    def volumes_reclaimable(self) -> int:
        return sum(v.size for v in self.volumes if not v.ref_count)

    @property
    def images_active(self) -> int:
        return sum(1 for i in self.images if i.containers)

    @property
    def containers_size(self) -> int:
        return sum(c.size_rw for c in self.containers)

    @property
    def containers_reclaimable(self) -> int:
        return sum(c.size_rw for c in self.containers if not c.active)


def container_sizes(svc: ContainerService, c: Container) -> tuple[int, int]:
    """(SizeRw, SizeRootFs) of one container."""
    from dockyard.engine.rootfs_ops import size_rw

    rw = size_rw(svc, c)
    try:
        image = svc.images.store.get(c.image_id).size
    except NotFound:            # its image is gone (its layers stay while it exists)
        image = 0
    return rw, image + rw


def disk_usage(svc: ContainerService) -> DiskUsage:
    """What ``system df`` shows, gathered from the image store and every container."""
    records = svc.images.images()
    containers = svc.containers()
    users: dict[str, int] = {}
    for c in containers:
        users[c.image_id] = users.get(c.image_id, 0) + 1
    layer_size: dict[str, int] = {}
    holders: dict[str, int] = {}
    for rec in records:
        for la in {la.chain_id: la for la in rec.layers}.values():
            layer_size[la.chain_id] = la.size
            holders[la.chain_id] = holders.get(la.chain_id, 0) + 1
    in_use = {la.chain_id for rec in records if users.get(rec.id) for la in rec.layers}
    images = tuple(
        ImageUsage(record=rec, containers=users.get(rec.id, 0),
                   shared_size=sum(layer_size[cid] for cid in {la.chain_id for la in rec.layers}
                                   if holders[cid] > 1))
        for rec in records)
    usages = []
    for c in containers:
        rw, root_fs = container_sizes(svc, c)
        usages.append(ContainerUsage(container=c, size_rw=rw, size_root_fs=root_fs))
    total = sum(layer_size.values())
    return DiskUsage(layers_size=total,
                     images_reclaimable=total - sum(layer_size[cid] for cid in in_use),
                     images=images, containers=tuple(usages), volumes=volume_usage(svc))


def volume_usage(svc: ContainerService) -> tuple[VolumeUsage, ...]:
    """Every volume with its size and reference count, in ``volume ls`` order."""
    vs = svc.volumes()
    vs._drop_stale_refs()
    return tuple(VolumeUsage(volume=v, size=vs.store.size(v.name),
                             ref_count=len(set(vs.users(v.name))))
                 for v in vs.volumes())


def volumes_json(du: DiskUsage) -> list[dict[str, Any]]:
    """docker's Volumes of ``GET /system/df``: Volume objects with their UsageData."""
    from dockyard.engine.volumes import volume_json

    return [{**volume_json(u.volume), "UsageData": {"Size": u.size, "RefCount": u.ref_count}}
            for u in du.volumes]


def disk_usage_json(du: DiskUsage) -> dict[str, Any]:
    """docker's ``GET /system/df`` body for ``du`` (image and container summaries carry the
    fields that df needs)."""
    from dockyard.engine.images import _epoch, familiar, familiar_digest

    return {
        "LayersSize": du.layers_size,
        "Images": [{
            "Id": i.record.id,
            "ParentId": "",
            "RepoTags": [familiar(r) for r in i.record.references],
            "RepoDigests": [familiar_digest(d) for d in i.record.repo_digests],
            "Created": _epoch(i.record.created),
            "Size": i.size,
            "SharedSize": i.shared_size,
            "VirtualSize": i.size,
            "Labels": None,
            "Containers": i.containers,
        } for i in du.images],
        "Containers": [{
            "Id": u.container.id,
            "Names": ["/" + u.container.name],
            "Image": u.container.image_name,
            "ImageID": u.container.image_id,
            "Command": " ".join(str(x) for x in (u.container.config.get("Path", ""),
                                                 *(u.container.config.get("Args") or [])) if x),
            "Created": int(u.container.created),
            "State": {"creating": "created"}.get(u.container.state, u.container.state),
            "SizeRw": u.size_rw,
            "SizeRootFs": u.size_root_fs,
            "Labels": dict(u.container.labels),
            "Mounts": [],
        } for u in du.containers],
        "Volumes": volumes_json(du),
        "BuildCache": [],
    }

