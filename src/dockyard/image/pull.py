"""Pulling an image: manifest → platform → config → layers, streamed into store and snapshots.

Each layer is one job on a thread pool: the blob streams from the registry into the content
store's ingest file *and*, in the same pass, through the decompressor into the unpacker, so a
layer is ready the moment its last byte arrives. Layers unpack into their own snapshot
directories, so they need no ordering among themselves. The ingest lock of a layer's blob is
held through its unpack: a concurrent pull of the same layer waits and then finds it done.

A failure leaves nothing half-made visible: a blob is renamed into ``blobs/`` only after its
digest checked out, a snapshot is committed only after both the blob digest and the layer's
diff_id checked out, and the image row is written last. A partial download stays in ``ingest/``
and the next pull resumes it with an HTTP Range request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from dockyard.errors import DockyardError, InvalidArgument, Unavailable
from dockyard.image.content import ContentStore, Ingest
from dockyard.image.platform import host_platform, select_manifest
from dockyard.image.reference import Reference
from dockyard.image.store import ImageRecord, ImageStore, Layer
from dockyard.image.unpack import UnpackResult, unpack_layer
from dockyard.image.unpack_pool import UnpackPool, iter_file
from dockyard.model.image import (
    LAYER_COMPRESSION,
    Descriptor,
    Digest,
    Index,
    Manifest,
    Platform,
    chain_ids,
    check_digest,
    parse_image_config,
    parse_manifest_document,
)

MAX_PARALLEL_LAYERS = 4
# How often one pull reopens a layer download that broke off, continuing where it stopped.
MAX_RESUMES = 5


class BlobStream(Protocol):
    """What the registry client's ``open_blob`` yields."""

    @property
    def resumed(self) -> bool: ...     # the server honoured our Range request

    def __iter__(self) -> Iterator[bytes]: ...


class Source(Protocol):
    """The part of the registry client a pull needs."""

    def get_manifest(self, ref: Reference) -> tuple[bytes, str, Digest]: ...

    def open_blob(self, ref: Reference, desc: Descriptor,
                  offset: int = 0) -> AbstractContextManager[BlobStream]: ...


