"""A container's json-file log, written the way docker's json-file driver writes it.

Owns the on-disk format (one ``{"log":…,"stream":…,"time":…}`` object per line, byte for byte
what moby's ``jsonlog.JSONLogs.MarshalJSONBuf`` writes), docker's line splitting (moby's
``logger.Copier``: lines at ``\\n``, partial messages at 16 KiB and at end of stream) and
docker's rotation (``loggerutils.LogFile``). The reader is ``dockyard.engine.logread``.

Runs inside the supervisor, so it imports only builtins (no ``json``, no ``datetime``); ``zlib``
is imported on the first compressed rotation.
"""

from __future__ import annotations

import os
import time

# Dockyard's default when no --log-opt is given: docker's json-file default is unbounded, which
# fills disks on long-running chatty containers (ANCHORS.md, issue 5); 3 x 10 MiB bounds a
# container's logs at 30 MiB while keeping enough history for `logs`.
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILE = 3

# moby's copier buffer (logger.defaultBufSize): a line longer than this is logged in pieces
PARTIAL_SIZE = 16 * 1024

_HEX = "0123456789abcdef"


def _escape_table() -> dict[int, str]:
    # Go's encoding/json escaping as moby's ffjsonWriteJSONBytesAsString does it: only \n and
    # \r get a short form (a tab is \u0009), HTML characters and U+2028/U+2029 are escaped
    table: dict[int, str] = {c: f"\\u00{_HEX[c >> 4]}{_HEX[c & 15]}" for c in range(0x20)}
    table.update({0x0A: "\\n", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"})
    table.update({0x3C: "\\u003c", 0x3E: "\\u003e", 0x26: "\\u0026"})
    table.update({0x2028: "\\u2028", 0x2029: "\\u2029"})
    # bytes that are not UTF-8 come out of surrogateescape as U+DC80..U+DCFF, one per byte,
    # which is what Go does: utf8.DecodeRune gives (RuneError, 1) for each of them
    table.update({c: "\\ufffd" for c in range(0xDC80, 0xDD00)})
    return table


_ESCAPES = _escape_table()
# the ASCII bytes that need escaping: a line without them (and without non-ASCII) is copied
_SPECIAL_BYTES = bytes(c for c in _ESCAPES if c < 0x80)
_SPECIAL_BUT_NEWLINE = bytes(c for c in _SPECIAL_BYTES if c != 0x0A)


def escape(data: bytes) -> bytes:
    """The body of a JSON string (no quotes) for ``data`` as Go's encoding/json writes it."""
    if data.isascii() and len(data.translate(None, _SPECIAL_BYTES)) == len(data):
        return data
    return data.decode("utf-8", "surrogateescape").translate(_ESCAPES).encode()


_last_second = -1
_last_prefix = ""


def format_time(ts_ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction (a zero one) dropped."""
    global _last_second, _last_prefix  # noqa: PLW0603 - a one-entry cache: lines come in bursts
    sec, nsec = divmod(ts_ns, 1_000_000_000)
    if sec != _last_second:
        t = time.gmtime(sec)
        _last_prefix = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
            f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        )
        _last_second = sec
    if nsec == 0:
        return _last_prefix + "Z"
    return f"{_last_prefix}.{nsec:09d}".rstrip("0") + "Z"


def encode_entry(stream: str, line: bytes, ts_ns: int) -> bytes:
    """One log file line: ``{"log":…,"stream":…,"time":…}\\n`` (moby's key order and omitempty)."""
    parts = [b"{"]
    if line:
        parts += [b'"log":"', escape(line), b'",']
    if stream:
        parts += [b'"stream":"', escape(stream.encode()), b'",']
    parts += [b'"time":"', format_time(ts_ns).encode(), b'"}\n']
    return b"".join(parts)


class _Stream:
    """What moby's copier keeps per source between reads."""

    __slots__ = ("partial_ts", "pending")

    def __init__(self) -> None:
        self.pending = b""  # bytes after the last newline, not logged yet
        self.partial_ts: int | None = None  # time of the first logged piece of the current line


class LogWriter:
    """Appends a container's output to ``path`` in json-file format, rotating as docker does.

    ``max_size`` None: never rotate. Rotation happens before an entry is written when the file
    has reached ``max_size`` (docker's check, so a file exceeds it by at most one entry):
    ``path.(n-1)`` is dropped, ``path.i`` becomes ``path.(i+1)``, ``path`` becomes ``path.1``
    and a new ``path`` is created; with ``max_file`` 1 the file is unlinked and created anew (a
    reader that has it open finishes it). ``compress`` gzips ``path.1`` to ``path.1.gz``.
    Not thread-safe: one supervisor owns one writer.
    """

    def __init__(
        self,
        path: str,
        *,
        max_size: int | None,
        max_file: int = 1,
        compress: bool = False,
    ) -> None:
        if max_size is not None and max_size <= 0:
            raise ValueError("max-size must be a positive number")
        if max_file < 1:
            raise ValueError("max-file cannot be less than 1")
        if compress and (max_file < 2 or max_size is None):
            raise ValueError(
                "compress cannot be true when max-file is less than 2 or max-size is not set"
            )
        self.path = path
        self.max_size = max_size
        self.max_file = max_file
        self.compress = compress
        self._streams: dict[str, _Stream] = {}
        self._fd = self._open(os.O_APPEND)
        self._size = os.fstat(self._fd).st_size

    def _open(self, extra: int) -> int:
        # 0o640 as docker's log files
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | extra, 0o640)

    def write(self, stream: str, data: bytes, ts_ns: int | None = None) -> None:
        """Log what ``stream`` produced; complete lines are on disk when this returns."""
        st = self._streams.get(stream)
        if st is None:
            st = self._streams[stream] = _Stream()
        if not st.pending and st.partial_ts is None and self._fast(stream, data, ts_ns):
            return
        buf = st.pending + data if st.pending else data
        entries: list[tuple[bytes, int]] = []
        start = 0
        nl = buf.find(b"\n")
        while nl >= 0 or len(buf) - start >= PARTIAL_SIZE:
            if nl < 0 or nl - start >= PARTIAL_SIZE:
                # moby's copier fills its 16 KiB buffer before it sees the newline: the piece is
                # logged without one and the line's later pieces carry the first piece's time
                if st.partial_ts is None:
                    st.partial_ts = ts_ns if ts_ns is not None else time.time_ns()
                entries.append((buf[start : start + PARTIAL_SIZE], st.partial_ts))
                start += PARTIAL_SIZE
            else:
                if st.partial_ts is not None:
                    ts, st.partial_ts = st.partial_ts, None
                else:
                    if ts_ns is None:
                        ts_ns = time.time_ns()
                    ts = ts_ns
                entries.append((buf[start : nl + 1], ts))
                start = nl + 1
                nl = buf.find(b"\n", start)
        st.pending = buf[start:]
        if entries:
            self._append(stream, entries)

    def _fast(self, stream: str, data: bytes, ts_ns: int | None) -> bool:
        """Complete plain-ASCII lines (the usual output) as one join: every line of one read
        has the same time, so only the line itself differs between entries. False, with
        nothing written, when the general path is needed (escapes, a long or unfinished line,
        a rotation, another format)."""
        if (self._fd < 0 or type(self)._encode is not LogWriter._encode
                or not data.endswith(b"\n")
                or not data.isascii()
                or len(data.translate(None, _SPECIAL_BUT_NEWLINE)) != len(data)):
            return False
        lines = data.split(b"\n")
        lines.pop()     # after the last newline: nothing
        if max(map(len, lines)) >= PARTIAL_SIZE:
            return False
        ts = format_time(ts_ns if ts_ns is not None else time.time_ns()).encode()
        name = escape(stream.encode())
        head = b'{"log":"'
        tail = b'\\n","stream":"' + name + b'","time":"' + ts + b'"}\n'
        blob = head + (tail + head).join(lines) + tail
        if self.max_size is not None and self._size + len(blob) >= self.max_size:
            return False
        self._write_all([blob])
        self._size += len(blob)
        return True

    def flush(self, stream: str | None = None, ts_ns: int | None = None) -> None:
        """Log the unfinished line of ``stream`` (all streams if None) without a newline.

        Called at the end of a stream, as moby's copier does at EOF. A line with pieces logged
        already keeps their time; otherwise ``ts_ns`` (default: now) is its time.
        """
        names = list(self._streams) if stream is None else [stream]
        for name in names:
            st = self._streams.get(name)
            if st is None or not st.pending:
                continue
            if st.partial_ts is None:
                st.partial_ts = ts_ns if ts_ns is not None else time.time_ns()
            line, st.pending = st.pending, b""
            self._append(name, [(line, st.partial_ts)])

    def close(self) -> None:
        """Flush every stream's unfinished line and close the file."""
        if self._fd < 0:
            return
        self.flush()
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _encode(self, stream: str, line: bytes, ts_ns: int) -> bytes:
        """One entry as the file holds it; ``line`` ends with a newline unless it is a piece
        of a longer line or the unfinished end of a stream. Other formats override this."""
        return encode_entry(stream, line, ts_ns)

    def _append(self, stream: str, entries: list[tuple[bytes, int]]) -> None:
        if self._fd < 0:
            raise ValueError("write to a closed LogWriter")
        batch: list[bytes] = []
        batch_size = 0
        for line, ts in entries:
            if self.max_size is not None and self._size + batch_size >= self.max_size:
                self._write_all(batch)
                self._size += batch_size
                batch, batch_size = [], 0
                self._rotate()
            encoded = self._encode(stream, line, ts)
            batch.append(encoded)
            batch_size += len(encoded)
        self._write_all(batch)
        self._size += batch_size

    def _write_all(self, chunks: list[bytes]) -> None:
        if not chunks:
            return
        data = b"".join(chunks)
        view = memoryview(data)
        # one write per batch; a regular file takes it whole unless the disk is full
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        path = self.path
        if self.max_file < 2:
            _unlink(path)
        else:
            ext = ".gz" if self.compress else ""
            _unlink(f"{path}.{self.max_file - 1}{ext}")
            for i in range(self.max_file - 1, 1, -1):
                _rename(f"{path}.{i - 1}{ext}", f"{path}.{i}{ext}")
            _rename(path, f"{path}.1")
        self._fd = self._open(os.O_APPEND | os.O_TRUNC)
        self._size = 0
        if self.compress:
            # synchronous, unlike docker's goroutine: the supervisor has no threads to spare,
            # and a 10 MiB file compresses in well under a second
            _compress(f"{path}.1")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rename(src: str, dst: str) -> None:
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        pass


def _compress(path: str) -> None:
    """``path`` → ``path.gz``; the plain file stays until the gzip one is complete."""
    import zlib

    tmp = path + ".gz.tmp"
    try:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            z = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
            while chunk := os.read(src, 1 << 20):
                _write_fd(dst, z.compress(chunk))
            _write_fd(dst, z.flush())
        finally:
            os.close(dst)
    finally:
        os.close(src)
    # readers open path.N first and path.N.gz only when it is missing (as docker's do), so the
    # rename must come before the unlink
    os.rename(tmp, path + ".gz")
    os.unlink(path)


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
