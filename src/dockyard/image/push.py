"""Pushing an image: layers and config (skipping what the registry has, mounting what another
repository of the same registry has), then the manifest under the tag."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Protocol

from dockyard.errors import InvalidArgument
from dockyard.image.content import ContentStore
from dockyard.image.pull import Progress, ProgressFn
from dockyard.image.reference import Reference, parse_reference
from dockyard.image.store import ImageRecord
from dockyard.model.image import Descriptor, Digest, Manifest, parse_manifest_document

MAX_PARALLEL_UPLOADS = 4


class Destination(Protocol):
    def blob_exists(self, ref: Reference, digest: Digest) -> bool: ...

    def mount_blob(self, ref: Reference, digest: Digest, from_repo: str) -> bool: ...

    def push_blob(self, ref: Reference, desc: Descriptor, reader: BinaryIO) -> None: ...

    def put_manifest(self, ref: Reference, raw: bytes, media_type: str) -> Digest: ...


def _short(d: str) -> str:
    return d.partition(":")[2][:12]


def push_image(dest: Destination, content: ContentStore, record: ImageRecord, ref: Reference,
               progress: ProgressFn | None = None) -> tuple[Digest, int]:
    """Push ``record`` as ``ref``; returns the manifest's digest and size."""
    report: Callable[[Progress], None] = progress or (lambda _p: None)
    raw = content.read_bytes(record.manifest_digest)
    manifest = parse_manifest_document(raw, record.manifest_media_type)
    if not isinstance(manifest, Manifest):
        raise InvalidArgument(f"image {record.short_id}: its manifest is an index")
    layers = list(manifest.layers)
    config = manifest.config
    same_registry = [parse_reference(rd.partition("@")[0]).path for rd in record.repo_digests
                     if parse_reference(rd.partition("@")[0]).domain == ref.domain]
    same_registry = [p for p in same_registry if p != ref.path]

    for desc in layers:
        report(Progress(_short(desc.digest), "Preparing"))

    def upload(desc: Descriptor) -> None:
        short = _short(desc.digest)
        if dest.blob_exists(ref, desc.digest):
            report(Progress(short, "Layer already exists"))
            return
        for repo in same_registry:
            if dest.mount_blob(ref, desc.digest, repo):
                report(Progress(short, f"Mounted from {repo}"))
                return
        report(Progress(short, "Pushing", 0, desc.size))
        with content.open(desc.digest) as f:
            dest.push_blob(ref, desc, f)
        report(Progress(short, "Pushed"))

    with ThreadPoolExecutor(max_workers=MAX_PARALLEL_UPLOADS,
                            thread_name_prefix="push") as pool:
        for _ in pool.map(upload, layers):
            pass
    if not dest.blob_exists(ref, config.digest):
        with content.open(config.digest) as f:
            dest.push_blob(ref, config, f)
    target = ref if ref.tag or ref.digest else ref.with_tag("latest")
    digest = dest.put_manifest(target, raw, record.manifest_media_type)
    return digest, len(raw)
