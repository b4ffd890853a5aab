"""The json-file writer: Go's escaping, docker's line splitting and rotation."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.monitor.logfile import (
    PARTIAL_SIZE,
    LogWriter,
    encode_entry,
    escape,
    format_time,
)

TS = 1_704_164_645_123_456_789  # 2024-01-02T03:04:05.123456789Z

# --- a transcription of Go's utf8.DecodeRune and moby's ffjsonWriteJSONBytesAsString ----------

_ACCEPT = {  # lead byte range -> (sequence length, allowed range of the second byte)
    **dict.fromkeys(range(0xC2, 0xE0), (2, 0x80, 0xBF)),
    0xE0: (3, 0xA0, 0xBF),
    **dict.fromkeys(range(0xE1, 0xED), (3, 0x80, 0xBF)),
    0xED: (3, 0x80, 0x9F),
    0xEE: (3, 0x80, 0xBF),
    0xEF: (3, 0x80, 0xBF),
    0xF0: (4, 0x90, 0xBF),
    0xF1: (4, 0x80, 0xBF),
    0xF2: (4, 0x80, 0xBF),
    0xF3: (4, 0x80, 0xBF),
    0xF4: (4, 0x80, 0x8F),
}


def go_decode_rune(s: bytes, i: int) -> tuple[str | None, int]:
    """(rune, size), rune None for Go's (RuneError, 1)."""
    b = s[i]
    if b < 0x80:
        return chr(b), 1
    acc = _ACCEPT.get(b)
    if acc is None:
        return None, 1
    size, lo, hi = acc
    if i + size > len(s) or not lo <= s[i + 1] <= hi:
        return None, 1
    if any(not 0x80 <= c <= 0xBF for c in s[i + 2 : i + size]):
        return None, 1
    return s[i : i + size].decode("utf-8"), size


def go_escape(s: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(s):
        b = s[i]
        if b < 0x80:
            if b >= 0x20 and b not in b'\\"<>&':
                out.append(b)
            elif b in b'\\"':
                out += b"\\" + bytes([b])
            elif b == 0x0A:
                out += b"\\n"
            elif b == 0x0D:
                out += b"\\r"
            else:
                out += b"\\u00%02x" % b
            i += 1
            continue
        r, size = go_decode_rune(s, i)
        if r is None:
            out += b"\\ufffd"
        elif r in "\u2028\u2029":
            out += b"\\u%04x" % ord(r)
        else:
            out += s[i : i + size]
        i += size
    return bytes(out)


def go_string(s: bytes) -> str:
    """What Go's json decoder gives for the string moby wrote for ``s``."""
    out = []
    i = 0
    while i < len(s):
        r, size = go_decode_rune(s, i)
        out.append("\ufffd" if r is None else r)
        i += size
    return "".join(out)


# --- escaping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (b"hello", b"hello"),
        (b"a\nb\r\t", b"a\\nb\\r\\u0009"),
        (b'<a href="x">&amp;</a>', b'\\u003ca href=\\"x\\"\\u003e\\u0026amp;\\u003c/a\\u003e'),
        (b"back\\slash", b"back\\\\slash"),
        (b"\x00\x1b[31m\x7f", b"\\u0000\\u001b[31m\x7f"),
        ("é€😀".encode(), "é€😀".encode()),
        ("\u2028\u2029".encode(), b"\\u2028\\u2029"),
        (b"\xff", b"\\ufffd"),
        (b"\xe2\x82a", b"\\ufffd\\ufffda"),  # a truncated sequence: one U+FFFD per byte, as Go
        (b"\xed\xa0\x80", b"\\ufffd\\ufffd\\ufffd"),  # an encoded surrogate
        (b"\xc0\x80", b"\\ufffd\\ufffd"),  # overlong
        (b"\xf4\x90\x80\x80", b"\\ufffd" * 4),  # above U+10FFFF
    ],
)
def test_escape_matches_go(raw: bytes, escaped: bytes) -> None:
    assert escape(raw) == escaped
    assert go_escape(raw) == escaped


@given(st.binary(max_size=200))
def test_escape_is_mobys_escaping(data: bytes) -> None:
    assert escape(data) == go_escape(data)


@given(st.binary(min_size=1, max_size=200))
def test_entry_decodes_to_what_go_decodes(data: bytes) -> None:
    obj = json.loads(encode_entry("stdout", data, TS))
    assert obj == {"log": go_string(data), "stream": "stdout", "time": format_time(TS)}


