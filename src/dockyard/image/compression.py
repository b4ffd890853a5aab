"""Streaming layer decompression: gzip (ISA-L, zlib fallback), zstd, bzip2, xz, or none.

Two shapes over one implementation: a push :class:`Decompressor` (``decompress(chunk)`` then
``flush()``) for code that is fed chunks, and :func:`open_decompressed`, a reader whose
``read(n)`` returns at most ``n`` bytes, for code that pulls. Both accept concatenated streams
(multi-member gzip as ``pigz``/``bgzip`` write it, several zstd frames, several xz streams) and
zero padding after the last one, and both fail on a truncated stream instead of returning a
short layer. :func:`detect` names a compression from magic bytes (docker-archive, ``import``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Protocol, cast

from dockyard.errors import InvalidArgument

GZIP = "gzip"
ZSTD = "zstd"
BZIP2 = "bzip2"
XZ = "xz"
NONE = ""
AUTO = "auto"  # open_decompressed only: sniff the magic bytes first

_MAGIC = ((b"\x1f\x8b", GZIP), (b"\x28\xb5\x2f\xfd", ZSTD), (b"BZh", BZIP2),
          (b"\xfd7zXZ\x00", XZ))
MAGIC_LEN = 6

# Compressed bytes handed to a zstd frame decoder per call. zstandard has no output bound
# (max_length), so this bounds memory instead: an RLE block turns 4 bytes into 128 KiB, so
# 8 KiB in is at most 256 MiB out, and about 32 KiB for a real layer.
_ZSTD_PIECE = 8 << 10
_READ_SIZE = 256 << 10


def detect(head: bytes) -> str:
    """The compression whose magic starts ``head`` (give it :data:`MAGIC_LEN` bytes), or
    :data:`NONE` (a plain tar, or anything we do not know)."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return NONE


class Decompressor(Protocol):
    """A push decoder: feed chunks, then ``flush()`` once at the end of the input."""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        """What ``data`` (and input held back earlier) decodes to; at most ``max_length``
        bytes when it is >= 0, the rest of the input is then kept (see ``needs_input``)."""
        ...

    @property
    def needs_input(self) -> bool:
        """False while held-back input can produce more output without new data."""
        ...

    def flush(self) -> bytes:
        """The end of the input: the remaining output. Raises InvalidArgument when the
        stream stopped in the middle."""
        ...


class _Member(Protocol):
    """One gzip member / zstd frame / xz stream, with isal's and bz2's calling convention."""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...


