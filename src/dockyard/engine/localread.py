"""The local log driver's file format as ``dockyard.engine.logread`` reads it.

A record is a protobuf ``LogEntry`` with its length as a big-endian uint32 before and after it
(see ``dockyard.monitor.locallog``, which writes them and decodes the protobuf). Forward, the
lengths before the records are followed; ``--tail`` follows the lengths after them backwards and
checks each against the one before its record, as moby's ``getTailReader`` does.
"""

from __future__ import annotations

from dockyard.engine.logread import LogEntry, ReadAt
from dockyard.logs import get_logger
from dockyard.monitor.locallog import FRAME, MAX_RECORD, decode_entry, split_records

log = get_logger(__name__)


def _length_at(src: ReadAt, offset: int) -> int | None:
    data = src.pread(offset, FRAME) if offset >= 0 else b""
    return int.from_bytes(data, "big") if len(data) == FRAME else None


def _record_before(src: ReadAt, end: int) -> int | None:
    """Where the record that ends at ``end`` starts, if a whole one does."""
    size = _length_at(src, end - FRAME)
    if size is None or size > MAX_RECORD:
        return None
    start = end - size - 2 * FRAME
    return start if start >= 0 and _length_at(src, start) == size else None


class LocalFormat:
    """docker's local driver format, for :func:`dockyard.engine.logread.read_logs`."""

    def complete_end(self, src: ReadAt, size: int) -> int:
        # the usual case: the file ends with a whole record; else a record is being written
        # and the lengths are followed from the start to find where it begins
        if size == 0 or _record_before(src, size) is not None:
            return size
        pos = 0
        while (n := _length_at(src, pos)) is not None and n <= MAX_RECORD:
            if pos + n + 2 * FRAME > size:
                break
            pos += n + 2 * FRAME
        return pos

    def tail_start(self, src: ReadAt, end: int, count: int) -> tuple[int, int]:
        pos = end
        found = 0
        while found < count and pos > 0:
            start = _record_before(src, pos)
            if start is None:
                log.warning("log record lengths disagree before offset %d: the tail starts "
                            "there", pos)
                break
            pos = start
            found += 1
        return pos, found

    def split(self, buf: bytes) -> tuple[list[bytes], int]:
        return split_records(buf)

    def decode(self, record: bytes) -> LogEntry:
        r = decode_entry(record)
        return LogEntry(r.source, r.data(), r.time_ns)

    def head(self, src: ReadAt) -> bytes:
        size = _length_at(src, 0)
        if size is None or size > MAX_RECORD:
            return src.pread(0, 4096)
        return src.pread(0, size + 2 * FRAME)


LOCAL = LocalFormat()