@given(st.text(min_size=1, max_size=100))
def test_valid_text_round_trips(text: str) -> None:
    # lone surrogates cannot be UTF-8 encoded: they are not output a process can produce
    data = text.encode("utf-8", "replace")
    assert json.loads(encode_entry("stderr", data, TS))["log"].encode() == data


def test_entry_layout_is_dockers() -> None:
    assert encode_entry("stdout", b"hi\n", TS) == (
        b'{"log":"hi\\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}\n'
    )
    # moby's omitempty
    assert encode_entry("", b"", TS) == b'{"time":"2024-01-02T03:04:05.123456789Z"}\n'


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (TS, "2024-01-02T03:04:05.123456789Z"),
        (1_704_164_645_100_000_000, "2024-01-02T03:04:05.1Z"),
        (1_704_164_645_000_001_000, "2024-01-02T03:04:05.000001Z"),
        (1_704_164_645_000_000_000, "2024-01-02T03:04:05Z"),
        (0, "1970-01-01T00:00:00Z"),
        (951_782_400 * 10**9 + 5, "2000-02-29T00:00:00.000000005Z"),
    ],
)
def test_format_time_is_go_rfc3339nano(ts: int, text: str) -> None:
    assert format_time(ts) == text


# --- lines ----------------------------------------------------------------------------------


