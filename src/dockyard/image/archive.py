"""Image archives: reading docker-archive tars and OCI image layouts, writing both at once.

Reading (``load``). An archive is a tar file or an OCI layout directory:

* an OCI image layout: ``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``; names come from
  the index entries' ``io.containerd.image.name`` (docker, containerd) or
  ``org.opencontainers.image.ref.name`` (podman, skopeo; a bare tag there names nothing);
* a docker-archive: ``manifest.json`` (``Config``, ``RepoTags``, ``Layers``) with the layers
  wherever it says (``<id>/layer.tar``, ``<hex>.tar``, ``blobs/sha256/<hex>``; podman's legacy
  directories hold symlinks), uncompressed or gzip/zstd (told by magic). There is no manifest in
  such an archive, so one is made up: an OCI manifest whose layer descriptors are the files as
  they are (an uncompressed layer's digest is then its diff_id);
* docker ≥ 25 writes both in one tar; the OCI side is read (its manifests are the real ones)
  and ``manifest.json``'s RepoTags are added to the names.

A tar is never extracted: its headers are indexed once (every name cleaned; one that climbs out
of the archive makes the whole archive invalid), and members are read as byte ranges of the
file, each reader with its own descriptor (layers are ingested in parallel). Symlinks and
hardlinks between members are followed inside the archive only. What reaches the engine goes
through the pull path's verified ingest (digest and size), unpack (diff_id) and image rows, so a
lying archive fails exactly like a lying registry.

Writing (``save``): one tar that is both a docker-archive and an OCI layout, as docker 25 writes
it: ``blobs/sha256/<hex>`` (layers as stored, config, manifest), ``index.json``,
``manifest.json`` (pointing into ``blobs/``), ``oci-layout`` and ``repositories``. Deterministic:
sorted blobs, mtime 0, owner 0:0.

Import (``import``): a rootfs tarball becomes a one-layer image; :func:`import_config` writes its
config from docker's ``--change`` instructions.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import posixpath
import re
import shlex
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from dockyard.errors import InvalidArgument, NotFound
from dockyard.image.compression import GZIP, NONE, ZSTD, detect, open_decompressed
from dockyard.image.content import ContentStore
from dockyard.image.platform import host_platform, select_manifest
from dockyard.image.pull import LayerStore, ProgressFn, Puller
from dockyard.image.reference import Reference, parse_reference
from dockyard.image.store import ImageRecord, ImageStore
from dockyard.model.image import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    Digest,
    Index,
    Manifest,
    Platform,
    check_digest,
    is_digest,
    parse_image_config,
    parse_manifest_document,
)

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"

_CHUNK = 1 << 20
_MAX_JSON = 64 << 20          # manifest.json, index.json, configs, manifests
_MAX_LINK_HOPS = 16
_TAG_ONLY = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_LAYER_TYPE = {NONE: OCI_LAYER, GZIP: OCI_LAYER_GZIP, ZSTD: OCI_LAYER_ZSTD}


class ArchiveError(InvalidArgument):
    """An archive that is not a readable docker-archive or OCI layout."""


# --- files inside an archive -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """A byte range of a file on disk: one archive member, one blob of a layout directory."""

    path: str
    start: int
    size: int

    @contextmanager
    def open(self) -> Iterator[_Bounded]:
        with open(self.path, "rb") as f:
            f.seek(self.start)
            yield _Bounded(f, self.size)

    def read(self, limit: int = _MAX_JSON) -> bytes:
        if self.size > limit:
            raise ArchiveError(f"archive member of {self.size} bytes is too large "
                               f"(limit {limit})")
        with self.open() as f:
            data = f.read(self.size)
        if len(data) != self.size:
            raise ArchiveError("archive is truncated")
        return data

    def chunks(self, offset: int = 0) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            f.seek(self.start + offset)
            left = self.size - offset
            while left > 0:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    raise ArchiveError("archive is truncated")
                left -= len(chunk)
                yield chunk


class _Bounded:
    """A reader of at most ``size`` bytes of ``f`` from where it stands."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data


