"""Bodies that are too big to hold: a response written as it is produced (the tar streams of
export, archive and save) and a request body handed to the engine as a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.api.http import Chunks

_FLUSH_AT = 1 << 16


class ChunkWriter:
    """A binary file over a chunked response: writes are gathered into chunks of 64 KiB.
    A write after the client left raises BrokenPipeError, which stops the producer (the
    server closes the connection)."""

    def __init__(self, chunks: Chunks) -> None:
        self.chunks = chunks
        self.buf = bytearray()
        self.sent = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.buf += data
        if len(self.buf) >= _FLUSH_AT:
            self._send()
        return len(data)

    def flush(self) -> None:
        pass        # chunks go out when they are full, and at close()

    def _send(self) -> None:
        data, self.buf = bytes(self.buf), bytearray()
        self.sent += len(data)
        if not self.chunks.write(data):
            raise BrokenPipeError("the client closed the connection")

    def close(self, size: int | None = None) -> None:
        """Send what is left and end the response. ``size``: where the body really ends (a
        tar's end without the padding Python's tarfile adds to a 10 KiB record, which docker's
        writer does not: a client that stops reading at the end of the archive would leave
        it unread)."""
        if size is not None and size >= self.sent:
            del self.buf[size - self.sent:]
        if self.buf:
            self._send()
        self.chunks.end()


@contextmanager
def spooled(body: bytes, root: str, prefix: str) -> Iterator[str]:
    """``body`` in a file under ``<root>/tmp`` for the time of the block (the engine's loaders
    want a seekable file)."""
    tmp = os.path.join(root, "tmp")
    os.makedirs(tmp, mode=0o700, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=prefix, dir=tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        yield path
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
