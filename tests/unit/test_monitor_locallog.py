"""The local driver's log format: the protobuf records, docker's partial lines, rotation, and
reading the files back with ``dockyard logs``' reader."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.engine.logread import format_entry, read_logs
from dockyard.monitor.locallog import (
    MAX_RECORD,
    LocalLogWriter,
    Partial,
    Record,
    decode_entry,
    encode_record,
    split_records,
)
from dockyard.monitor.logfile import PARTIAL_SIZE

TS = 1_704_164_645_123_456_789  # 2024-01-02T03:04:05.123456789Z


def records(path: Path) -> list[Record]:
    data = path.read_bytes()
    bodies, used = split_records(data)
    assert used == len(data)
    return [decode_entry(b) for b in bodies]


def local(path: Path, **kwargs: object) -> list[bytes]:
    return [e.data for e in read_logs(str(path), driver="local", **kwargs)]  # type: ignore[arg-type]


# --- the encoding -----------------------------------------------------------------------------


def test_record_layout_is_protobuf_framed_by_lengths() -> None:
    # 150 is protobuf's own varint example (96 01)
    body = (b"\x0a\x06stdout" + b"\x10\x96\x01" + b"\x1a\x02hi" + b"\x20\x01"
            + b"\x2a\x08" + b"\x08\x01" + b"\x12\x02ab" + b"\x18\x02")
    framed = len(body).to_bytes(4, "big") + body + len(body).to_bytes(4, "big")
    assert encode_record("stdout", b"hi", 150, Partial("ab", 2, True)) == framed
    # proto3: default values are left out, a negative int64 takes ten bytes
    assert encode_record("", b"", 0) == b"\0\0\0\0\0\0\0\0"
    assert encode_record("", b"", -1) == b"\0\0\0\x0b\x10" + b"\xff" * 9 + b"\x01\0\0\0\x0b"
    # a piece with no metadata set still says it is partial, with an empty metadata message
    assert encode_record("", b"x", 0, Partial("", 0, False)) == (
        b"\0\0\0\x07\x1a\x01x\x20\x01\x2a\x00\0\0\0\x07")


@given(
    source=st.sampled_from(["stdout", "stderr", "", "ünï"]),
    line=st.binary(max_size=300),
    ts=st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    partial=st.none() | st.builds(Partial, st.text(max_size=70),
                                  st.integers(min_value=0, max_value=(1 << 31) - 1),
                                  st.booleans()),
)
def test_round_trip(source: str, line: bytes, ts: int, partial: Partial | None) -> None:
    framed = encode_record(source, line, ts, partial)
    bodies, used = split_records(framed + framed[:5])  # and the start of another
    assert used == len(framed)
    assert [decode_entry(b) for b in bodies] == [Record(source, ts, line, partial)]


def test_unknown_fields_are_skipped() -> None:
    # attrs (6, repeated LogAttr) as docker writes with --log-opt labels=...; fixed32/64 too
    body = (b"\x0a\x06stdout\x1a\x02hi" + b"\x32\x06\x0a\x01k\x12\x01v" + b"\x3d" + b"\1\2\3\4"
            + b"\x41" + bytes(8))
    assert decode_entry(body) == Record("stdout", 0, b"hi")


@pytest.mark.parametrize("body", [b"\x0a\x06std", b"\x10", b"\x10" + b"\xff" * 11, b"\x0b"])
def test_malformed_entries_raise_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode_entry(body)


def test_an_impossible_length_raises_value_error() -> None:
    with pytest.raises(ValueError, match="too large"):
        split_records((MAX_RECORD + 1).to_bytes(4, "big") + b"x" * 10)


def test_what_docker_logs_shows() -> None:
    assert Record("stdout", 1, b"a").data() == b"a\n"
    assert Record("stdout", 1, b"a", Partial("i", 1, False)).data() == b"a"
    assert Record("stdout", 1, b"a", Partial("i", 2, True)).data() == b"a\n"


# --- the writer -------------------------------------------------------------------------------


def test_lines_become_records_without_their_newline(tmp_path: Path) -> None:
    log = tmp_path / "local-logs" / "container.log"
    with LocalLogWriter(str(log)) as w:
        w.write("stdout", b"one\ntwo\nthr", ts_ns=TS)
        w.write("stderr", b"err\n", ts_ns=TS + 1)
        w.write("stdout", b"ee\n", ts_ns=TS + 2)
    assert oct(log.parent.stat().st_mode & 0o777) == "0o700"
    assert records(log) == [Record("stdout", TS, b"one"), Record("stdout", TS, b"two"),
                            Record("stderr", TS + 1, b"err"), Record("stdout", TS + 2, b"three")]
    assert local(log) == [b"one\n", b"two\n", b"err\n", b"three\n"]


def test_long_lines_are_pieces_with_one_id_counted_up_to_the_last(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    line = b"x" * (2 * PARTIAL_SIZE + 10)
    with LocalLogWriter(str(log)) as w:
        w.write("stdout", line[:100], ts_ns=TS)
        w.write("stderr", b"between\n", ts_ns=TS + 1)
        w.write("stdout", line[100:] + b"\nshort\n" + line, ts_ns=TS + 2)
    got = records(log)
    first, second = got[1].partial, got[5].partial
    assert first is not None and second is not None and len(first.id) == 64
    assert first.id != second.id
    assert [(r.source, r.time_ns, len(r.line), r.partial) for r in got] == [
        ("stderr", TS + 1, 7, None),
        ("stdout", TS + 2, PARTIAL_SIZE, Partial(first.id, 1, False)),   # the first piece's
        ("stdout", TS + 2, PARTIAL_SIZE, Partial(first.id, 2, False)),   # time for them all
        ("stdout", TS + 2, 10, Partial(first.id, 3, True)),
        ("stdout", TS + 2, 5, None),
        # at close, the unfinished line is logged as a piece that is not the last (moby's EOF)
        ("stdout", TS + 2, PARTIAL_SIZE, Partial(second.id, 1, False)),
        ("stdout", TS + 2, PARTIAL_SIZE, Partial(second.id, 2, False)),
        ("stdout", got[7].time_ns, 10, Partial(second.id, 3, False)),
    ]
    assert b"".join(local(log)) == b"between\n" + line + b"\nshort\n" + line


def test_a_line_of_exactly_16k_ends_with_an_empty_last_piece(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with LocalLogWriter(str(log)) as w:
        w.write("stdout", b"y" * PARTIAL_SIZE + b"\n", ts_ns=TS)
    pieces = records(log)
    assert [(len(r.line), r.partial is not None and r.partial.last) for r in pieces] == [
        (PARTIAL_SIZE, False), (0, True)]
    assert local(log) == [b"y" * PARTIAL_SIZE, b"\n"]


def test_rotation_keeps_max_file_files(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    size = len(encode_record("stdout", b"000000", 1))
    with LocalLogWriter(str(log), max_size=10 * size, max_file=3) as w:
        for n in range(100):
            w.write("stdout", b"%06d\n" % n, ts_ns=n + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "container.log", "container.log.1", "container.log.2"]
    assert all(p.stat().st_size <= 10 * size for p in tmp_path.iterdir())
    assert [int(x) for x in local(log)] == list(range(70, 100))
    assert [int(x) for x in local(log, tail=15)] == list(range(85, 100))
    assert [int(x) for x in local(log, since_ns=91, until_ns=93)] == [90, 91, 92]


def test_reads_docker_compressed_rotated_files(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    size = len(encode_record("stdout", b"000000", 1))
    with LocalLogWriter(str(log), max_size=10 * size, max_file=5, compress=True) as w:
        for n in range(30):
            w.write("stdout", b"%06d\n" % n, ts_ns=n + 1)
    assert (tmp_path / "container.log.2.gz").exists()
    assert [int(x) for x in local(log)] == list(range(30))
    assert [int(x) for x in local(log, tail=25)] == list(range(5, 30))


def test_a_record_being_written_is_not_read(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with LocalLogWriter(str(log)) as w:
        w.write("stdout", b"done\nalso\n", ts_ns=TS)
    whole = log.read_bytes()
    log.write_bytes(whole[:-3])
    assert local(log) == [b"done\n"]
    assert local(log, tail=1) == [b"done\n"]
    log.write_bytes(whole + b"\0\0")    # the start of the next one's length
    assert local(log, tail=1) == [b"also\n"]


def test_timestamps_as_docker_logs_t(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with LocalLogWriter(str(log)) as w:
        w.write("stderr", b"hi\n", ts_ns=TS - 123_456_789)
    entry = next(read_logs(str(log), driver="local"))
    assert entry.stream == "stderr"
    assert format_entry(entry, True) == b"2024-01-02T03:04:05.000000000Z hi\n"


def test_follow_through_rotations(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    size = len(encode_record("stdout", b"000000", 1))
    w = LocalLogWriter(str(log), max_size=5 * size, max_file=10)
    w.write("stdout", b"000000\n000001\n", ts_ns=1)
    done = threading.Event()
    reader = read_logs(str(log), follow=True, stop=done.is_set, poll_interval=0.01,
                       driver="local")
    assert [next(reader).data for _ in range(2)] == [b"000000\n", b"000001\n"]
    for n in range(2, 23):
        w.write("stdout", b"%06d\n" % n, ts_ns=n)
    w.close()
    done.set()
    assert [int(e.data) for e in reader] == list(range(2, 23))


def test_corrupt_lengths_end_the_file_but_not_the_reader(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with LocalLogWriter(str(log)) as w:
        w.write("stdout", b"kept\n", ts_ns=TS)
    log.write_bytes(log.read_bytes() + b"\xff\xff\xff\xff garbage")
    assert local(log) == [b"kept\n"]


def test_writer_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import dockyard.monitor.locallog as m;"
        "w = m.LocalLogWriter('/dev/null', max_size=None); w.write('stdout', b'x\\n'); w.close();"
        "print(' '.join(sorted(n for n in ('json', 're', 'datetime', 'zlib', 'logging',"
        " 'secrets', 'typing') if n in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