class Files(Protocol):
    """The files of an archive, by cleaned relative name."""

    def span(self, name: str) -> Span: ...

    def exists(self, name: str) -> bool: ...


def clean_name(name: str) -> str:
    """A member name cleaned lexically; ArchiveError if it climbs out of the archive."""
    cleaned = posixpath.normpath("/" + name.lstrip("/")).lstrip("/")
    parts = posixpath.normpath(name.lstrip("/")).split("/")
    if ".." in parts:
        raise ArchiveError(f"invalid archive: member {name!r} points outside the archive")
    return cleaned


class TarFiles:
    """The members of a tar file, indexed by cleaned name; never extracted."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            with tarfile.open(path, mode="r:") as tar:
                for m in tar:
                    name = clean_name(m.name)
                    if name in ("", "."):
                        continue
                    if m.issym() or m.islnk():
                        clean_name(m.linkname if m.islnk()
                                   else posixpath.join(posixpath.dirname(name), m.linkname))
                    self._members[name] = m
        except tarfile.TarError as e:
            raise ArchiveError(f"invalid archive: not a tar file ({e})") from None
        except EOFError:
            raise ArchiveError("invalid archive: the tar file is truncated") from None
        except UnicodeError as e:
            raise ArchiveError(f"invalid archive: undecodable member name ({e})") from None

    def names(self) -> list[str]:
        return sorted(self._members)

    def exists(self, name: str) -> bool:
        try:
            self._resolve(clean_name(name))
        except (ArchiveError, NotFound):
            return False
        return True

    def span(self, name: str) -> Span:
        m = self._resolve(clean_name(name))
        return Span(self.path, m.offset_data, m.size)

    def _resolve(self, name: str) -> tarfile.TarInfo:
        seen = name
        for _ in range(_MAX_LINK_HOPS):
            m = self._members.get(name)
            if m is None:
                raise NotFound(f"file {seen!r} not found in the archive")
            if m.issym():
                target = m.linkname
                base = "" if target.startswith("/") else posixpath.dirname(name)
                name = clean_name(posixpath.join(base, target.lstrip("/")))
                continue
            if m.islnk():
                name = clean_name(m.linkname)
                continue
            if m.issparse() or not m.isreg():
                raise ArchiveError(f"invalid archive: {seen!r} is not a regular file")
            return m
        raise ArchiveError(f"invalid archive: too many links resolving {seen!r}")


class DirFiles:
    """The files of an OCI layout directory; nothing outside it is read."""

    def __init__(self, path: str) -> None:
        self.path = os.path.realpath(path)

    def exists(self, name: str) -> bool:
        try:
            self.span(name)
        except (ArchiveError, NotFound):
            return False
        return True

    def span(self, name: str) -> Span:
        full = os.path.realpath(os.path.join(self.path, clean_name(name)))
        if not full.startswith(self.path + os.sep):
            raise ArchiveError(f"invalid layout: {name!r} points outside {self.path}")
        try:
            st = os.stat(full)
        except FileNotFoundError:
            raise NotFound(f"file {name!r} not found in {self.path}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ArchiveError(f"invalid layout: {name!r} is not a regular file")
        return Span(full, 0, st.st_size)


# --- what an archive holds -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchiveImage:
    """One image found in an archive, ready for the pull path."""

    manifest: bytes                 # raw, as in the archive (or made up for a docker-archive)
    manifest_digest: Digest
    parsed: Manifest
    index: bytes = b""              # a nested index the manifest was chosen from
    index_digest: str = ""
    names: tuple[str, ...] = ()     # full references: "docker.io/library/busybox:latest"


@dataclass(slots=True)
class Archive:
    kind: str                                   # "oci", "docker-archive", "docker+oci"
    files: Files
    images: list[ArchiveImage]
    blobs: dict[str, Span | bytes] = field(default_factory=dict)

    def blob(self, digest: str) -> Span | bytes:
        found = self.blobs.get(digest)
        if found is not None:
            return found
        algo, _, hexpart = check_digest(digest).partition(":")
        try:
            return self.files.span(f"blobs/{algo}/{hexpart}")
        except NotFound:
            raise ArchiveError(f"invalid archive: blob {digest} is missing") from None


def read_archive(files: Files, *, platform: Platform | None = None) -> Archive:
    """What ``files`` holds: its images, with names, and where their blobs are."""
    has_oci = files.exists("oci-layout") and files.exists("index.json")
    has_docker = files.exists("manifest.json")
    if has_oci:
        archive = _read_oci(files, platform)
        if has_docker:
            archive.kind = "docker+oci"
            _add_repo_tags(archive, files)
    elif has_docker:
        archive = _read_docker(files)
    elif files.exists("repositories"):
        raise ArchiveError("unsupported archive: it has no manifest.json "
                           "(written by docker older than 1.10)")
    else:
        raise ArchiveError("invalid archive: no manifest.json, nor an OCI layout "
                           "(oci-layout and index.json)")
    if not archive.images:
        raise ArchiveError("no images found in the archive")
    return archive


def _json(files: Files, name: str) -> Any:
    try:
        data = files.span(name).read()
    except NotFound:
        raise ArchiveError(f"invalid archive: {name} is missing") from None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"invalid archive: {name} is not valid JSON: {e}") from None


def _name_from_annotations(ann: Mapping[str, str]) -> str | None:
    full = ann.get(ANNOTATION_IMAGE_NAME, "")
    candidates = [full] if full else []
    ref_name = ann.get(ANNOTATION_REF_NAME, "")
    # The OCI spec allows a bare tag ("latest") here: it names no repository.
    if ref_name and not _TAG_ONLY.fullmatch(ref_name):
        candidates.append(ref_name)
    for text in candidates:
        try:
            ref = parse_reference(text)
        except InvalidArgument:
            continue
        if ref.tag and not ref.digest:
            return f"{ref.repository}:{ref.tag}"
    return None


def _read_oci(files: Files, platform: Platform | None) -> Archive:
    layout = _json(files, "oci-layout")
    if not isinstance(layout, dict) or not isinstance(layout.get("imageLayoutVersion"), str):
        raise ArchiveError("invalid OCI layout: oci-layout has no imageLayoutVersion")
    archive = Archive("oci", files, [])
    try:
        index = parse_manifest_document(files.span("index.json").read(), OCI_INDEX)
    except InvalidArgument as e:
        raise ArchiveError(f"invalid OCI layout: index.json: {e.message}") from None
    if not isinstance(index, Index):
        raise ArchiveError("invalid OCI layout: index.json is not an image index")
    by_digest: dict[str, ArchiveImage] = {}
    for entry in index.manifests:
        name = _name_from_annotations(entry.annotations)
        image = _oci_image(archive, entry, platform)
        if image is None:
            continue
        known = by_digest.get(image.manifest_digest)
        if known is not None:
            image = known
        if name and name not in image.names:
            image = _with_names(image, (*image.names, name))
        by_digest[image.manifest_digest] = image
    archive.images = list(by_digest.values())
    return archive


def _with_names(image: ArchiveImage, names: Sequence[str]) -> ArchiveImage:
    return ArchiveImage(image.manifest, image.manifest_digest, image.parsed, image.index,
                        image.index_digest, tuple(names))


def _read_blob_doc(archive: Archive, desc: Descriptor) -> tuple[bytes, Index | Manifest]:
    where = archive.blob(desc.digest)
    raw = where if isinstance(where, bytes) else where.read()
    got = "sha256:" + hashlib.sha256(raw).hexdigest()
    if got != desc.digest:
        raise ArchiveError(f"invalid archive: blob {desc.digest} has digest {got}")
    try:
        return raw, parse_manifest_document(raw, desc.media_type)
    except InvalidArgument as e:
        raise ArchiveError(f"invalid archive: manifest {desc.digest}: {e.message}") from None


def _oci_image(archive: Archive, entry: Descriptor,
               platform: Platform | None) -> ArchiveImage | None:
    if entry.media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
        return None        # an artifact, not an image
    raw, doc = _read_blob_doc(archive, entry)
    index_raw, index_digest = b"", ""
    if isinstance(doc, Index):
        index_raw, index_digest = raw, entry.digest
        try:
            chosen = select_manifest(doc, platform or host_platform())
        except NotFound as e:
            raise ArchiveError(f"{e.message} (index {entry.digest} in the archive)") from None
        raw, doc = _read_blob_doc(archive, chosen)
        entry = chosen
        if isinstance(doc, Index):
            raise ArchiveError(f"invalid archive: index {entry.digest} nests an index")
    if doc.config.media_type not in (OCI_CONFIG, "application/vnd.docker.container.image.v1+json"):
        return None
    return ArchiveImage(raw, entry.digest, doc, index_raw, index_digest)


def _add_repo_tags(archive: Archive, files: Files) -> None:
    """docker 25's archives: manifest.json's RepoTags join the OCI side's names."""
    for entry in _docker_entries(files):
        config = entry.get("Config")
        tags = _repo_tags(entry)
        if not tags or not isinstance(config, str):
            continue
        digest = _digest_of_member(files, config)
        for i, image in enumerate(archive.images):
            if image.parsed.config.digest == digest:
                names = list(image.names) + [t for t in tags if t not in image.names]
                archive.images[i] = _with_names(image, names)


