"""Layer decompression: every format, concatenated streams, padding, truncation, sniffing."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import sys
import zlib
from collections.abc import Callable

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.errors import InvalidArgument
from dockyard.image import compression
from dockyard.image.compression import (
    AUTO,
    BZIP2,
    GZIP,
    NONE,
    XZ,
    ZSTD,
    decompressor,
    detect,
    open_decompressed,
)

# Compressible and incompressible parts, so that outputs span several reads.
DATA = os.urandom(300_000) + b"layer " * 200_000 + os.urandom(1000)


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(data)


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    GZIP: lambda d: gzip.compress(d, mtime=0),
    ZSTD: _zstd,
    BZIP2: bz2.compress,
    XZ: lzma.compress,
}


def _read_all(blob: bytes, kind: str, n: int = 1 << 16) -> bytes:
    reader = open_decompressed(io.BytesIO(blob), kind)
    parts = []
    while chunk := reader.read(n):
        assert len(chunk) <= n
        parts.append(chunk)
    return b"".join(parts)


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_round_trip_and_detection(kind: str) -> None:
    blob = COMPRESS[kind](DATA)
    assert detect(blob[:compression.MAGIC_LEN]) == kind
    assert _read_all(blob, kind) == DATA
    assert _read_all(blob, AUTO) == DATA


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_concatenated_streams_and_zero_padding(kind: str) -> None:
    third = len(DATA) // 3
    blob = b"".join(COMPRESS[kind](DATA[i:i + third]) for i in range(0, len(DATA), third))
    assert _read_all(blob, kind) == DATA
    assert _read_all(blob + bytes(1000), kind) == DATA


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_push_decoder_in_odd_chunks(kind: str) -> None:
    blob = COMPRESS[kind](DATA) + COMPRESS[kind](b"tail")
    d = decompressor(kind)
    out = [d.decompress(blob[i:i + 4099]) for i in range(0, len(blob), 4099)]
    out.append(d.flush())
    assert b"".join(out) == DATA + b"tail"


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_truncated_stream_is_an_error(kind: str) -> None:
    blob = COMPRESS[kind](DATA)
    with pytest.raises(InvalidArgument, match=r"truncated|corrupt"):
        _read_all(blob[:-20], kind)
    with pytest.raises(InvalidArgument, match=r"truncated|corrupt"):
        _read_all(blob[: len(blob) // 2], kind)


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_garbage_after_the_stream_is_an_error(kind: str) -> None:
    blob = COMPRESS[kind](b"hello")
    with pytest.raises(InvalidArgument, match="corrupt"):
        _read_all(blob + b"\0\0not a stream", kind)
    with pytest.raises(InvalidArgument, match="corrupt"):
        _read_all(blob + b"not a stream either", kind)


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_empty_input_is_an_error(kind: str) -> None:
    with pytest.raises(InvalidArgument, match="empty"):
        _read_all(b"", kind)


def test_not_compressed_at_all() -> None:
    assert detect(b"usr/\0\0") == NONE
    assert _read_all(DATA, NONE) == DATA
    assert _read_all(DATA, AUTO) == DATA
    assert _read_all(b"", AUTO) == b""
    assert open_decompressed(io.BytesIO(DATA), AUTO).read() == DATA
    assert open_decompressed(io.BytesIO(DATA), AUTO).read(3) == DATA[:3]
    d = decompressor(NONE)
    assert d.decompress(b"abc") + d.flush() == b"abc"


def test_unknown_compression() -> None:
    with pytest.raises(InvalidArgument, match="unsupported"):
        decompressor("lz4")


def test_reads_are_bounded_by_n() -> None:
    """A small read of a highly compressible stream returns at most n bytes each time."""
    blob = gzip.compress(bytes(20 << 20))
    reader = open_decompressed(io.BytesIO(blob), GZIP)
    assert len(reader.read(1000)) == 1000
    assert reader.read(0) == b""
    total = 1000
    while chunk := reader.read(1 << 20):
        assert len(chunk) <= 1 << 20
        total += len(chunk)
    assert total == 20 << 20


def test_gzip_without_isal_uses_zlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "isal", None)
    monkeypatch.setitem(sys.modules, "isal.igzip_lib", None)
    assert isinstance(compression._gzip_member(), compression._ZlibMember)
    blob = gzip.compress(DATA[:100_000]) + gzip.compress(DATA[100_000:]) + bytes(10)
    assert _read_all(blob, GZIP, 5000) == DATA
    with pytest.raises(InvalidArgument, match="truncated"):
        _read_all(blob[:-40], GZIP)


def test_zlib_gzip_stream_is_read_by_isal() -> None:
    raw = zlib.compressobj(9, zlib.DEFLATED, 31)
    blob = raw.compress(DATA) + raw.flush()
    assert _read_all(blob, GZIP) == DATA


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.binary(max_size=3000), min_size=1, max_size=5),
       kind=st.sampled_from(sorted(COMPRESS)), n=st.integers(1, 5000))
def test_any_concatenation_round_trips(parts: list[bytes], kind: str, n: int) -> None:
    blob = b"".join(COMPRESS[kind](p) for p in parts)
    assert _read_all(blob, kind, n) == b"".join(parts)