class LayerStore(Protocol):
    """The part of a snapshotter that holds unpacked layers."""

    def has_layer(self, chain_id: str) -> bool: ...

    def prepare_layer(self, chain_id: str) -> str: ...

    def commit_layer(self, chain_id: str, tmpdir: str) -> None: ...

    def abort_layer(self, tmpdir: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Progress:
    """One line of docker's pull progress: ``id`` is a layer's short digest, or empty."""

    id: str
    status: str            # docker's words: "Pulling fs layer", "Downloading", ...
    current: int = 0
    total: int = 0


ProgressFn = Callable[[Progress], None]


def _quiet(_: Progress) -> None:
    pass


class _Cancelled(DockyardError):
    pass


class _LayerReader:
    """A file-like view of an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def read(self, n: int = -1) -> bytes:
        if not self._buf:
            chunk = next(self._chunks, b"")
            if not chunk:
                return b""
            self._buf = memoryview(chunk)
        if n < 0 or n >= len(self._buf):
            out = self._buf.tobytes()
            self._buf = memoryview(b"")
        else:
            out = self._buf[:n].tobytes()
            self._buf = self._buf[n:]
        return out


class Puller:
    def __init__(self, source: Source, content: ContentStore, layers: LayerStore,
                 images: ImageStore, *, progress: ProgressFn = _quiet,
                 fork_unpackers: bool = True) -> None:
        self.fork_unpackers = fork_unpackers
        self._unpackers: UnpackPool | None = None
        self.source = source
        self.content = content
        self.layers = layers
        self.images = images
        self.progress = progress

    def _unpack(self, chunks: Iterator[bytes], dest: str, compression: str) -> UnpackResult:
        """Unpack a layer's compressed ``chunks`` (all of them are consumed, so the ingest
        file gets every byte) in a forked unpacker, or in this thread without a pool."""
        if self._unpackers is not None:
            return self._unpackers.unpack(chunks, dest, compression)
        reader = _LayerReader(chunks)
        result = unpack_layer(reader, dest, compression=compression)
        while reader.read(1 << 20):   # the unpacker may stop at the end-of-archive blocks
            pass
        return result

    # --- manifests -----------------------------------------------------------------------------

    def resolve(self, ref: Reference, want: Platform | None = None
                ) -> tuple[Manifest, Digest, str, str]:
        """(manifest, its digest, its media type, the index digest or "")."""
        raw, media_type, digest = self.source.get_manifest(ref)
        doc = parse_manifest_document(raw, media_type)
        index_digest = ""
        if isinstance(doc, Index):
            self.content.put_bytes(raw, digest)
            index_digest = digest
            entry = select_manifest(doc, want or host_platform())
            raw, media_type, digest = self.source.get_manifest(ref.with_digest(entry.digest))
            if digest != entry.digest:
                raise InvalidArgument(f"manifest {entry.digest}: registry sent {digest}")
            doc = parse_manifest_document(raw, media_type or entry.media_type)
            if isinstance(doc, Index):
                raise InvalidArgument(f"manifest {digest}: an index nested in an index")
        self.content.put_bytes(raw, digest)
        return doc, digest, doc.media_type, index_digest

    # --- the pull ------------------------------------------------------------------------------

    def pull(self, ref: Reference, platform: Platform | None = None) -> ImageRecord:
        manifest, manifest_digest, _, index_digest = self.resolve(ref, platform)
        digest_for_repo = index_digest or manifest_digest
        names = [f"{ref.repository}:{ref.tag}"] if ref.tag and not ref.digest else []
        rec = self.install(ref, manifest, manifest_digest, index_digest=index_digest,
                           names=names, repo_digests=(f"{ref.repository}@{digest_for_repo}",))
        self.progress(Progress("", f"Digest: {digest_for_repo}"))
        return rec

    def install(self, ref: Reference, manifest: Manifest, manifest_digest: Digest, *,
                index_digest: str = "", names: Sequence[str] = (),
                repo_digests: tuple[str, ...] = ()) -> ImageRecord:
        """Fetch the config and layers of a manifest already stored, then write the image row
        (last, so a failure leaves no image). ``ref`` is only where blobs come from."""
        cfg_desc = manifest.config
        if not self.content.has(cfg_desc.digest):
            with self.source.open_blob(ref, cfg_desc) as stream:
                data = b"".join(stream)
            self.content.put_bytes(data, cfg_desc.digest)
        config = parse_image_config(self.content.read_bytes(cfg_desc.digest))
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidArgument(
                f"image config lists {len(config.diff_ids)} layers, "
                f"the manifest {len(manifest.layers)}")
        for desc in manifest.layers:
            if desc.media_type not in LAYER_COMPRESSION:
                raise InvalidArgument(f"layer {desc.digest}: unsupported media type "
                                      f"{desc.media_type!r}")
        chains = chain_ids(config.diff_ids)
        sizes = self._pull_layers(ref, manifest.layers, config.diff_ids, chains)
        layers = tuple(
            Layer(chains[i], config.diff_ids[i], d.digest, d.media_type, d.size, sizes[i])
            for i, d in enumerate(manifest.layers))
        record = ImageRecord(
            id=cfg_desc.digest, manifest_digest=manifest_digest,
            manifest_media_type=manifest.media_type, index_digest=index_digest,
            platform=str(config.platform), size=sum(sizes), created=config.created,
            added=time.time(), repo_digests=repo_digests, layers=layers)
        blobs = [cfg_desc.digest, manifest_digest, *(d.digest for d in manifest.layers)]
        if index_digest:
            blobs.append(check_digest(index_digest))
        return self.images.add(record, blobs, names)

    def _pull_layers(self, ref: Reference, descs: tuple[Descriptor, ...],
                     diff_ids: tuple[Digest, ...], chains: list[Digest]) -> list[int]:
        for d, chain in zip(descs, chains, strict=True):
            if not (self.layers.has_layer(chain) and self.content.has(d.digest)):
                self.progress(Progress(_short(d.digest), "Pulling fs layer"))
        cancel = threading.Event()
        sizes = [0] * len(descs)

        def job(i: int) -> None:
            sizes[i] = self._pull_layer(ref, descs[i], diff_ids[i], chains[i], cancel)

        todo = sum(not (self.layers.has_layer(c) and self.content.has(d.digest))
                   for d, c in zip(descs, chains, strict=True))
        workers = max(1, min(MAX_PARALLEL_LAYERS, len(descs)))
        # Unpackers are forked now, before the download threads exist (see unpack_pool).
        self._unpackers = UnpackPool(min(workers, todo)) if todo and self.fork_unpackers \
            else None
        try:
            return self._run_layer_jobs(job, sizes, workers, len(descs), cancel)
        finally:
            if self._unpackers is not None:
                self._unpackers.close()
                self._unpackers = None

    def _run_layer_jobs(self, job: Callable[[int], None], sizes: list[int], workers: int,
                        count: int, cancel: threading.Event) -> list[int]:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pull") as pool:
            futures = [pool.submit(job, i) for i in range(count)]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                cancel.set()
                for f in futures:
                    f.cancel()
                wait(futures)
                errors = [f.exception() for f in futures if f.done() and not f.cancelled()
                          and f.exception() is not None
                          and not isinstance(f.exception(), _Cancelled)]
                exc = errors[0] if errors else failed[0].exception()
                assert exc is not None
                raise exc
        return sizes

    def _pull_layer(self, ref: Reference, desc: Descriptor, diff_id: Digest, chain_id: Digest,
                    cancel: threading.Event) -> int:
        short = _short(desc.digest)
        with self.content.ingest(desc.digest, desc.size) as ing:
            if self.layers.has_layer(chain_id) and ing.committed:
                self.progress(Progress(short, "Already exists"))
                known = self.images.layer_size(chain_id)
                return desc.size if known is None else known
            compression = LAYER_COMPRESSION[desc.media_type]
            tmpdir = self.layers.prepare_layer(chain_id)
            try:
                if ing.committed:
                    with self.content.open(desc.digest) as f:
                        self.progress(Progress(short, "Extracting", 0, desc.size))
                        result = self._unpack(iter_file(f), tmpdir, compression)
                else:
                    result = self._download_and_unpack(ref, desc, ing, tmpdir=tmpdir,
                                                       compression=compression, cancel=cancel)
                if result.diff_id != diff_id:
                    raise InvalidArgument(
                        f"layer {desc.digest}: its content has diff_id {result.diff_id}, "
                        f"the image config says {diff_id}")
                self.layers.commit_layer(chain_id, tmpdir)
            except BaseException:
                self.layers.abort_layer(tmpdir)
                raise
            self.progress(Progress(short, "Pull complete"))
            return result.size

    def _download_and_unpack(self, ref: Reference, desc: Descriptor, ing: Ingest, *,
                             tmpdir: str, compression: str,
                             cancel: threading.Event) -> UnpackResult:
        short = _short(desc.digest)
        done = [0]
        last = [0.0]

        def on_bytes(n: int) -> None:
            done[0] += n
            now = time.monotonic()
            if now - last[0] > 0.1 or done[0] >= desc.size:
                last[0] = now
                self.progress(Progress(short, "Downloading", done[0], desc.size))

        def chunks() -> Iterator[bytes]:
            # Bytes an interrupted pull left in ingest go to the unpacker first; then the
            # network continues from there. A download that breaks off is reopened at the
            # ingest offset (HTTP Range) a few times; a server that ignores the range resends
            # from 0 and what we already have is skipped.
            yield from ing.read_existing()
            done[0] = ing.offset
            reopened = 0
            while True:
                skip = 0
                with self.source.open_blob(ref, desc, ing.offset) as stream:
                    if ing.offset and not stream.resumed:
                        skip = ing.offset
                    it = iter(stream)
                    while True:
                        try:
                            chunk = next(it)
                        except StopIteration:
                            break
                        except Unavailable:
                            if reopened >= MAX_RESUMES:
                                raise
                            break
                        if skip:
                            cut = min(skip, len(chunk))
                            skip -= cut
                            chunk = chunk[cut:]
                            if not chunk:
                                continue
                        ing.write(chunk)
                        on_bytes(len(chunk))
                        if cancel.is_set():
                            raise _Cancelled("cancelled")
                        yield chunk
                if ing.offset >= desc.size or reopened >= MAX_RESUMES:
                    return          # complete, or short for good: commit() tells which
                reopened += 1
                time.sleep(min(2.0, 0.2 * reopened))

        try:
            result = self._unpack(chunks(), tmpdir, compression)
        except InvalidArgument as e:
            # Bad content (not a broken connection): nothing of it is worth resuming.
            ing.abort()
            raise InvalidArgument(f"layer {desc.digest}: {e.message}") from None
        ing.commit()
        self.progress(Progress(short, "Download complete"))
        return result



def _short(digest: str) -> str:
    return digest.partition(":")[2][:12]