def _docker_entries(files: Files) -> list[dict[str, Any]]:
    doc = _json(files, "manifest.json")
    if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
        raise ArchiveError("invalid archive: manifest.json is not a list of objects")
    return doc


def _repo_tags(entry: Mapping[str, Any]) -> list[str]:
    tags = entry.get("RepoTags") or []
    if not isinstance(tags, list):
        raise ArchiveError("invalid archive: manifest.json: RepoTags is not a list")
    out = []
    for t in tags:
        try:
            ref = parse_reference(str(t))
        except InvalidArgument as e:
            raise ArchiveError(f"invalid archive: manifest.json: RepoTags {t!r}: "
                               f"{e.message}") from None
        if ref.digest or not ref.tag:
            raise ArchiveError(f"invalid archive: manifest.json: RepoTags {t!r} is not a tag")
        out.append(f"{ref.repository}:{ref.tag}")
    return out


def _digest_of_member(files: Files, name: str) -> Digest:
    """A member's sha256: from its name when it is ``blobs/sha256/<hex>``, else by hashing."""
    cleaned = clean_name(name)
    head, _, hexpart = cleaned.rpartition("/")
    if head == "blobs/sha256" and is_digest("sha256:" + hexpart):
        return Digest("sha256:" + hexpart)
    try:
        span = files.span(cleaned)
    except NotFound:
        raise ArchiveError(f"invalid archive: {name!r} (named in manifest.json) is missing"
                           ) from None
    h = hashlib.sha256()
    for chunk in span.chunks():
        h.update(chunk)
    return Digest("sha256:" + h.hexdigest())


