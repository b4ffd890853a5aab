"""``save``, ``load`` and ``import`` over an :class:`~dockyard.engine.images.ImageService`.

Archives read from a stream (stdin) are spooled to ``<root>/tmp`` first: a tar needs random
access, and a compressed archive (``docker load`` takes .tar.gz, .tar.zst, .tar.xz, .tar.bz2) is
decompressed there once. Spool files are removed when the command ends, whatever happens.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from dockyard.atomicfile import replace_file
from dockyard.errors import InvalidArgument, NotFound
from dockyard.image.compression import NONE, open_decompressed, sniff

if TYPE_CHECKING:
    from dockyard.engine.images import ImageService
    from dockyard.image.archive import Files
    from dockyard.image.compression import Readable
    from dockyard.image.store import ImageRecord
    from dockyard.model.image import Platform

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Loaded:
    """One image ``load`` brought in: its names (full references) and the names it took from
    other images (name, previous image id)."""

    record: ImageRecord
    names: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...] = ()


def _tmp_dir(svc: ImageService) -> str:
    path = os.path.join(svc.root, "tmp")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


@contextmanager
def _spool(svc: ImageService, prefix: str) -> Iterator[str]:
    fd, path = tempfile.mkstemp(prefix=prefix, dir=_tmp_dir(svc))
    os.close(fd)
    try:
        yield path
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _copy(reader: Readable, path: str) -> int:
    n = 0
    with open(path, "wb") as out:
        while chunk := reader.read(_CHUNK):
            out.write(chunk)
            n += len(chunk)
    return n


# --- load ------------------------------------------------------------------------------------


def load(svc: ImageService, *, path: str | None = None, stream: BinaryIO | None = None,
         platform: Platform | None = None) -> list[Loaded]:
    """Load the images of the archive at ``path`` (a tar, possibly compressed, or an OCI
    layout directory) or read from ``stream``."""
    if path is not None and os.path.isdir(path):
        from dockyard.image.archive import DirFiles

        return _load_files(svc, DirFiles(path), platform)
    with _spool(svc, "load-") as spool:
        f: BinaryIO
        if path is not None:
            try:
                f = open(path, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                raise NotFound(f"open {path}: no such file or directory") from None
            except IsADirectoryError:
                raise InvalidArgument(f"{path} is a directory") from None
        else:
            assert stream is not None
            f = stream
        try:
            compression, head = sniff(f)
            if not head:
                raise InvalidArgument("unexpected EOF: the archive is empty")
            regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
            if compression == NONE and path is not None and regular:
                tar_path = path     # a plain tar file: read in place
            else:
                _copy(open_decompressed(_Prepend(head, f), compression), spool)
                tar_path = spool
        finally:
            if path is not None:
                f.close()
        from dockyard.image.archive import TarFiles

        return _load_files(svc, TarFiles(tar_path), platform)


class _Prepend:
    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head, b""
            return out
        return self._raw.read(n)


def _load_files(svc: ImageService, files: Files, platform: Platform | None) -> list[Loaded]:
    from dockyard.image.archive import load_images, read_archive

    archive = read_archive(files, platform=platform)
    before: dict[str, str] = {}
    for image in archive.images:
        for name in image.names:
            old = svc.store.find_id(name, [name])
            if old is not None:
                before[name] = old
    records = load_images(archive, svc.content, svc.snapshots, svc.store)
    out = []
    for image, record in zip(archive.images, records, strict=True):
        renamed = tuple((n, before[n]) for n in image.names
                        if n in before and before[n] != record.id)
        out.append(Loaded(record, image.names, renamed))
        svc.event("load", record.id, record.id, record)
    return out


# --- save ------------------------------------------------------------------------------------


def images_to_save(svc: ImageService, names: Sequence[str],
                   platform: Platform | None = None) -> list[tuple[ImageRecord, list[str]]]:
    """docker's rules: ``busybox`` (no tag) saves every tag of the repository; a name saves
    that name; an id saves the image without names."""
    from dockyard.image.platform import matches
    from dockyard.image.reference import parse_reference
    from dockyard.model.image import Platform as _Platform

    order: list[str] = []
    picked: dict[str, list[str]] = {}

    def add(record: ImageRecord, ref: str | None) -> None:
        if record.id not in picked:
            order.append(record.id)
            picked[record.id] = []
        if ref and ref not in picked[record.id]:
            picked[record.id].append(ref)

    for name in names:
        ref = None
        try:
            ref = parse_reference(name)
        except InvalidArgument:
            pass
        tagless = ref is not None and not ref.digest and ":" not in name.rpartition("/")[2]
        if ref is not None and tagless:
            tagged = [(rec, r) for rec in svc.store.list() for r in rec.references
                      if r.rpartition(":")[0] == ref.repository]
            if tagged:
                for rec, r in sorted(tagged, key=lambda t: t[1]):
                    add(rec, r)
                continue
        record = svc.resolve(name)
        by_name = ref is not None and not ref.digest and \
            f"{ref.repository}:{ref.tag}" in record.references
        add(record, f"{ref.repository}:{ref.tag}" if by_name and ref is not None else None)
    out = []
    for image_id in order:
        record = svc.store.get(image_id)
        if platform is not None:
            os_, _, rest = record.platform.partition("/")
            arch, _, variant = rest.partition("/")
            if not matches(platform, _Platform(os_, arch, variant)):
                raise NotFound(f"image {record.short_id} has platform {record.platform}, "
                               f"not {platform}")
        out.append((record, picked[image_id]))
    return out


def save(svc: ImageService, names: Sequence[str], out: BinaryIO, *,
         platform: Platform | None = None) -> None:
    """Write the named images to ``out`` as one docker-archive + OCI layout tar."""
    from dockyard.image.archive import SaveItem, write_archive

    items = [SaveItem(rec, tuple(refs)) for rec, refs in images_to_save(svc, names, platform)]
    write_archive(svc.content, items, out)
    for item in items:
        svc.event("save", item.record.id, item.record.id, item.record)


def save_to_file(svc: ImageService, names: Sequence[str], path: str, *,
                 platform: Platform | None = None) -> None:
    """``save -o``: written beside ``path`` and renamed, so a failure leaves no half file."""
    images_to_save(svc, names, platform)   # a bad name fails before any file is made
    replace_file(os.path.abspath(path), lambda f: save(svc, names, f, platform=platform),
                 mode=0o644 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- import ----------------------------------------------------------------------------------


def import_image(svc: ImageService, *, path: str | None = None,
                 stream: BinaryIO | None = None, reference: str | None = None,
                 changes: Sequence[str] = (), message: str = "",
                 platform: Platform | None = None) -> ImageRecord:
    """docker's ``import``: a rootfs tarball (plain, gzip, zstd, bzip2 or xz) becomes a
    one-layer image; ``reference`` (REPOSITORY[:TAG]) names it."""
    from dockyard.image.archive import import_archive, import_config, load_images, spool_layer
    from dockyard.image.platform import host_platform
    from dockyard.image.reference import parse_reference

    full_name = None
    if reference:
        ref = parse_reference(reference)
        if ref.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: "
                                  f"{reference}")
        full_name = f"{ref.repository}:{ref.tag}"
    if path is not None and "://" in path:
        raise InvalidArgument(f"importing from a URL is not supported: {path}",
                              hint="download it first, then import the file")
    # Fail on a bad --change before reading anything.
    from dockyard.image.archive import apply_changes

    apply_changes({}, changes)
    with _spool(svc, "import-") as spool:
        if path is not None:
            try:
                with open(path, "rb") as f:
                    layer = spool_layer(f, spool)
            except FileNotFoundError:
                raise NotFound(f"open {path}: no such file or directory") from None
        else:
            assert stream is not None
            layer = spool_layer(stream, spool)
        config = import_config(layer.diff_id, platform=platform or host_platform(),
                               changes=changes, message=message or "Imported from -")
        archive = import_archive(layer, config)
        if full_name:
            from dockyard.image.archive import ArchiveImage

            img = archive.images[0]
            archive.images[0] = ArchiveImage(img.manifest, img.manifest_digest, img.parsed,
                                              names=(full_name,))
        (record,) = load_images(archive, svc.content, svc.snapshots, svc.store)
    svc.event("import", record.id, record.id, record)
    return record


__all__ = ["Loaded", "images_to_save", "import_image", "load", "save", "save_to_file"]