class _ZlibMember:
    """zlib's decompressobj in isal's convention (the tail stays inside)."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._tail = b""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if self._tail:
            data = self._tail + data
        out = self._d.decompress(data, max(max_length, 0))
        self._tail = self._d.unconsumed_tail
        return out

    @property
    def needs_input(self) -> bool:
        return not self._tail

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data


class _ZstdMember:
    """One zstd frame with an output bound: input is fed in small pieces."""

    def __init__(self) -> None:
        import zstandard

        self._d = zstandard.ZstdDecompressor().decompressobj()
        self._in = b""
        self._out = b""
        self._rest = b""  # input after the frame's end: the next frame's

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if data:
            self._in = self._in + data if self._in else data
        parts = [self._out] if self._out else []
        have = len(self._out)
        self._out = b""
        while self._in and not self._d.eof and (max_length < 0 or have < max_length):
            piece, self._in = self._in[:_ZSTD_PIECE], self._in[_ZSTD_PIECE:]
            got = self._d.decompress(piece)
            if got:
                parts.append(got)
                have += len(got)
        if self._d.eof and self._in:
            # decompressobj keeps what followed the frame in unused_data; add ours after it.
            self._rest = self._d.unused_data + self._in
            self._in = b""
        out = b"".join(parts)
        if 0 <= max_length < len(out):
            out, self._out = out[:max_length], out[max_length:]
        return out

    @property
    def needs_input(self) -> bool:
        return not self._in and not self._out

    @property
    def eof(self) -> bool:
        return self._d.eof and not self._out

    @property
    def unused_data(self) -> bytes:
        return self._rest or self._d.unused_data


def _gzip_member() -> _Member:
    try:
        from isal import igzip_lib
    except ImportError:
        return _ZlibMember()
    return igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)


def _bzip2_member() -> _Member:
    import bz2

    return bz2.BZ2Decompressor()


def _xz_member() -> _Member:
    import lzma

    return lzma.LZMADecompressor(lzma.FORMAT_XZ)


_FACTORIES: dict[str, Callable[[], _Member]] = {
    GZIP: _gzip_member, ZSTD: _ZstdMember, BZIP2: _bzip2_member, XZ: _xz_member,
}


def _foreign_errors() -> tuple[type[BaseException], ...]:
    import lzma

    errors: list[type[BaseException]] = [zlib.error, EOFError, OSError, ValueError,
                                         lzma.LZMAError]
    try:
        from isal import igzip_lib

        errors.append(cast("type[BaseException]", igzip_lib.IsalError))
    except ImportError:
        pass
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(errors)


class _Concatenated:
    """Members one after another, then optional zero padding; nothing else."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._new = _FACTORIES[name]
        self._m = self._new()
        self._fed = False        # the current member has seen input
        self._stash = b""        # input that belongs to the next member
        self._members = 0        # members finished
        self._padding = False    # zeros seen after the last member
        self._errors = _foreign_errors()

    @property
    def needs_input(self) -> bool:
        return not self._stash and self._m.needs_input

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if self._stash:
            data, self._stash = self._stash + data, b""
        parts: list[bytes] = []
        have = 0
        try:
            while True:
                if not self._fed and data:
                    data = self._member_start(data)
                    if not data:
                        break
                if data:
                    self._fed = True
                want = -1 if max_length < 0 else max_length - have
                out = self._m.decompress(data, want)
                data = b""
                if out:
                    parts.append(out)
                    have += len(out)
                if self._m.eof:
                    self._members += 1
                    data = self._m.unused_data
                    self._m = self._new()
                    self._fed = False
                    if max_length >= 0 and have >= max_length:
                        self._stash = data
                        break
                    if not data:
                        break
                    continue
                if self._m.needs_input or (max_length >= 0 and have >= max_length):
                    break
        except self._errors as e:
            raise InvalidArgument(f"corrupt {self._name} data: {e}") from None
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def _member_start(self, data: bytes) -> bytes:
        """Input at a member boundary: zero padding is dropped, after it nothing may follow."""
        if self._members and data[:1] == b"\0":
            stripped = data.lstrip(b"\0")
            self._padding = True
            data = stripped
        if data and self._padding:
            raise InvalidArgument(f"corrupt {self._name} data: garbage after zero padding")
        return data

    def flush(self) -> bytes:
        out = b""
        while not self.needs_input:
            out += self.decompress(b"")
        if self._fed or self._members == 0:
            what = "empty" if self._members == 0 and not self._fed else "truncated"
            raise InvalidArgument(f"{what} {self._name} stream (unexpected end of data)")
        return out


class _Identity:
    needs_input = True

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


def decompressor(compression: str) -> Decompressor:
    """A push decoder for ``compression`` (:data:`GZIP`, :data:`ZSTD`, :data:`BZIP2`,
    :data:`XZ` or :data:`NONE`)."""
    if compression == NONE:
        return _Identity()
    if compression not in _FACTORIES:
        raise InvalidArgument(f"unsupported layer compression {compression!r}")
    return _Concatenated(compression)


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class DecompressedReader:
    """``read(n)`` returns at most ``n`` decoded bytes (fewer is not the end; ``b""`` is)."""

    def __init__(self, raw: Readable, compression: str, *, head: bytes = b"") -> None:
        self._raw = raw
        self._d = decompressor(compression)
        self._head = head   # bytes already read from raw (sniffed magic)
        self._done = False
        self.compression = compression

    def read(self, n: int = -1) -> bytes:
        if n == 0:
            return b""
        limit = n if n > 0 else -1
        if self.compression == NONE:
            if not self._head:
                return self._raw.read(n)
            if n < 0:
                out, self._head = self._head, b""
                return out + self._raw.read()
            out, self._head = self._head[:n], self._head[n:]
            return out
        while not self._done:
            if not self._d.needs_input:
                out = self._d.decompress(b"", limit)
            else:
                if self._head:
                    chunk, self._head = self._head, b""
                else:
                    chunk = self._raw.read(_READ_SIZE)
                if not chunk:
                    self._done = True
                    return self._d.flush()
                out = self._d.decompress(chunk, limit)
            if out:
                return out
        return b""

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(1 << 20):
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()


def sniff(raw: Readable) -> tuple[str, bytes]:
    """Reads the magic of ``raw``: its compression and the bytes read (give them back as
    ``head``)."""
    head = b""
    while len(head) < MAGIC_LEN:
        chunk = raw.read(MAGIC_LEN - len(head))
        if not chunk:
            break
        head += chunk
    return detect(head), head


def open_decompressed(raw: Readable, compression: str = AUTO) -> DecompressedReader:
    """A reader of ``raw`` decoded; :data:`AUTO` tells the compression from magic bytes."""
    head = b""
    if compression == AUTO:
        compression, head = sniff(raw)
    return DecompressedReader(raw, compression, head=head)