def _read_docker(files: Files) -> Archive:
    archive = Archive("docker-archive", files, [])
    by_digest: dict[str, ArchiveImage] = {}
    for i, entry in enumerate(_docker_entries(files)):
        where = f"manifest.json[{i}]"
        config_name = entry.get("Config")
        layer_names = entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list) \
                or not all(isinstance(n, str) for n in layer_names):
            raise ArchiveError(f"invalid archive: {where} needs Config and Layers")
        try:
            config_span = files.span(config_name)
        except NotFound:
            raise ArchiveError(f"invalid archive: {where}: config {config_name!r} is missing"
                               ) from None
        config_raw = config_span.read()
        config_digest = Digest("sha256:" + hashlib.sha256(config_raw).hexdigest())
        try:
            config = parse_image_config(config_raw)
        except InvalidArgument as e:
            raise ArchiveError(f"invalid archive: {where}: config: {e.message}") from None
        if len(config.diff_ids) != len(layer_names):
            raise ArchiveError(f"invalid archive: {where}: {len(layer_names)} layers, its "
                               f"config lists {len(config.diff_ids)}")
        archive.blobs[config_digest] = config_raw
        layers: list[dict[str, Any]] = []
        for n, (name, diff_id) in enumerate(zip(layer_names, config.diff_ids, strict=True)):
            try:
                span = files.span(name)
            except NotFound:
                raise ArchiveError(f"invalid archive: {where}: layer {name!r} is missing"
                                   ) from None
            with span.open() as f:
                compression = detect(f.read(6))
            media_type = _LAYER_TYPE.get(compression)
            if media_type is None:
                raise ArchiveError(f"unsupported archive: layer {name!r} is compressed with "
                                   f"{compression}")
            digest = _digest_of_member(files, name)
            if compression == NONE and digest != diff_id:
                raise ArchiveError(
                    f"invalid archive: layer {n + 1} ({name}) does not match the image "
                    f"config: its content has diff_id {digest}, the config says {diff_id}")
            archive.blobs[digest] = span
            layers.append({"mediaType": media_type, "digest": digest, "size": span.size})
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                               "size": len(config_raw)},
                    "layers": layers}
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        digest = Digest("sha256:" + hashlib.sha256(raw).hexdigest())
        parsed = parse_manifest_document(raw, OCI_MANIFEST)
        assert isinstance(parsed, Manifest)
        known = by_digest.get(digest)
        names = list(known.names) if known else []
        names += [t for t in _repo_tags(entry) if t not in names]
        by_digest[digest] = ArchiveImage(raw, digest, parsed, names=tuple(names))
    archive.images = list(by_digest.values())
    return archive


