"""The content store: blobs addressed by digest, staged in ``ingest/`` and verified before use.

Layout under the store's root::

    blobs/sha256/<hex>      verified blobs, read-only, shared by every image
    ingest/<hex>.data       a blob being written; survives a crash so that a pull can resume
    ingest/<hex>.lock       flock held by the one writer of that blob

A blob becomes visible only after its size and sha256 were checked and it was fsynced and
renamed into place (containerd's ingest → commit). Two processes that want the same blob
serialise on its lock file; the second finds the blob committed and writes nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from typing import BinaryIO

from dockyard.errors import InvalidArgument, NotFound
from dockyard.model.image import Digest, check_digest
from dockyard.values import value

_CHUNK = 1 << 20
_WRITEBACK_STEP = 8 << 20


class DigestMismatch(InvalidArgument):
    """A blob's content does not match the digest or size it was announced with."""


def _hex(digest: str) -> str:
    return check_digest(digest).partition(":")[2]


def sha256_bytes(data: bytes) -> Digest:
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@value
class Damage:
    digest: str
    problem: str


class Ingest:
    """One blob being written. Use through :meth:`ContentStore.ingest` (a context manager).

    ``offset`` is how many bytes an earlier, interrupted writer left behind; they are already
    hashed, so the caller continues the download from there (HTTP Range) and replays the
    local part through :meth:`read_existing` if it needs the whole stream (to unpack).
    """

    def __init__(self, store: ContentStore, digest: Digest, size: int, lock_fd: int) -> None:
        self.store = store
        self.digest = digest
        self.size = size
        self._lock_fd = lock_fd
        self._data_path = store._ingest_path(digest, ".data")
        self._hash = hashlib.sha256()
        self._file: BinaryIO | None = None
        self.offset = 0
        self._flushed = 0
        self.committed = store.has(digest)
        if not self.committed:
            self._open_partial()

    def _open_partial(self) -> None:
        f = open(self._data_path, "a+b")  # noqa: SIM115 - owned by this object, closed in close()
        f.seek(0)
        n = 0
        while chunk := f.read(_CHUNK):
            self._hash.update(chunk)
            n += len(chunk)
        if self.size >= 0 and n > self.size:
            # Longer than announced: nothing of it can be right.
            f.truncate(0)
            self._hash = hashlib.sha256()
            n = 0
        self._file = f
        self.offset = self._flushed = n

    def read_existing(self) -> Iterator[bytes]:
        """The bytes an earlier writer left, from the start (for replay into an unpacker)."""
        if self.offset == 0:
            return
        with open(self._data_path, "rb") as f:
            left = self.offset
            while left > 0:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk

    def restart(self) -> None:
        """Drop what was written (the server ignored our Range request)."""
        assert self._file is not None
        self._file.truncate(0)
        self._file.seek(0)
        self._hash = hashlib.sha256()
        self.offset = self._flushed = 0

    def write(self, chunk: bytes) -> None:
        assert self._file is not None, "blob already committed"
        self.offset += len(chunk)
        if self.size >= 0 and self.offset > self.size:
            self.abort()
            raise DigestMismatch(f"blob {self.digest}: more data than its size {self.size}")
        self._hash.update(chunk)
        self._file.write(chunk)
        if self.offset - self._flushed >= _WRITEBACK_STEP:
            # Start writing back what we have (asynchronously), so that the fsync in
            # commit() waits for the tail of the blob and not for all of it.
            self._file.flush()
            os.posix_fadvise(self._file.fileno(), self._flushed, self.offset - self._flushed,
                             os.POSIX_FADV_DONTNEED)
            self._flushed = self.offset

    def commit(self) -> None:
        """Verify size and digest, then make the blob visible. On mismatch nothing is kept."""
        if self.committed:
            return
        assert self._file is not None
        got = "sha256:" + self._hash.hexdigest()
        if self.size >= 0 and self.offset != self.size:
            self.abort()
            raise DigestMismatch(f"blob {self.digest}: got {self.offset} bytes, "
                                 f"expected {self.size}")
        if got != self.digest:
            self.abort()
            raise DigestMismatch(f"blob {self.digest}: content has digest {got}")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.chmod(self._data_path, 0o444)
        os.rename(self._data_path, self.store.path(self.digest))
        _fsync_dir(self.store._blobs)
        self.committed = True

    def abort(self) -> None:
        """Forget this blob's partial data (a verification failure: nothing of it is kept)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            os.unlink(self._data_path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Release the lock, keeping partial data for a later resume."""
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None
        os.close(self._lock_fd)


class ContentStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self._blobs = os.path.join(root, "blobs", "sha256")
        self._ingest = os.path.join(root, "ingest")
        os.makedirs(self._blobs, exist_ok=True)
        os.makedirs(self._ingest, exist_ok=True)

    def path(self, digest: str) -> str:
        return os.path.join(self._blobs, _hex(digest))

    def _ingest_path(self, digest: str, suffix: str) -> str:
        return os.path.join(self._ingest, _hex(digest) + suffix)

    def has(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store") from None

    def read_bytes(self, digest: str) -> bytes:
        try:
            with open(self.path(digest), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store") from None

    def ingest(self, digest: str, size: int = -1) -> _IngestContext:
        """Lock and open the blob for writing; blocks while another process writes it."""
        return _IngestContext(self, check_digest(digest), size)

    def put_bytes(self, data: bytes, digest: str | None = None) -> Digest:
        """Store a small blob (manifest, config); ``digest``, when given, must match."""
        want = digest or sha256_bytes(data)
        with self.ingest(want, len(data)) as ing:
            if not ing.committed:
                ing.restart()
                ing.write(data)
                ing.commit()
        return check_digest(want)

    def put_file(self, reader: BinaryIO, digest: str, size: int = -1) -> Digest:
        with self.ingest(digest, size) as ing:
            if not ing.committed:
                ing.restart()
                while chunk := reader.read(_CHUNK):
                    ing.write(chunk)
                ing.commit()
        return check_digest(digest)

    def delete(self, digest: str) -> bool:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            return False
        return True

    def digests(self) -> list[Digest]:
        out = []
        for name in os.listdir(self._blobs):
            d = "sha256:" + name
            try:
                out.append(check_digest(d))
            except InvalidArgument:
                continue
        return sorted(out)

    def usage(self) -> int:
        total = 0
        for d in self.digests():
            try:
                total += os.stat(self.path(d)).st_size
            except FileNotFoundError:
                pass
        return total

    def clean_ingest(self) -> int:
        """Remove partial blobs nobody is writing (after a crash, once a pull gave up)."""
        removed = 0
        for name in os.listdir(self._ingest):
            if not name.endswith(".lock"):
                continue
            hexpart = name[:-5]
            lock = os.path.join(self._ingest, name)
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                for p in (os.path.join(self._ingest, hexpart + ".data"), lock):
                    try:
                        os.unlink(p)
                        removed += 1
                    except FileNotFoundError:
                        pass
            finally:
                os.close(fd)
        return removed

    def fsck(self) -> list[Damage]:
        """Re-hash every blob; report (never repair) the damaged ones."""
        damage = []
        for d in self.digests():
            h = hashlib.sha256()
            try:
                with open(self.path(d), "rb") as f:
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
            except OSError as e:
                damage.append(Damage(d, f"unreadable: {e.strerror}"))
                continue
            got = "sha256:" + h.hexdigest()
            if got != d:
                damage.append(Damage(d, f"content has digest {got}"))
        return damage


class _IngestContext:
    def __init__(self, store: ContentStore, digest: Digest, size: int) -> None:
        self._store = store
        self._digest = digest
        self._size = size
        self._ingest: Ingest | None = None

    def __enter__(self) -> Ingest:
        lock = self._store._ingest_path(self._digest, ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._ingest = Ingest(self._store, self._digest, self._size, fd)
        except BaseException:
            os.close(fd)
            raise
        return self._ingest

    def __exit__(self, *exc: object) -> None:
        ing = self._ingest
        assert ing is not None
        committed = ing.committed
        ing.close()
        if committed:
            # The lock file is only useful while a writer may exist.
            try:
                os.unlink(self._store._ingest_path(self._digest, ".lock"))
            except FileNotFoundError:
                pass


__all__ = ["ContentStore", "Damage", "DigestMismatch", "Ingest", "sha256_bytes"]
