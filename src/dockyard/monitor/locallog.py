"""A container's log in the format of docker's "local" driver (moby ``daemon/logger/local``).

The file is a sequence of records: a protobuf ``LogEntry`` (moby's
``api/types/plugins/logdriver/entry.proto``) with its length as a big-endian uint32 before and
after it, so that a reader can walk the file forwards, and backwards for ``--tail``::

    | len | LogEntry: len bytes | len | len | LogEntry | len | ...

    message LogEntry {                          message PartialLogEntryMetadata {
        string source = 1;                          bool last = 1;
        int64 time_nano = 2;                        string id = 2;
        bytes line = 3;                             int32 ordinal = 3;
        bool partial = 4;                       }
        PartialLogEntryMetadata partial_log_metadata = 5;
    }

``line`` never holds the newline. A line logged in pieces (moby's copier: 16 KiB at most per
piece, and the unfinished end of a stream) is ``partial``: its pieces share a random id and
the first piece's time, count up from ordinal 1, and the piece that ends the line is ``last``;
a reader adds the newline to a whole line and to a last piece only. The protobuf encoding is
written by hand: proto3 as gogo/protobuf marshals it, fields in number order and default
values left out.

Line splitting and rotation are the json-file writer's (:class:`LogWriter`); the reader is
``dockyard.engine.logread``. Runs inside the supervisor, so it imports only builtins.
"""

from __future__ import annotations

import os

from dockyard.monitor.logfile import LogWriter
from dockyard.values import value

# docker's defaults for the local driver (moby daemon/logger/local/local.go)
DEFAULT_MAX_SIZE = 20 * 1024 * 1024
DEFAULT_MAX_FILE = 5
# moby's reader refuses a record longer than this (daemon/logger/local/read.go: maxMsgLen)
MAX_RECORD = 1_000_000
FRAME = 4   # bytes of each length around a record

_U64 = (1 << 64) - 1


@value
class Partial:
    """``PartialLogEntryMetadata``: which piece of a long line an entry is."""

    id: str
    ordinal: int
    last: bool


@value
class Record:
    """One decoded ``LogEntry``; ``line`` without a newline."""

    source: str
    time_ns: int
    line: bytes
    partial: Partial | None = None

    def data(self) -> bytes:
        """The output as ``docker logs`` shows it: the newline back unless the line goes on."""
        if self.partial is None or self.partial.last:
            return self.line + b"\n"
        return self.line


# --- protobuf -----------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= _U64   # a negative int64/int32 takes ten bytes, two's complement, as in Go
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _length_delimited(tag: int, data: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(data)) + data


def encode_record(source: str, line: bytes, ts_ns: int, partial: Partial | None = None) -> bytes:
    """One framed record: length, ``LogEntry``, length."""
    parts = []
    if source:
        parts.append(_length_delimited(0x0A, source.encode()))     # 1: source
    if ts_ns:
        parts.append(b"\x10" + _varint(ts_ns))                      # 2: time_nano
    if line:
        parts.append(_length_delimited(0x1A, line))                 # 3: line
    if partial is not None:
        parts.append(b"\x20\x01")                                   # 4: partial
        meta = []
        if partial.last:
            meta.append(b"\x08\x01")                                # 1: last
        if partial.id:
            meta.append(_length_delimited(0x12, partial.id.encode()))  # 2: id
        if partial.ordinal:
            meta.append(b"\x18" + _varint(partial.ordinal))         # 3: ordinal
        parts.append(_length_delimited(0x2A, b"".join(meta)))       # 5: partial_log_metadata
    body = b"".join(parts)
    size = len(body).to_bytes(FRAME, "big")
    return size + body + size


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return n, pos


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of every field of a protobuf message; unknown ones included."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        val: int | bytes
        if wire == 0:
            val, pos = _read_varint(buf, pos)
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("truncated field")
            val, pos = buf[pos : pos + size], pos + size
        elif wire in (1, 5):    # fixed64, fixed32: no field of ours, skipped
            width = 8 if wire == 1 else 4
            val, pos = buf[pos : pos + width], pos + width
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, val))
    if pos != len(buf):
        raise ValueError("truncated field")
    return out


def decode_entry(body: bytes) -> Record:
    """A ``LogEntry`` (the bytes between the lengths). Raises ValueError on a malformed one."""
    source, ts, line, partial = "", 0, b"", None
    is_partial = False
    for number, val in _fields(body):
        if number == 1 and isinstance(val, bytes):
            source = val.decode("utf-8", "replace")
        elif number == 2 and isinstance(val, int):
            ts = val - (1 << 64) if val >> 63 else val
        elif number == 3 and isinstance(val, bytes):
            line = val
        elif number == 4 and isinstance(val, int):
            is_partial = bool(val)
        elif number == 5 and isinstance(val, bytes):
            partial = _decode_partial(val)
    if is_partial and partial is None:
        partial = Partial("", 0, False)
    # moby reads the metadata only when `partial` is set
    return Record(source, ts, line, partial if is_partial else None)


def _decode_partial(body: bytes) -> Partial:
    last, pid, ordinal = False, "", 0
    for number, val in _fields(body):
        if number == 1 and isinstance(val, int):
            last = bool(val)
        elif number == 2 and isinstance(val, bytes):
            pid = val.decode("utf-8", "replace")
        elif number == 3 and isinstance(val, int):
            ordinal = val - (1 << 64) if val >> 63 else val
    return Partial(pid, ordinal, last)


def split_records(buf: bytes) -> tuple[list[bytes], int]:
    """The complete records at the start of ``buf`` (their ``LogEntry`` bytes) and how many
    bytes they take; an incomplete one at the end is left. Raises ValueError on a length that
    no writer writes (the file is corrupt from there on)."""
    records = []
    pos = 0
    end = len(buf)
    while end - pos >= FRAME:
        size = int.from_bytes(buf[pos : pos + FRAME], "big")
        if size > MAX_RECORD:
            raise ValueError(f"log record is too large ({size} > {MAX_RECORD})")
        if end - pos < size + 2 * FRAME:
            break
        records.append(buf[pos + FRAME : pos + FRAME + size])
        pos += size + 2 * FRAME
    return records, pos


# --- the writer ---------------------------------------------------------------------------------


class LocalLogWriter(LogWriter):
    """Appends a container's output to ``path`` in the local driver's format; splitting,
    ``write``/``flush``/``close`` and rotation are :class:`LogWriter`'s. The directory is
    created (0700, as dockerd creates ``local-logs``). Not thread-safe."""

    def __init__(
        self,
        path: str,
        *,
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_file: int = DEFAULT_MAX_FILE,
        compress: bool = False,
    ) -> None:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        # per stream: the id and last ordinal of the line being logged in pieces
        self._pieces: dict[str, tuple[str, int]] = {}
        super().__init__(path, max_size=max_size, max_file=max_file, compress=compress)

    def _encode(self, stream: str, line: bytes, ts_ns: int) -> bytes:
        piece = self._pieces.get(stream)
        if line.endswith(b"\n"):
            if piece is None:
                return encode_record(stream, line[:-1], ts_ns)
            del self._pieces[stream]
            return encode_record(stream, line[:-1], ts_ns, Partial(piece[0], piece[1] + 1, True))
        # moby's copier: a random 64-hex id per long line (stringid.GenerateRandomID)
        pid, ordinal = piece if piece is not None else (os.urandom(32).hex(), 0)
        self._pieces[stream] = (pid, ordinal + 1)
        return encode_record(stream, line, ts_ns, Partial(pid, ordinal + 1, False))