# --- loading through the pull path -----------------------------------------------------------


class _Stream:
    resumed = True

    def __init__(self, blob: Span | bytes, offset: int) -> None:
        self._blob = blob
        self._offset = offset

    def __iter__(self) -> Iterator[bytes]:
        if isinstance(self._blob, bytes):
            yield self._blob[self._offset:]
        else:
            yield from self._blob.chunks(self._offset)


class ArchiveSource:
    """The pull path's :class:`~dockyard.image.pull.Source` over an archive's blobs."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def get_manifest(self, ref: Reference) -> tuple[bytes, str, Digest]:
        for image in self.archive.images:
            if ref.digest == image.manifest_digest:
                return image.manifest, image.parsed.media_type, image.manifest_digest
        raise NotFound(f"manifest {ref} not found in the archive")

    def open_blob(self, ref: Reference, desc: Descriptor,
                  offset: int = 0) -> AbstractContextManager[_Stream]:
        blob = self.archive.blob(desc.digest)
        size = len(blob) if isinstance(blob, bytes) else blob.size
        if size != desc.size:   # a local file does not grow: fail now, no retries
            raise ArchiveError(f"invalid archive: blob {desc.digest} has {size} bytes, "
                               f"its descriptor says {desc.size}")
        return _stream_of(blob, offset)


@contextmanager
def _stream_of(blob: Span | bytes, offset: int) -> Iterator[_Stream]:
    yield _Stream(blob, offset)


# Blobs are fetched by digest; the pull path wants a reference to hand back to its source.
_LOCAL = parse_reference("localhost/dockyard-archive:load")


class _Loader(Puller):
    """The pull path with the manifest already in hand and the names the archive gives."""

    unpacked: set[str]

    def _pull_layer(self, ref: Reference, desc: Descriptor, diff_id: Digest, chain_id: Digest,
                    cancel: threading.Event) -> int:
        size = super()._pull_layer(ref, desc, diff_id, chain_id, cancel)
        self.unpacked.add(desc.digest)     # its blob now backs a committed layer
        return size

    def load(self, image: ArchiveImage) -> ImageRecord:
        manifest = image.parsed
        if image.index:
            self.content.put_bytes(image.index, image.index_digest)
        self.content.put_bytes(image.manifest, image.manifest_digest)
        return self.install(_LOCAL, manifest, image.manifest_digest,
                            index_digest=image.index_digest, names=image.names)


def blobs_of(image: ArchiveImage) -> list[Digest]:
    out = [image.manifest_digest, image.parsed.config.digest,
           *(d.digest for d in image.parsed.layers)]
    if image.index_digest:
        out.append(check_digest(image.index_digest))
    return out


def load_images(archive: Archive, content: ContentStore, layers: LayerStore,
                images: ImageStore, *, progress: ProgressFn | None = None
                ) -> list[ImageRecord]:
    """Ingest, verify and unpack every image of ``archive``; the rows are written last.

    On failure, the blobs this call brought into the content store that no image row holds
    are deleted again, and partial ingests of them are dropped.
    """
    wanted: set[str] = {d for image in archive.images for d in blobs_of(image)}
    had = {d for d in wanted if content.has(d)}
    loader = _Loader(ArchiveSource(archive), content, layers, images,
                     progress=progress or (lambda _p: None))
    loader.unpacked = set()
    out: list[ImageRecord] = []
    try:
        for image in archive.images:
            out.append(loader.load(image))
    except BaseException:
        # A blob behind a committed layer stays: the layer is good and a retry reuses both.
        _forget(content, images, wanted - had - loader.unpacked)
        raise
    return out


def _forget(content: ContentStore, images: ImageStore, digests: set[str]) -> None:
    held = images.referenced_blobs()
    for d in sorted(digests):
        if d in held:
            continue
        with content.ingest(d) as ing:
            if ing.committed:
                content.delete(d)
            else:
                ing.abort()


# --- save --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaveItem:
    record: ImageRecord
    names: tuple[str, ...] = ()     # full references ("docker.io/library/busybox:latest")


def _member(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = 0 if directory else size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def write_archive(content: ContentStore, items: Sequence[SaveItem], out: BinaryIO) -> None:
    """Write ``items`` to ``out`` (any writable stream) as docker-archive + OCI layout."""
    blobs: set[Digest] = set()
    manifest_json: list[dict[str, Any]] = []
    index_entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for item in items:
        rec = item.record
        layer_digests = [la.blob_digest for la in rec.layers]
        blobs.update([rec.id, rec.manifest_digest, *layer_digests])
        refs = [parse_reference(n) for n in item.names]
        manifest_json.append({
            "Config": f"blobs/sha256/{_hex(rec.id)}",
            "RepoTags": [r.familiar for r in refs] or None,
            "Layers": [f"blobs/sha256/{_hex(d)}" for d in layer_digests],
        })
        desc = {"mediaType": rec.manifest_media_type, "digest": rec.manifest_digest,
                "size": content.size(rec.manifest_digest)}
        for r in refs:
            index_entries.append({**desc, "annotations": {
                ANNOTATION_IMAGE_NAME: f"{r.repository}:{r.tag}",
                ANNOTATION_REF_NAME: r.tag or ""}})
            repositories.setdefault(r.familiar_name, {})[r.tag or ""] = _hex(rec.id)
        if not refs:
            index_entries.append(desc)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries}
    for d in blobs:     # a missing blob fails before the first byte is written
        content.size(d)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member("blobs", directory=True))
        tar.addfile(_member("blobs/sha256", directory=True))
        for d in sorted(blobs):
            with content.open(d) as f:
                size = os.fstat(f.fileno()).st_size
                tar.addfile(_member(f"blobs/sha256/{_hex(d)}", size), f)
        for name, value in (("index.json", index), ("manifest.json", manifest_json),
                            ("oci-layout", {"imageLayoutVersion": "1.0.0"}),
                            ("repositories", repositories)):
            data = _json_bytes(value)
            tar.addfile(_member(name, len(data)), io.BytesIO(data))


def _hex(digest: str) -> str:
    return digest.partition(":")[2]


# --- import ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpooledLayer:
    path: str
    diff_id: Digest
    size: int


def spool_layer(reader: BinaryIO, path: str) -> SpooledLayer:
    """Decompress a rootfs tarball (gzip, zstd, bzip2, xz or plain) into ``path``, hashing."""
    source = open_decompressed(reader)
    h = hashlib.sha256()
    size = 0
    with open(path, "wb") as out:
        while chunk := source.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
    if size == 0:
        raise InvalidArgument("the tarball to import is empty")
    return SpooledLayer(path, Digest("sha256:" + h.hexdigest()), size)


def import_archive(layer: SpooledLayer, config: bytes) -> Archive:
    """A one-image archive around a spooled layer and its config (for :func:`load_images`)."""
    config_digest = Digest("sha256:" + hashlib.sha256(config).hexdigest())
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                           "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER, "digest": layer.diff_id,
                            "size": layer.size}]}
    raw = _json_bytes(manifest)
    parsed = parse_manifest_document(raw, OCI_MANIFEST)
    assert isinstance(parsed, Manifest)
    digest = Digest("sha256:" + hashlib.sha256(raw).hexdigest())
    archive = Archive("import", DirFiles(os.path.dirname(layer.path)),
                      [ArchiveImage(raw, digest, parsed)])
    archive.blobs[config_digest] = config
    archive.blobs[layer.diff_id] = Span(layer.path, 0, layer.size)
    return archive


CHANGE_COMMANDS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD",
                   "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


def _json_or_shell(rest: str) -> list[str]:
    text = rest.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", text]


def _words(rest: str, what: str) -> list[str]:
    try:
        return shlex.split(rest, posix=True)
    except ValueError as e:
        raise InvalidArgument(f"{what}: {e}") from None


def _pairs(rest: str, what: str) -> list[tuple[str, str]]:
    """``k=v k2="v 2"``, or the legacy ``key value with spaces`` (one pair)."""
    words = _words(rest, what)
    if not words:
        raise InvalidArgument(f"{what} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = rest.strip().partition(" ")
        if not value.strip():
            raise InvalidArgument(f"{what} must have two arguments")
        return [(key, " ".join(_words(value, what)))]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{what} names can not be blank and need a value: {w!r}")
        out.append((key, value))
    return out


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}


def _duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds."""
    if text == "0":
        return 0
    if not text:
        raise InvalidArgument("invalid duration ''")
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if m is None:
            raise InvalidArgument(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    return int(total)


def _healthcheck(rest: str) -> dict[str, Any]:
    if rest.strip().upper() == "NONE":
        return {"Test": ["NONE"]}
    out: dict[str, Any] = {}
    keys = {"--interval": "Interval", "--timeout": "Timeout", "--start-period": "StartPeriod",
            "--start-interval": "StartInterval", "--retries": "Retries"}
    text = rest.strip()
    while text.startswith("--"):
        flag, _, text = text.partition(" ")
        name, eq, value = flag.partition("=")
        if name not in keys or not eq:
            raise InvalidArgument(f"HEALTHCHECK: unknown flag {flag!r}")
        out[keys[name]] = int(value) if name == "--retries" else _duration(value)
        text = text.strip()
    instr, _, cmd = text.partition(" ")
    if instr.upper() != "CMD" or not cmd.strip():
        raise InvalidArgument("HEALTHCHECK: expected NONE or CMD followed by a command")
    form = _json_or_shell(cmd)
    if form[:2] == ["/bin/sh", "-c"] and not cmd.strip().startswith("["):
        out["Test"] = ["CMD-SHELL", cmd.strip()]
    else:
        out["Test"] = ["CMD", *form]
    return out


def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> dict[str, Any]:
    """docker's ``--change`` (Dockerfile instructions) applied to an image's ``config``."""
    cfg = dict(config)
    for change in changes:
        instr, _, rest = change.strip().partition(" ")
        if not instr:
            continue
        word = instr.upper()
        if word not in CHANGE_COMMANDS:
            raise InvalidArgument(f"{instr} is not a valid change command")
        if word in ("CMD", "ENTRYPOINT"):
            cfg["Cmd" if word == "CMD" else "Entrypoint"] = _json_or_shell(rest)
        elif word == "ENV":
            env = list(cfg.get("Env") or [])
            for key, value in _pairs(rest, "ENV"):
                keys = [e.partition("=")[0] for e in env]
                if key in keys:        # docker replaces a variable where it stands
                    env[keys.index(key)] = f"{key}={value}"
                else:
                    env.append(f"{key}={value}")
            cfg["Env"] = env
        elif word == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs(rest, "LABEL"))
            cfg["Labels"] = labels
        elif word == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in _words(rest, "EXPOSE"):
                for port in _expand_port(p):
                    ports[port] = {}
            cfg["ExposedPorts"] = ports
        elif word == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            paths = _json_or_shell(rest)
            if paths[:2] == ["/bin/sh", "-c"] and not rest.strip().startswith("["):
                paths = _words(rest, "VOLUME")
            if not paths:
                raise InvalidArgument("VOLUME requires at least one argument")
            for v in paths:
                vols[v] = {}
            cfg["Volumes"] = vols
        elif word == "WORKDIR":
            path = rest.strip()
            if not path:
                raise InvalidArgument("WORKDIR requires exactly one argument")
            cfg["WorkingDir"] = posixpath.join(cfg.get("WorkingDir") or "/", path)
        elif word == "USER":
            if not rest.strip():
                raise InvalidArgument("USER requires exactly one argument")
            cfg["User"] = rest.strip()
        elif word == "STOPSIGNAL":
            cfg["StopSignal"] = rest.strip()
        elif word == "ONBUILD":
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), rest.strip()]
        elif word == "HEALTHCHECK":
            cfg["Healthcheck"] = _healthcheck(rest)
    return cfg


