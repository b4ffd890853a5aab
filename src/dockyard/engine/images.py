"""The image service: what ``dockyard pull/images/rmi/tag/history/inspect`` and the API ask for.

It binds the image layer's pieces under one engine root::

    <root>/dockyard.db      image rows (and, later, containers, networks, volumes)
    <root>/content/         the content store (blobs by digest, ingest)
    <root>/overlay/         unpacked layers and container snapshots

and speaks docker's semantics: names resolve like docker's (``busybox`` is
``docker.io/library/busybox:latest``, ids by prefix), ``rmi`` untags before it deletes, and
deleting an image really frees its blobs and layers unless another image still holds them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dockyard.db import open_database
from dockyard.engine import events
from dockyard.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.image.content import ContentStore
from dockyard.image.reference import parse_reference
from dockyard.image.store import ImageRecord, ImageStore
from dockyard.model.image import Digest, ImageConfig, Platform, parse_image_config
from dockyard.values import value

if TYPE_CHECKING:
    from dockyard.engine.config import EngineConfig
    from dockyard.image.pull import ProgressFn
    from dockyard.image.registry import RegistryClient
    from dockyard.image.snapshot import Snapshotter

# Who uses an image: (container id, running) pairs, given an image id (the container service
# provides this; until it exists no container uses an image).
UsersFn = Callable[[str], list[tuple[str, bool]]]


def _no_users(_: str) -> list[tuple[str, bool]]:
    return []


@value
class RemoveReport:
    untagged: tuple[str, ...]
    deleted: tuple[str, ...]


@value
class PruneReport:
    untagged: tuple[str, ...]
    deleted: tuple[str, ...]
    reclaimed: int


class ImageService:
    def __init__(self, config: EngineConfig, *, users: UsersFn = _no_users) -> None:
        self.config = config
        self.root = config.root
        self.db = open_database(self.root)
        self.store = ImageStore(self.db)
        self.content = ContentStore(os.path.join(self.root, "content"))
        self.users = users
        # Chain ids that container snapshots stack on (the container service sets this).
        self.layers_in_use: Callable[[], set[str]] = set
        self._snapshots: Snapshotter | None = None
        self._client: RegistryClient | None = None
        self._lock = threading.Lock()

    def close_db(self) -> None:
        """Close the database before a fork: SQLite's per-process lock bookkeeping must not
        cross into a child that opens the database itself (the supervisor does)."""
        self.db.close()

    def reopen_db(self) -> None:
        self.db = open_database(self.root)
        self.store.conn = self.db

    # --- collaborators, made on first use (httpx and friends are not cheap to import) --------

    @property
    def storage_driver(self) -> str:
        """docker's names: "overlay2" (overlayfs), or "vfs" (copies) where overlay is missing
        or the config's ``storage-driver`` asks for it."""
        wanted = str(self.config.settings.get("storage-driver", "") or "")
        if wanted in ("overlay2", "overlay", "vfs"):
            return "vfs" if wanted == "vfs" else "overlay2"
        if wanted:
            raise InvalidArgument(f"unknown storage-driver {wanted!r} (overlay2 or vfs)")
        return "overlay2" if _has_overlayfs() else "vfs"

    @property
    def snapshots(self) -> Snapshotter:
        if self._snapshots is None:
            from dockyard.image.snapshot import CopySnapshotter, OverlaySnapshotter

            # Both keep layers in the same layout; only container snapshots differ.
            cls = OverlaySnapshotter if self.storage_driver == "overlay2" else CopySnapshotter
            self._snapshots = cls(os.path.join(self.root, "overlay"))
        return self._snapshots

    def registry(self) -> RegistryClient:
        with self._lock:
            if self._client is None:
                from dockyard.engine.registries import registry_client

                self._client = registry_client(self.config)
            return self._client

    # --- names -------------------------------------------------------------------------------

    def resolve(self, name: str) -> ImageRecord:
        """An image by id, id prefix, name[:tag] or name@digest; docker's "No such image"."""
        candidates: list[str] = []
        try:
            ref = parse_reference(name)
        except InvalidArgument:
            ref = None
        if ref is not None:
            if ref.digest:
                candidates.append(f"{ref.repository}@{ref.digest}")
            else:
                candidates.append(f"{ref.repository}:{ref.tag}")
        image_id = self.store.find_id(name, candidates)
        if image_id is None:
            raise NotFound(f"No such image: {name}")
        return self.store.get(image_id)

    def exists(self, name: str) -> bool:
        try:
            self.resolve(name)
        except NotFound:
            return False
        return True

    def image_config(self, record: ImageRecord) -> ImageConfig:
        return parse_image_config(self.content.read_bytes(record.id))

    def raw_config(self, record: ImageRecord) -> dict[str, Any]:
        doc = json.loads(self.content.read_bytes(record.id))
        return doc if isinstance(doc, dict) else {}

    # --- pull --------------------------------------------------------------------------------

    def pull(self, name: str, *, platform: Platform | None = None,
             progress: ProgressFn | None = None,
             registry: RegistryClient | None = None) -> ImageRecord:
        from dockyard.image.pull import Puller

        ref = parse_reference(name)
        puller = Puller(registry or self.registry(), self.content, self.snapshots, self.store,
                        progress=progress or (lambda _p: None))
        record = puller.pull(ref, platform)
        self.event("pull", ref.familiar, ref.familiar_name, record)
        return record

    def push(self, name: str, *, progress: ProgressFn | None = None,
             registry: RegistryClient | None = None) -> tuple[Digest, int]:
        """Push the image named ``name`` to the registry in its name; remember the digest.
        ``registry``: a client of the caller's (credentials given with a request)."""
        from dockyard.image.push import push_image

        ref = parse_reference(name)
        record = self.resolve(name)
        digest, size = push_image(registry or self.registry(), self.content, record, ref,
                                  progress)
        self.store.add_repo_digest(record.id, ref.repository, digest)
        self.event("push", ref.familiar, ref.familiar_name, record)
        return digest, size

    def list_tags(self, name: str) -> list[str]:
        return self.registry().list_tags(parse_reference(name))

    # --- tag / remove ------------------------------------------------------------------------

    def tag(self, source: str, target: str) -> None:
        record = self.resolve(source)
        ref = parse_reference(target)
        if ref.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {target}")
        self.store.tag(record.id, f"{ref.repository}:{ref.tag}")
        self.event("tag", record.id, ref.familiar, record)

    def remove(self, name: str, *, force: bool = False, prune: bool = True) -> RemoveReport:
        """docker's ``rmi``: a name is untagged first; the image goes with its last name."""
        record = self.resolve(name)
        users = self.users(record.id)
        by_name = self._names_this_reference(name, record)
        untagged: list[str] = []
        if by_name is not None:
            if len(record.references) == 1 and users and not force:
                raise FailedPrecondition(
                    f'conflict: unable to remove repository reference "{name}" (must force) - '
                    f"container {users[0][0][:12]} is using its referenced image "
                    f"{record.short_id}")
            self.store.untag(by_name)
            untagged.append(familiar(by_name))
            if len(record.references) > 1 or users:
                self.event("untag", record.id, record.id, record)
                return RemoveReport(tuple(untagged), ())
        else:
            running = [cid for cid, is_running in users if is_running]
            if running:
                raise FailedPrecondition(
                    f"conflict: unable to delete {record.short_id} (cannot be forced) - image "
                    f"is being used by running container {running[0][:12]}")
            if len(record.references) > 1 and not force:
                raise FailedPrecondition(
                    f"conflict: unable to delete {record.short_id} (must be forced) - image is "
                    "referenced in multiple repositories")
            if users and not force:
                raise FailedPrecondition(
                    f"conflict: unable to delete {record.short_id} (must be forced) - image is "
                    f"being used by stopped container {users[0][0][:12]}")
            untagged += [familiar(r) for r in record.references]
        untagged += [familiar_digest(d) for d in record.repo_digests]
        self._deleted(record, len(untagged))
        deleted: list[str] = [record.id]
        if prune:
            deleted += self.collect_garbage().layers
        return RemoveReport(tuple(untagged), tuple(deleted))

    def _names_this_reference(self, name: str, record: ImageRecord) -> str | None:
        """The stored reference ``name`` means, if it is a name (not an id or id prefix)."""
        try:
            ref = parse_reference(name)
        except InvalidArgument:
            return None
        if ref.digest:
            return None
        full = f"{ref.repository}:{ref.tag}"
        return full if full in record.references else None

    def prune(self, *, all_images: bool = False) -> PruneReport:
        untagged: list[str] = []
        deleted: list[str] = []
        for record in self.store.list():
            if self.users(record.id):
                continue
            if record.references and not all_images:
                continue
            names = [familiar(r) for r in record.references]
            names += [familiar_digest(d) for d in record.repo_digests]
            untagged += names
            self._deleted(record, len(names))
            deleted.append(record.id)
        gc = self.collect_garbage()
        return PruneReport(tuple(untagged), tuple(deleted + list(gc.layers)), gc.reclaimed)

    def _deleted(self, record: ImageRecord, untags: int) -> None:
        """Delete the image's row; journal docker's events: an untag per name, a delete."""
        labels = self._labels(record)   # read while its config blob is still there
        self.store.delete(record.id)
        for _ in range(untags):
            self.event("untag", record.id, record.id, labels=labels)
        self.event("delete", record.id, record.id, labels=labels)

    # --- events -----------------------------------------------------------------------------

    def event(self, action: str, actor_id: str, name: str, record: ImageRecord | None = None,
              *, labels: dict[str, str] | None = None) -> None:
        """Journal an image event: docker's attributes are the image's labels and a name."""
        if labels is None:
            labels = self._labels(record) if record is not None else {}
        events.record(self.root, events.IMAGE, action, actor_id, {**labels, "name": name},
                      db=self.db)

    def _labels(self, record: ImageRecord) -> dict[str, str]:
        try:
            config = self.raw_config(record).get("config") or {}
        except (OSError, ValueError, NotFound):
            return {}
        return {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}

    # --- garbage ----------------------------------------------------------------------------

    def collect_garbage(self) -> GarbageReport:
        """Remove blobs and layers no image refers to; returns what went and what it freed."""
        keep_blobs = self.store.referenced_blobs()
        keep_layers = self.store.referenced_chain_ids() | self.layers_in_use()
        reclaimed = 0
        for digest in self.content.digests():
            if digest not in keep_blobs:
                try:
                    reclaimed += self.content.size(digest)
                except NotFound:
                    continue
                self.content.delete(digest)
        layers: list[str] = []
        snaps = self.snapshots
        layer_root = os.path.join(snaps.root, "layers")
        for name in sorted(os.listdir(layer_root)):
            chain_id = f"sha256:{name}"
            if chain_id not in keep_layers:
                reclaimed += _disk_usage(os.path.join(layer_root, name))
                try:
                    snaps.remove_layer(chain_id)
                except NotFound:
                    continue        # another process collected it first
                layers.append(chain_id)
        self.content.clean_ingest()
        return GarbageReport(tuple(layers), reclaimed)

    def fsck(self) -> list[str]:
        problems = [f"blob {d.digest}: {d.problem}" for d in self.content.fsck()]
        for record in self.store.list():
            for digest in [record.id, record.manifest_digest,
                           *(la.blob_digest for la in record.layers)]:
                if not self.content.has(digest):
                    problems.append(f"image {record.short_id}: blob {digest} is missing")
            for la in record.layers:
                if not self.snapshots.has_layer(la.chain_id):
                    problems.append(f"image {record.short_id}: layer {la.chain_id} is missing")
        return problems

    # --- views -------------------------------------------------------------------------------

    def images(self) -> list[ImageRecord]:
        return self.store.list()

    def inspect(self, name: str) -> dict[str, Any]:
        """docker's ``image inspect`` JSON for one image."""
        record = self.resolve(name)
        raw = self.raw_config(record)
        cfg = raw.get("config") or {}
        container_config = dict(_EMPTY_CONTAINER_CONFIG)
        container_config.update({k: v for k, v in cfg.items() if k in _EMPTY_CONTAINER_CONFIG})
        for k, v in cfg.items():
            container_config.setdefault(k, v)
        snaps = self.snapshots
        layer_dirs = [snaps.layer_path(la.chain_id) for la in reversed(record.layers)]
        graph: dict[str, Any] = {"Name": self.storage_driver, "Data": None}
        if layer_dirs:
            graph["Data"] = {"MergedDir": "", "UpperDir": layer_dirs[0],
                             "LowerDir": ":".join(layer_dirs[1:]), "WorkDir": ""}
        return {
            "Id": record.id,
            "RepoTags": [familiar(r) for r in record.references],
            "RepoDigests": [familiar_digest(d) for d in record.repo_digests],
            "Parent": "",
            "Comment": _last_comment(raw),
            "Created": raw.get("created", ""),
            "DockerVersion": raw.get("docker_version", ""),
            "Author": raw.get("author", ""),
            "Config": container_config,
            "Architecture": raw.get("architecture", ""),
            **({"Variant": raw["variant"]} if raw.get("variant") else {}),
            "Os": raw.get("os", ""),
            "Size": record.size,
            "GraphDriver": graph,
            "RootFS": {"Type": "layers", "Layers": [la.diff_id for la in record.layers]},
            "Metadata": {"LastTagTime": _iso(record.added)},
            "Descriptor": {"mediaType": record.manifest_media_type,
                           "digest": record.manifest_digest,
                           "size": self._size_or_zero(record.manifest_digest)},
        }

    def _size_or_zero(self, digest: str) -> int:
        try:
            return self.content.size(digest)
        except NotFound:
            return 0

    def history(self, name: str) -> list[dict[str, Any]]:
        """docker's history rows, newest first: Id ("<missing>" below the top), CreatedBy, ..."""
        record = self.resolve(name)
        config = self.image_config(record)
        sizes = [la.size for la in record.layers]
        rows: list[dict[str, Any]] = []
        layer_i = 0
        entries = config.history or tuple(_synthetic_history(len(record.layers)))
        for h in entries:
            size = 0
            if not h.empty_layer and layer_i < len(sizes):
                size = sizes[layer_i]
                layer_i += 1
            rows.append({"Id": "<missing>", "Created": _epoch(h.created),
                         "CreatedBy": h.created_by, "Tags": None, "Size": size,
                         "Comment": h.comment})
        rows.reverse()
        if rows:
            rows[0]["Id"] = record.id
            rows[0]["Tags"] = [familiar(r) for r in record.references] or None
        return rows