def entries(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_lines_split_at_newlines(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with LogWriter(str(log), max_size=None) as w:
        w.write("stdout", b"one\ntw", ts_ns=1)
        w.write("stderr", b"err\n", ts_ns=2)
        w.write("stdout", b"o\nthree\n", ts_ns=3)
        assert [e["log"] for e in entries(log)] == ["one\n", "err\n", "two\n", "three\n"]
    got = entries(log)
    assert [e["stream"] for e in got] == ["stdout", "stderr", "stdout", "stdout"]
    assert [e["time"] for e in got] == [format_time(t) for t in (1, 2, 3, 3)]


def test_unfinished_line_is_written_without_newline_at_close(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    w = LogWriter(str(log), max_size=None)
    w.write("stdout", b"prompt> ", ts_ns=4)
    assert log.read_bytes() == b""
    w.flush(ts_ns=5)
    w.close()
    w.close()  # idempotent
    assert entries(log) == [{"log": "prompt> ", "stream": "stdout", "time": format_time(5)}]


def test_long_line_is_split_at_16k_and_pieces_share_the_first_time(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    line = bytes(range(0x61, 0x61 + 26)) * 1500  # 39000 bytes
    with LogWriter(str(log), max_size=None) as w:
        w.write("stdout", line[:10000], ts_ns=1)
        w.write("stdout", line[10000:], ts_ns=2)
        w.write("stdout", b"\nnext\n", ts_ns=3)
    got = entries(log)
    assert [len(e["log"]) for e in got] == [
        PARTIAL_SIZE,
        PARTIAL_SIZE,
        39000 - 2 * PARTIAL_SIZE + 1,
        5,
    ]
    assert "".join(e["log"] for e in got[:3]) == line.decode() + "\n"
    assert [e["time"] for e in got] == [format_time(t) for t in (2, 2, 2, 3)]


def test_line_of_exactly_16k_gives_a_lone_newline_entry(tmp_path: Path) -> None:
    # moby's copier fills its 16 KiB buffer before it can see the newline
    log = tmp_path / "c.log"
    with LogWriter(str(log), max_size=None) as w:
        w.write("stdout", b"x" * PARTIAL_SIZE + b"\n", ts_ns=1)
        w.write("stdout", b"x" * (PARTIAL_SIZE - 1) + b"\n", ts_ns=2)
    assert [e["log"] for e in entries(log)] == [
        "x" * PARTIAL_SIZE,
        "\n",
        "x" * (PARTIAL_SIZE - 1) + "\n",
    ]


def test_flush_of_one_stream(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with LogWriter(str(log), max_size=None) as w:
        w.write("stdout", b"a", ts_ns=1)
        w.write("stderr", b"b", ts_ns=1)
        w.flush("stderr")
        assert [e["log"] for e in entries(log)] == ["b"]
        w.flush("nonesuch")
    assert [e["log"] for e in entries(log)] == ["b", "a"]


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with LogWriter(str(log), max_size=None) as w:
        w.write("stdout", b"first\n", ts_ns=1)
    with LogWriter(str(log), max_size=None) as w:
        w.write("stdout", b"second\n", ts_ns=2)
    assert [e["log"] for e in entries(log)] == ["first\n", "second\n"]
    assert (log.stat().st_mode & 0o777) == 0o640


def test_write_after_close_fails(tmp_path: Path) -> None:
    w = LogWriter(str(tmp_path / "c.log"), max_size=None)
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write("stdout", b"x\n")


# --- rotation -------------------------------------------------------------------------------


def line_size(n: int) -> int:
    return len(encode_entry("stdout", b"%05d\n" % n, 1))


def write_numbered(w: LogWriter, count: int, first: int = 0) -> None:
    for n in range(first, first + count):
        w.write("stdout", b"%05d\n" % n, ts_ns=1)


def numbers(*paths: Path) -> list[int]:
    return [int(e["log"]) for p in paths for e in entries(p)]


def test_rotation_keeps_max_file_files(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    size = line_size(0)
    with LogWriter(str(log), max_size=10 * size, max_file=3) as w:
        write_numbered(w, 45)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["c.log", "c.log.1", "c.log.2"]
    # docker rotates before a write once the file has reached max-size: 10 entries per file
    assert numbers(log.with_name("c.log.2"), log.with_name("c.log.1"), log) == list(range(20, 45))
    assert all(p.stat().st_size <= 10 * size for p in tmp_path.iterdir())


def test_rotation_in_one_write_of_many_lines(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    size = line_size(0)
    with LogWriter(str(log), max_size=4 * size, max_file=10) as w:
        w.write("stdout", b"".join(b"%05d\n" % n for n in range(30)), ts_ns=1)
    files = [log.with_name(f"c.log.{i}") for i in range(7, 0, -1)] + [log]
    assert numbers(*files) == list(range(30))


def test_an_entry_larger_than_max_size_still_goes_in(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with LogWriter(str(log), max_size=10, max_file=2) as w:
        w.write("stdout", b"a long line\n", ts_ns=1)
        w.write("stdout", b"another\n", ts_ns=1)
    assert [e["log"] for e in entries(log.with_name("c.log.1"))] == ["a long line\n"]
    assert [e["log"] for e in entries(log)] == ["another\n"]


def test_max_file_1_replaces_the_file(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    size = line_size(0)
    with LogWriter(str(log), max_size=3 * size, max_file=1) as w:
        write_numbered(w, 3)
        held = os.open(log, os.O_RDONLY)
        write_numbered(w, 2, first=3)
    try:
        # a reader holding the old file still has all of it: docker unlinks, it never truncates
        assert os.read(held, 1 << 16).count(b"\n") == 3
    finally:
        os.close(held)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.log"]
    assert numbers(log) == [3, 4]


def test_compressed_rotation(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    size = line_size(0)
    with LogWriter(str(log), max_size=5 * size, max_file=3, compress=True) as w:
        write_numbered(w, 17)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.log", "c.log.1.gz", "c.log.2.gz"]
    old = [
        int(json.loads(line)["log"])
        for name in ("c.log.2.gz", "c.log.1.gz")
        for line in gzip.decompress((tmp_path / name).read_bytes()).splitlines()
    ]
    assert old + numbers(log) == list(range(5, 17))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_size": 0}, "max-size"),
        ({"max_size": 10, "max_file": 0}, "max-file"),
        ({"max_size": 10, "max_file": 1, "compress": True}, "compress"),
        ({"max_size": None, "max_file": 3, "compress": True}, "compress"),
    ],
)
def test_bad_options(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LogWriter(str(tmp_path / "c.log"), **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "c.log").exists()


def test_writer_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import dockyard.monitor.logfile as m;"
        "w = m.LogWriter('/dev/null', max_size=None); w.write('stdout', b'x\\n'); w.close();"
        "print(' '.join(sorted(n for n in ('json', 're', 'datetime', 'zlib', 'logging')"
        " if n in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=30))
def test_the_one_join_path_writes_what_the_general_one_does(lines: list[bytes]) -> None:
    """Plain complete lines go through one join (LogWriter._fast): byte for byte the file the
    per-line path writes, whatever the lines hold (escapes send them the general way)."""
    import tempfile

    data = b"\n".join(line.replace(b"\n", b"") for line in lines) + b"\n"
    with tempfile.TemporaryDirectory() as d:
        out = []
        for fast in (True, False):
            path = os.path.join(d, f"log-{fast}")
            w = LogWriter(path, max_size=None)
            if not fast:
                w._fast = lambda *_a: False  # type: ignore[method-assign]
            w.write("stdout", data, ts_ns=1_700_000_000_123_456_789)
            w.close()
            with open(path, "rb") as f:
                out.append(f.read())
    assert out[0] == out[1]
