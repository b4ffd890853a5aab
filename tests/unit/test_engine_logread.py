"""Reading json-file logs: rotated files, tail, since/until, follow through rotations, times."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.engine.logread import (
    LogEntry,
    decode_line,
    format_entry,
    format_time_fixed,
    parse_go_duration,
    parse_log_time,
    parse_time_arg,
    read_logs,
)
from dockyard.errors import InvalidArgument
from dockyard.monitor.logfile import LogWriter, encode_entry, format_time

S = 1_000_000_000
TS = 1_704_164_645_123_456_789  # 2024-01-02T03:04:05.123456789Z


def write_numbered(w: LogWriter, first: int, count: int, ts: int | None = None) -> None:
    for n in range(first, first + count):
        w.write("stdout" if n % 3 else "stderr", b"%06d\n" % n, ts_ns=n if ts is None else ts)


def nums(entries: Iterator[LogEntry] | list[LogEntry]) -> list[int]:
    return [int(e.data) for e in entries]


LINE = len(encode_entry("stdout", b"000000\n", 1))


@pytest.fixture
def rotated(tmp_path: Path) -> Path:
    """100 lines in c.log.3 … c.log, 25 per file, line n written at time n."""
    log = tmp_path / "c.log"
    with LogWriter(str(log), max_size=25 * LINE, max_file=4) as w:
        write_numbered(w, 0, 100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.log", "c.log.1", "c.log.2", "c.log.3"]
    return log


# --- decoding -------------------------------------------------------------------------------


def test_decodes_what_docker_wrote() -> None:
    line = (
        b'{"log":"h\\u00e9llo \\u003cb\\u003e\\ud83d\\ude00\\n",'
        b'"stream":"stderr","time":"2024-01-02T03:04:05.1234Z"}'
    )
    assert decode_line(line) == LogEntry(
        "stderr", "héllo <b>😀\n".encode(), 1_704_164_645_123_400_000
    )


def test_a_lone_surrogate_escape_becomes_replacement_character() -> None:
    line = b'{"log":"a\\ud800b","stream":"stdout","time":"2024-01-02T03:04:05Z"}'
    assert decode_line(line).data == "a\ufffdb".encode()


@given(st.binary(max_size=300), st.sampled_from(["stdout", "stderr"]), st.integers(0, 2**62))
def test_decode_inverts_encode_for_utf8(data: bytes, stream: str, ts: int) -> None:
    text = data.decode("utf-8", "replace").encode()
    entry = decode_line(encode_entry(stream, text, ts).rstrip(b"\n"))
    assert entry == LogEntry(stream, text, ts)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2024-01-02T03:04:05.123456789Z", TS),
        ("2024-01-02T03:04:05Z", 1_704_164_645 * S),
        ("2024-01-02T04:04:05.5+01:00", 1_704_164_645 * S + S // 2),
        ("2024-01-02T02:04:05-01:00", 1_704_164_645 * S),
        ("1970-01-01T00:00:00Z", 0),
        ("2000-02-29T12:00:00Z", 951_825_600 * S),
    ],
)
def test_parse_log_time(text: str, ns: int) -> None:
    assert parse_log_time(text) == ns


@given(st.integers(0, 253_402_300_799 * S))  # up to 9999-12-31T23:59:59
def test_log_times_round_trip(ns: int) -> None:
    assert parse_log_time(format_time(ns)) == ns
    assert parse_log_time(format_time_fixed(ns)) == ns
    assert len(format_time_fixed(ns)) == 30


def test_format_entry_pads_the_fraction_as_docker_logs_t() -> None:
    entry = LogEntry("stdout", b"hi\n", 1_704_164_645_100_000_000)
    assert format_entry(entry, timestamps=False) == b"hi\n"
    assert format_entry(entry, timestamps=True) == b"2024-01-02T03:04:05.100000000Z hi\n"


# --- reading --------------------------------------------------------------------------------


def test_reads_rotated_files_oldest_first(rotated: Path) -> None:
    got = list(read_logs(str(rotated)))
    assert nums(got) == list(range(100))
    assert [e.time_ns for e in got] == list(range(100))
    assert [e.stream for e in got[:4]] == ["stderr", "stdout", "stdout", "stderr"]


def test_missing_log_reads_as_empty(tmp_path: Path) -> None:
    assert list(read_logs(str(tmp_path / "nothing.log"))) == []


def test_a_line_being_written_is_not_read(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(encode_entry("stdout", b"done\n", 1) + b'{"log":"half')
    assert [e.data for e in read_logs(str(log))] == [b"done\n"]


def test_malformed_lines_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(
        encode_entry("stdout", b"a\n", 1)
        + b"garbage\n[1]\n"
        + b'{"log":"x","time":5}\n'
        + encode_entry("stdout", b"b\n", 2)
    )
    assert [e.data for e in read_logs(str(log))] == [b"a\n", b"b\n"]


def test_reads_compressed_rotated_files(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with LogWriter(str(log), max_size=10 * LINE, max_file=5, compress=True) as w:
        write_numbered(w, 0, 47)
    assert nums(read_logs(str(log))) == list(range(47))
    assert nums(read_logs(str(log), tail=23)) == list(range(24, 47))


def test_partial_lines_come_back_as_written(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with LogWriter(str(log), max_size=None) as w:
        w.write("stdout", b"y" * 20000 + b"\n" + b"tail", ts_ns=7)
    got = list(read_logs(str(log)))
    assert b"".join(e.data for e in got) == b"y" * 20000 + b"\ntail"
    assert [len(e.data) for e in got] == [16384, 20000 - 16384 + 1, 4]


@pytest.mark.parametrize("n", [0, 1, 7, 24, 25, 26, 50, 99, 100, 101, 1000])
def test_tail_across_files(rotated: Path, n: int) -> None:
    assert nums(read_logs(str(rotated), tail=n)) == list(range(max(0, 100 - n), 100))


def test_tail_reads_backwards_by_blocks(tmp_path: Path) -> None:
    # lines longer than a block, and many of them per block
    log = tmp_path / "c.log"
    log.write_bytes(
        b"".join(encode_entry("stdout", b"z" * (n * 700 % 150_000) + b"\n", n) for n in range(300))
    )
    for n in (1, 2, 3, 150, 299, 300):
        assert [e.time_ns for e in read_logs(str(log), tail=n)] == list(range(300 - n, 300))


def test_since_and_until(rotated: Path) -> None:
    assert nums(read_logs(str(rotated), since_ns=30)) == list(range(30, 100))
    assert nums(read_logs(str(rotated), until_ns=30)) == list(range(31))
    assert nums(read_logs(str(rotated), since_ns=10, until_ns=60)) == list(range(10, 61))
    assert nums(read_logs(str(rotated), tail=10, since_ns=95)) == list(range(95, 100))
    assert nums(read_logs(str(rotated), since_ns=1000)) == []


def test_since_stops_filtering_after_the_first_match_as_docker(tmp_path: Path) -> None:
    # times need not be ordered (a clock step): moby's forwarder checks since only until the
    # first entry at or after it, and stops the stream at the first entry after until
    log = tmp_path / "c.log"
    with LogWriter(str(log), max_size=None) as w:
        for n, ts in enumerate([1, 5, 2, 9, 3]):
            w.write("stdout", b"%06d\n" % n, ts_ns=ts)
    assert nums(read_logs(str(log), since_ns=4)) == [1, 2, 3, 4]
    assert nums(read_logs(str(log), until_ns=4)) == [0]


# --- follow ---------------------------------------------------------------------------------


def test_follow_reads_what_is_appended_then_stops(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    w = LogWriter(str(log), max_size=None)
    write_numbered(w, 0, 3)
    done = threading.Event()
    reader = read_logs(str(log), follow=True, stop=done.is_set, poll_interval=0.01)
    assert nums(next(reader) for _ in range(3)) == [0, 1, 2]
    write_numbered(w, 3, 2)
    assert nums(next(reader) for _ in range(2)) == [3, 4]
    write_numbered(w, 5, 1)
    w.close()
    done.set()
    # written before stop() turned True: still read
    assert nums(reader) == [5]


@pytest.mark.parametrize("compress", [False, True])
def test_follow_through_several_rotations_between_polls(tmp_path: Path, compress: bool) -> None:
    log = tmp_path / "c.log"
    w = LogWriter(str(log), max_size=5 * LINE, max_file=10, compress=compress)
    write_numbered(w, 0, 3)
    reader = read_logs(str(log), follow=True, stop=lambda: True)
    assert nums(next(reader) for _ in range(3)) == [0, 1, 2]
    # four rotations while the reader is not looking: it finds its file as c.log.4 (by its
    # inode, or by its first line once compressed) and reads c.log.3 … c.log.1 before the new
    # c.log (docker skips those)
    write_numbered(w, 3, 22)
    w.close()
    assert nums(reader) == list(range(3, 25))


def test_follow_with_max_file_1(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    w = LogWriter(str(log), max_size=5 * LINE, max_file=1)
    write_numbered(w, 0, 2)
    reader = read_logs(str(log), follow=True, stop=lambda: True)
    assert nums(next(reader) for _ in range(2)) == [0, 1]
    write_numbered(w, 2, 6)  # the file is unlinked and created anew once
    w.close()
    assert nums(reader) == list(range(2, 8))


def test_follow_waits_for_the_file_to_appear(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    done = threading.Event()

    def later() -> None:
        time.sleep(0.1)
        with LogWriter(str(log), max_size=None) as w:
            write_numbered(w, 0, 2)
        done.set()

    t = threading.Thread(target=later)
    t.start()
    got = nums(read_logs(str(log), follow=True, stop=done.is_set, poll_interval=0.01))
    t.join()
    assert got == [0, 1]


def test_follow_with_tail_and_until(rotated: Path) -> None:
    w = LogWriter(str(rotated), max_size=25 * LINE, max_file=4)
    reader = read_logs(str(rotated), follow=True, tail=2, until_ns=102, stop=lambda: False)
    assert nums(next(reader) for _ in range(2)) == [98, 99]
    write_numbered(w, 100, 5)
    w.close()
    # the first entry after --until ends the stream, even when following
    assert nums(reader) == [100, 101, 102]


def test_closing_the_reader_closes_its_files(rotated: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    reader = read_logs(str(rotated), follow=True)
    next(reader)
    assert len(os.listdir("/proc/self/fd")) > before
    reader.close()
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize(("max_file", "compress"), [(200, False), (200, True)])
def test_follow_while_a_writer_appends_and_rotates(
    tmp_path: Path, max_file: int, compress: bool
) -> None:
    """No line lost or read twice while another thread writes and rotates.

    150 rotations, often several between two looks of the reader; max_file is large enough
    that no file is deleted before the reader gets to it (a thread can outrun the reader by
    any number of files while it holds the GIL).
    """
    log = tmp_path / "c.log"
    total = 6000
    w = LogWriter(str(log), max_size=40 * LINE, max_file=max_file, compress=compress)
    write_numbered(w, 0, 50)
    closed = threading.Event()

    def writer() -> None:
        n = 50
        while n < total:
            count = min(37, total - n)
            # several lines per write, as a pipe read gives them
            w.write("stdout", b"".join(b"%06d\n" % i for i in range(n, n + count)), ts_ns=n)
            n += count
            time.sleep(0.0002)
        w.close()
        closed.set()

    t = threading.Thread(target=writer)
    reader = read_logs(str(log), follow=True, stop=closed.is_set, poll_interval=0.005)
    first = next(reader)
    t.start()
    got = [int(first.data), *nums(reader)]
    t.join()
    assert got == list(range(total))


def test_follow_when_files_were_rotated_away_unread(tmp_path: Path) -> None:
    # the writer outran the reader by more than max_file files: as docker, the reader goes on
    # with what is still there, never back and never twice
    log = tmp_path / "c.log"
    w = LogWriter(str(log), max_size=5 * LINE, max_file=3)
    write_numbered(w, 0, 2, ts=TS)
    reader = read_logs(str(log), follow=True, stop=lambda: True)
    assert nums(next(reader) for _ in range(2)) == [0, 1]
    write_numbered(w, 2, 40, ts=TS)
    w.close()
    # its own file (0-4) is still open; 5-29 are gone, 30-39 were rotated after it was lost
    assert nums(reader) == [2, 3, 4, 40, 41]


# --- --since / --until arguments ------------------------------------------------------------

NOW = 1_700_000_000 * S + 987_654_321


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", 1_700_000_000 - 600),
        ("1h30m", 1_700_000_000 - 5400),
        ("42s", 1_700_000_000 - 42),
        ("1.5h", 1_700_000_000 - 5400),
        ("1500ms", 1_700_000_000 - 1),  # docker sends whole seconds
        ("-1m", 1_700_000_000 + 60),
    ],
)
def test_durations_count_back_from_now(text: str, expected: int) -> None:
    assert parse_time_arg(text, NOW) == expected * S


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1700000000", 1_700_000_000 * S),
        ("1700000000.5", 1_700_000_000 * S + S // 2),
        ("1700000000.123456789", 1_700_000_000 * S + 123_456_789),
        ("0", 0),
        ("2024-01-02T03:04:05Z", 1_704_164_645 * S),
        ("2024-01-02T03:04:05.123456789Z", TS),
        ("2024-01-02T04:04:05+01:00", 1_704_164_645 * S),
        ("2024-01-02T02:04:05-01:00", 1_704_164_645 * S),
        ("2024-01-02T03:04Z", 1_704_164_640 * S),
        ("2024-01-02T03Z", 1_704_164_400 * S),
        ("2024-01-02Z", 1_704_153_600 * S),
        # no zone: the local one (here UTC+2)
        ("2024-01-02T05:04:05", 1_704_164_645 * S),
        ("2024-01-02T05:04:05.5", 1_704_164_645 * S + S // 2),
        ("2024-01-02T05:04", 1_704_164_640 * S),
        ("2024-01-02T05", 1_704_164_400 * S),
        ("2024-01-02", 1_704_153_600 * S - 7200 * S),
    ],
)
def test_times_and_timestamps(text: str, ns: int) -> None:
    assert parse_time_arg(text, NOW, local_offset=7200) == ns


def test_local_zone_defaults_to_the_hosts() -> None:
    offset = time.localtime(NOW // S).tm_gmtoff
    assert parse_time_arg("2024-01-02T03:04:05", NOW) == (1_704_164_645 - offset) * S


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "10x",
        "2024-13-01",
        "2024-02-30T00:00:00Z",
        "2024-01-02T03:04:05.Z",
        "-5",
        "12.ab",
        "2024-01-02T03:04:05+0100",
        "1h 30m",
    ],
)
def test_bad_time_arguments(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_time_arg(text, NOW)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("1ns", 1),
        ("1us", 1000),
        ("1µs", 1000),
        ("1μs", 1000),
        ("2h45m3.5s", (2 * 3600 + 45 * 60 + 3) * S + S // 2),
        (".5s", S // 2),
        ("5.s", 5 * S),
        ("+3m", 180 * S),
        ("-1.25h", -4500 * S),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "1", "s", ".s", "1d", "3m-1s", "+", "1h1"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)
