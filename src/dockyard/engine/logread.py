"""Reading a container's logs: ``dockyard logs`` and the API's ``/containers/…/logs``.

Owns reading the files that ``dockyard.monitor.logfile`` and ``dockyard.monitor.locallog`` write
(and docker's own): rotated files oldest first, ``--tail`` read backwards, ``--since/--until``
with docker's semantics, following a file through rotations, ``docker logs -t`` output and
docker's ``--since/--until`` argument syntax. What differs between the json-file format (here)
and the local driver's (``dockyard.engine.localread``) is a :class:`LogFormat`: how entries are
framed and decoded.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from dockyard import fastjson
from dockyard.errors import InvalidArgument, Unavailable
from dockyard.logs import get_logger

log = get_logger(__name__)

_BLOCK = 64 * 1024
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One logged piece of output; ``data`` ends with ``\\n`` unless it is a partial line."""

    stream: str
    data: bytes
    time_ns: int


class ReadAt(Protocol):
    """A log file as the formats read it."""

    def pread(self, offset: int, n: int) -> bytes: ...


class LogFormat(Protocol):
    """How a log file format frames its entries ("records") and decodes them."""

    def complete_end(self, src: ReadAt, size: int) -> int:
        """The offset just past the last whole record before ``size`` (one being written is
        not read)."""
        ...

    def tail_start(self, src: ReadAt, end: int, count: int) -> tuple[int, int]:
        """Where the last ``count`` records before ``end`` start, and how many there are."""
        ...

    def split(self, buf: bytes) -> tuple[list[bytes], int]:
        """The whole records at the start of ``buf`` and the bytes they take; ValueError when
        the rest of the file cannot be read."""
        ...

    def decode(self, record: bytes) -> LogEntry:
        """One record's entry; ValueError on a malformed one."""
        ...

    def head(self, src: ReadAt) -> bytes:
        """The first record with its framing (to recognise the file once it is compressed)."""
        ...


# ---------------------------------------------------------------------------------------------
# time


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Howard Hinnant's days_from_civil; Python's floor division handles years before 0
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def _fraction_ns(digits: str) -> int:
    return int((digits + "00000000")[:9]) if digits else 0


def parse_log_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time as the log files hold it."""
    try:
        # the files' own shape first: 2024-01-02T03:04:05[.fraction](Z|±hh:mm)
        if text[4] != "-" or text[7] != "-" or text[10] not in "Tt" or text[13] != ":":
            raise ValueError(text)
        days = _days_from_civil(int(text[0:4]), int(text[5:7]), int(text[8:10]))
        secs = days * 86400 + int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])
        rest = text[19:]
        nsec = 0
        if rest.startswith("."):
            i = 1
            while i < len(rest) and rest[i].isdigit():
                i += 1
            nsec = _fraction_ns(rest[1:i])
            rest = rest[i:]
        if rest not in ("Z", "z"):
            if len(rest) != 6 or rest[0] not in "+-" or rest[3] != ":":
                raise ValueError(text)
            offset = int(rest[1:3]) * 3600 + int(rest[4:6]) * 60
            secs -= offset if rest[0] == "+" else -offset
    except (IndexError, ValueError):
        raise ValueError(f"not an RFC 3339 time: {text!r}") from None
    return secs * _NS + nsec


def format_time_fixed(ts_ns: int) -> str:
    """moby's ``rfc3339NanoFixed`` in UTC: the fraction always has 9 digits (``logs -t``)."""
    sec, nsec = divmod(ts_ns, _NS)
    days, sod = divmod(sec, 86400)
    y, m, d = _civil_from_days(days)
    hh, rem = divmod(sod, 3600)
    mm, ss = divmod(rem, 60)
    return f"{y:04d}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{nsec:09d}Z"


def format_entry(entry: LogEntry, timestamps: bool) -> bytes:
    """What ``docker logs`` prints for one entry (``-t``: the time and a space before it)."""
    if timestamps:
        return format_time_fixed(entry.time_ns).encode() + b" " + entry.data
    return entry.data


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": _NS,
    "m": 60 * _NS,
    "h": 3600 * _NS,
}


def parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` (``1h30m``, ``1.5s``, ``-10m``, ``0``) in nanoseconds."""
    s = text
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    while s:
        i = 0
        while i < len(s) and s[i].isascii() and s[i].isdigit():
            i += 1
        whole = s[:i]
        frac = ""
        if i < len(s) and s[i] == ".":
            j = i + 1
            while j < len(s) and s[j].isascii() and s[j].isdigit():
                j += 1
            frac = s[i + 1 : j]
            i = j
        if not whole and not frac:
            raise ValueError(f"invalid duration {text!r}")
        j = i
        while j < len(s) and s[j] != "." and not (s[j].isascii() and s[j].isdigit()):
            j += 1
        unit = _DURATION_UNITS.get(s[i:j])
        if unit is None:
            what = "missing unit" if i == j else f"unknown unit {s[i:j]!r}"
            raise ValueError(f"{what} in duration {text!r}")
        total += int(whole or "0") * unit
        if frac:
            total += int(frac) * unit // 10 ** len(frac)
        s = s[j:]
    return -total if neg else total


def _local_offset(now_ns: int) -> int:
    return time.localtime(now_ns // _NS).tm_gmtoff


def parse_time_arg(text: str, now_ns: int, *, local_offset: int | None = None) -> int:
    """A ``--since``/``--until`` value in nanoseconds since the epoch, as docker reads it.

    A Go duration means ``now`` minus it, in whole seconds (docker sends ``Unix()``); RFC 3339
    times may drop the fraction, seconds, minutes, the time or the zone (then the local zone of
    ``now``, or ``local_offset`` seconds east of UTC, applies); anything else must be a Unix
    timestamp ``seconds[.fraction]``. Raises InvalidArgument.
    """
    try:
        if text != "0":
            return (now_ns - parse_go_duration(text)) // _NS * _NS
    except ValueError:
        pass
    t = _parse_docker_rfc3339(text, now_ns, local_offset)
    if t is not None:
        return t
    if "-" in text:
        raise InvalidArgument(f'parsing time "{text}": not an RFC 3339 time or date')
    sec, dot, frac = text.partition(".")
    if not sec.isascii() or not sec.isdigit() or (dot and not (frac.isascii() and frac.isdigit())):
        raise InvalidArgument(f'failed to parse value as time or duration: "{text}"')
    return int(sec) * _NS + _fraction_ns(frac)


_DOCKER_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?"
    r"([Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)


def _parse_docker_rfc3339(text: str, now_ns: int, local_offset: int | None) -> int | None:
    m = _DOCKER_TIME.fullmatch(text)
    if m is None:
        return None
    # moby's client/internal/timestamp: the zone is given when the value has a Z, a + or three
    # dashes (a negative offset); otherwise the value is read in the local zone
    in_local = not any(c in text for c in "zZ+") and text.count("-") != 3
    zone = m[8]
    if in_local != (zone is None):
        return None
    y, mo, d = int(m[1]), int(m[2]), int(m[3])
    hh, mi, ss = (int(v) if v else 0 for v in (m[4], m[5], m[6]))
    if not (1 <= mo <= 12 and 1 <= d <= _month_days(y, mo) and hh < 24 and mi < 60 and ss < 60):
        return None
    secs = _days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss
    if zone is None:
        if local_offset is None:
            local_offset = _local_offset(now_ns)
        secs -= local_offset
    elif zone not in ("Z", "z"):
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        secs -= offset if zone[0] == "+" else -offset
    return secs * _NS + _fraction_ns(m[7] or "")


def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 28
    return 30 if m in (4, 6, 9, 11) else 31


# ---------------------------------------------------------------------------------------------
# files


class _Source:
    """One open log file: a plain one read with pread, a gzip one decompressed on first use."""

    __slots__ = ("_data", "fd", "gz", "name")

    def __init__(self, fd: int, name: str, gz: bool) -> None:
        self.fd = fd
        self.name = name
        self.gz = gz
        self._data: bytes | None = None

    def _gz_data(self) -> bytes:
        if self._data is None:
            import zlib

            z = zlib.decompressobj(31)
            chunks = []
            off = 0
            while chunk := os.pread(self.fd, 1 << 20, off):
                off += len(chunk)
                chunks.append(z.decompress(chunk))
            chunks.append(z.flush())
            self._data = b"".join(chunks)
        return self._data

    def size(self) -> int:
        return len(self._gz_data()) if self.gz else os.fstat(self.fd).st_size

    def pread(self, offset: int, n: int) -> bytes:
        if self.gz:
            return self._gz_data()[offset : offset + n]
        return os.pread(self.fd, n, offset)

    def identity(self) -> tuple[int, int]:
        st = os.fstat(self.fd)
        return st.st_dev, st.st_ino

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _open_ro(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _stat_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _rotated_numbers(path: str) -> list[int]:
    """The N of every ``path.N`` and ``path.N.gz``, highest (oldest) first."""
    directory, base = os.path.split(path)
    prefix = base + "."
    found: set[int] = set()
    try:
        names = os.listdir(directory or ".")
    except FileNotFoundError:
        return []
    for name in names:
        if not name.startswith(prefix):
            continue
        n = name[len(prefix) :].removesuffix(".gz")
        if n.isascii() and n.isdigit():
            found.add(int(n))
    return sorted(found, reverse=True)


def _open_rotated(path: str, n: int) -> _Source | None:
    # as docker: the plain file first, the gzip one when it is missing (compressed meanwhile)
    fd = _open_ro(f"{path}.{n}")
    if fd is not None:
        return _Source(fd, f"{path}.{n}", False)
    fd = _open_ro(f"{path}.{n}.gz")
    if fd is not None:
        return _Source(fd, f"{path}.{n}.gz", True)
    return None


def _snapshot(path: str) -> tuple[list[_Source], _Source | None]:
    """The rotated files (oldest first) and the current one, opened as one consistent set.

    A rotation while the set is being opened would make the current file appear twice (or a
    file go missing): the current file must still be ``path`` after the rotated ones are open.
    """
    for _ in range(100):
        fd = _open_ro(path)
        current = _Source(fd, path, False) if fd is not None else None
        rotated = []
        for n in _rotated_numbers(path):
            src = _open_rotated(path, n)
            if src is not None:
                rotated.append(src)
        now = _stat_id(path)
        if (current.identity() if current is not None else None) == now:
            return rotated, current
        for src in [*rotated, *([current] if current else [])]:
            src.close()
    raise Unavailable(f"{path}: the log file rotates faster than it can be read")


def _complete_end(src: ReadAt, size: int) -> int:
    """The offset just past the last newline before ``size``: a line being written is not read."""
    pos = size
    while pos > 0:
        n = min(_BLOCK, pos)
        block = src.pread(pos - n, n)
        i = block.rfind(b"\n")
        if i >= 0:
            return pos - n + i + 1
        pos -= n
    return 0


def _tail_start(src: ReadAt, end: int, lines: int) -> tuple[int, int]:
    """Where the last ``lines`` lines before ``end`` start, and how many lines that is."""
    if lines <= 0 or end == 0:
        return end, 0
    need = lines + 1  # the newline ending the last line, then one before each line
    found = 0
    pos = end
    while pos > 0:
        n = min(_BLOCK, pos)
        pos -= n
        block = src.pread(pos, n)
        i = len(block)
        while (i := block.rfind(b"\n", 0, i)) >= 0:
            found += 1
            if found == need:
                return pos + i + 1, lines
    return 0, found


class _Cursor:
    """Reads whole records of one file forward from an offset."""

    __slots__ = ("broken", "fmt", "offset", "pending", "src")

    def __init__(self, src: _Source, offset: int, fmt: LogFormat) -> None:
        self.src = src
        self.fmt = fmt
        self.offset = offset  # where the next read starts
        self.pending = b""  # an incomplete record read before offset
        self.broken = False  # the file cannot be read past offset

    def records(self, end: int | None = None) -> Iterator[bytes]:
        """Whole records up to ``end`` or the file's current end."""
        while not self.broken and (end is None or self.offset < end):
            n = _BLOCK if end is None else min(_BLOCK, end - self.offset)
            chunk = self.src.pread(self.offset, n)
            if not chunk:
                return
            self.offset += len(chunk)
            buf = self.pending + chunk if self.pending else chunk
            try:
                records, used = self.fmt.split(buf)
            except ValueError as exc:
                log.warning("%s: %s; the rest of the file is not read", self.src.name, exc)
                self.broken = True
                self.pending = b""
                return
            self.pending = buf[used:]
            yield from records


def _decode_text(s: str) -> bytes:
    try:
        return s.encode()
    except UnicodeEncodeError:
        # a lone \udXXX escape: Go's decoder gives U+FFFD for it
        return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def decode_line(line: bytes) -> LogEntry:
    """One json-file line (without its newline). Raises ValueError on a malformed one."""
    obj = fastjson.loads(line.decode("utf-8", "replace"))
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    text = obj.get("log", "")
    stream = obj.get("stream", "")
    when = obj.get("time")
    if not isinstance(text, str) or not isinstance(stream, str) or not isinstance(when, str):
        raise ValueError("log, stream or time has the wrong type")
    return LogEntry(stream, _decode_text(text), parse_log_time(when))


def _split_lines(buf: bytes) -> tuple[list[bytes], int]:
    lines = []
    start = 0
    while (nl := buf.find(b"\n", start)) >= 0:
        lines.append(buf[start:nl])
        start = nl + 1
    return lines, start


def _head(src: ReadAt) -> bytes:
    data = src.pread(0, 4096)
    nl = data.find(b"\n")
    return data if nl < 0 else data[: nl + 1]


class _JsonFile:
    """docker's json-file format: one JSON object per line."""

    complete_end = staticmethod(_complete_end)
    tail_start = staticmethod(_tail_start)
    split = staticmethod(_split_lines)
    decode = staticmethod(decode_line)
    head = staticmethod(_head)


JSON_FILE: LogFormat = _JsonFile()


def log_format(driver: str) -> LogFormat:
    """The file format of a log driver that writes files ("json-file" or "local")."""
    if driver == "local":
        from dockyard.engine.localread import LOCAL

        return LOCAL
    return JSON_FILE


class _StopReading(Exception):
    """An entry after --until: docker ends the whole stream there."""


class _Window:
    """moby's ``forwarder``: --since applies until the first entry at or after it (entries need
    not be in time order), --until ends the stream at the first entry after it."""

    __slots__ = ("fmt", "since", "until")

    def __init__(self, since: int | None, until: int | None, fmt: LogFormat) -> None:
        self.since = since
        self.until = until
        self.fmt = fmt

    def entries(self, records: Iterator[bytes], name: str) -> Iterator[LogEntry]:
        for record in records:
            try:
                entry = self.fmt.decode(record)
            except ValueError as exc:
                # docker gives up on the rest of the file; one bad entry should not hide the rest
                log.warning("%s: skipping a malformed log entry: %s", name, exc)
                continue
            if self.since is not None:
                if entry.time_ns < self.since:
                    continue
                self.since = None
            if self.until is not None and entry.time_ns > self.until:
                raise _StopReading
            yield entry


def read_logs(
    path: str,
    *,
    follow: bool = False,
    tail: int | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    stop: Callable[[], bool] | None = None,
    poll_interval: float = 0.05,
    driver: str = "json-file",
) -> Iterator[LogEntry]:
    """The entries of the log at ``path`` and its rotated files, oldest first; ``driver`` is
    the log driver that wrote them ("json-file" or "local").

    ``tail``: only the last N entries across all files (None: all), taken before since/until as
    docker does. ``follow``: then wait for new lines, following the file through rotations,
    until ``stop()`` returns True (checked when no new line is there; what was written before it
    returned True is still read) — or forever if ``stop`` is None; close the iterator to end it.
    """
    fmt = log_format(driver)
    rotated, current = _snapshot(path)
    sources = [*rotated, *([current] if current is not None else [])]
    try:
        window = _Window(since_ns, until_ns, fmt)
        # where reading each file starts and ends; None: not read at all (before the tail)
        spans: list[tuple[int, int] | None] = [None] * len(sources)
        remaining = tail
        for i in range(len(sources) - 1, -1, -1):
            if remaining is not None and remaining <= 0:
                break
            src = sources[i]
            end = fmt.complete_end(src, src.size()) if src is current else src.size()
            start = 0
            if remaining is not None:
                start, found = fmt.tail_start(src, end, remaining)
                remaining -= found
            spans[i] = (start, end)
        for src, span in zip(sources, spans, strict=True):
            if span is not None:
                yield from window.entries(_Cursor(src, span[0], fmt).records(span[1]), src.name)
        if not follow:
            return
        cursor = None
        if current is not None:
            last = spans[-1]
            cursor = _Cursor(
                current,
                last[1] if last is not None else fmt.complete_end(current, current.size()),
                fmt,
            )
        yield from _follow(
            path, cursor=cursor, window=window, stop=stop, interval=poll_interval,
            sources=sources, fmt=fmt,
        )
    except _StopReading:
        return
    finally:
        for src in sources:
            src.close()


def _follow(
    path: str,
    *,
    cursor: _Cursor | None,
    window: _Window,
    stop: Callable[[], bool] | None,
    interval: float,
    sources: list[_Source],
    fmt: LogFormat,
) -> Iterator[LogEntry]:
    """Read what is appended to ``cursor``'s file, then to the files that replace it."""
    stopping = False
    while True:
        progressed = False
        if cursor is not None:
            for entry in window.entries(cursor.records(), cursor.src.name):
                progressed = True
                yield entry
        now = _stat_id(path)
        # a new file at path: the writer is done with ours (it writes, closes, then renames),
        # but it may have appended to ours since the read above: finish ours first
        if now is not None and (cursor is None or now != cursor.src.identity()):
            old = None
            if cursor is not None:
                yield from window.entries(cursor.records(), cursor.src.name)
                old = cursor.src
            successors = _successors(path, old, fmt)
            if successors:
                sources.extend(successors)
                for src in successors[:-1]:
                    yield from window.entries(_Cursor(src, 0, fmt).records(), src.name)
                if cursor is not None:
                    cursor.src.close()
                cursor = _Cursor(successors[-1], 0, fmt)
                progressed = True
        if progressed:
            continue
        if stopping:
            return
        if stop is not None and stop():
            # one more pass: what was written before stop() said so must still come out
            stopping = True
            continue
        time.sleep(interval)


def _is_rotated(path: str, n: int, old: _Source, head: bytes) -> bool:
    """Whether ``path.n`` (or ``path.n.gz``) is the file ``old``."""
    if _stat_id(f"{path}.{n}") == old.identity():
        return True
    if not head:
        return False
    # compressed: a new inode, so compare the start of its content with ours
    fd = _open_ro(f"{path}.{n}.gz")
    if fd is None:
        return False
    try:
        import zlib

        z = zlib.decompressobj(31)
        got = b""
        off = 0
        while len(got) < len(head) and (chunk := os.pread(fd, _BLOCK, off)):
            off += len(chunk)
            got += z.decompress(chunk, len(head) - len(got))
        return got == head
    except zlib.error:
        return False
    finally:
        os.close(fd)


def _successors(path: str, old: _Source | None, fmt: LogFormat) -> list[_Source]:
    """The files written after ``old``, oldest first, ending with the current one; [] when
    ``path`` is missing right now (between a rename and a create)."""
    # ours has its first record at least: enough to tell it from the others once compressed
    head = fmt.head(old) if old is not None else b""
    for _ in range(100):
        fd = _open_ro(path)
        if fd is None:
            return []
        current = _Source(fd, path, False)
        found: int | None = None
        if old is not None:
            # more than one rotation since the last look: ours is path.N now, and path.N-1 …
            # path.1 came after it (docker skips them with a warning)
            for n in reversed(_rotated_numbers(path)):
                if _is_rotated(path, n, old, head):
                    found = n
                    break
        between = []
        for n in range(found - 1, 0, -1) if found is not None else ():
            src = _open_rotated(path, n)
            if src is not None:
                between.append(src)
        if _stat_id(path) == current.identity() and (
            found is None or (old is not None and _is_rotated(path, found, old, head))
        ):
            if found is None and old is not None and _rotated_numbers(path):
                log.warning("%s: rotated more than max-file times while followed", path)
            return [*between, current]
        for src in [*between, current]:
            src.close()
    return []