def _expand_port(text: str) -> list[str]:
    port, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    lo, dash, hi = port.partition("-")
    if not lo.isdigit() or (dash and not hi.isdigit()):
        raise InvalidArgument(f"invalid containerPort: {port}")
    start, end = int(lo), int(hi) if dash else int(lo)
    if not (0 < start <= end <= 65535):
        raise InvalidArgument(f"invalid containerPort: {port}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def rfc3339(ts: float) -> str:
    t = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}Z"


def import_config(diff_id: Digest, *, platform: Platform, changes: Sequence[str] = (),
                  message: str = "", now: Callable[[], float] = time.time) -> bytes:
    """The config of an imported image (what docker's ``import`` writes)."""
    created = rfc3339(now())
    doc: dict[str, Any] = {
        "architecture": platform.architecture,
        "os": platform.os,
        **({"variant": platform.variant} if platform.variant else {}),
        "created": created,
        "config": apply_changes({}, changes),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "comment": message}],
    }
    if message:
        doc["comment"] = message
    return _json_bytes(doc)


__all__ = ["ANNOTATION_IMAGE_NAME", "ANNOTATION_REF_NAME", "CHANGE_COMMANDS", "Archive",
           "ArchiveError", "ArchiveImage", "ArchiveSource", "DirFiles", "Files", "SaveItem",
           "Span", "SpooledLayer", "TarFiles", "apply_changes", "clean_name", "import_archive",
           "import_config", "load_images", "read_archive", "spool_layer", "write_archive"]