@value
class GarbageReport:
    layers: tuple[str, ...]
    reclaimed: int


_EMPTY_CONTAINER_CONFIG: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": None,
}


def _has_overlayfs() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == ["overlay"] for line in f)
    except OSError:
        return False


def _disk_usage(path: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in (*dirnames, *filenames):
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
            except OSError:
                pass
    return total


def familiar(full: str) -> str:
    """``docker.io/library/busybox:latest`` → ``busybox:latest``."""
    try:
        return parse_reference(full).familiar
    except InvalidArgument:
        return full


def familiar_digest(repo_digest: str) -> str:
    repo, _, digest = repo_digest.partition("@")
    try:
        return f"{parse_reference(repo).familiar_name}@{digest}"
    except InvalidArgument:
        return repo_digest


def _last_comment(raw: dict[str, Any]) -> str:
    hist = raw.get("history") or []
    if isinstance(hist, list) and hist and isinstance(hist[-1], dict):
        return str(hist[-1].get("comment", ""))
    return ""


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(created: str) -> int:
    if not created:
        return 0
    try:
        text = created.replace("Z", "+00:00")
        # Go's RFC 3339 has nanoseconds; fromisoformat takes at most microseconds.
        if "." in text:
            head, _, rest = text.partition(".")
            frac = "".join(ch for ch in rest if ch.isdigit())
            tz = rest[len(frac):]
            text = f"{head}.{frac[:6]}{tz}"
        return int(_dt.datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0


def _synthetic_history(n: int) -> Sequence[Any]:
    from dockyard.model.image import HistoryEntry

    return [HistoryEntry() for _ in range(n)]


__all__ = ["Digest", "GarbageReport", "ImageService", "PruneReport", "RemoveReport",
           "familiar", "familiar_digest"]
