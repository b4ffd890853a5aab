"""go-units v0.5.0 (docker CLI 28's): sizes, durations and size parsing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dockyard.cli.units import (
    bytes_size,
    from_human_size,
    human_duration,
    human_size,
    human_size_with_precision,
    parse_bytes,
    ram_in_bytes,
    time_ago,
)
from dockyard.errors import InvalidArgument


@pytest.mark.parametrize(("size", "want"), [
    (0, "0B"), (512, "512B"), (999, "999B"), (1000, "1kB"), (4_260_000, "4.26MB"),
    (4_264_999, "4.26MB"), (1_200_000_000, "1.2GB"), (77_800_000, "77.8MB"),
    (999_999, "1e+03kB"),  # go-units' own quirk: %.3g of 999.999
    (10**24, "1YB"), (10**27, "1e+03YB"),
])
def test_human_size_precision_3(size: int, want: str) -> None:
    assert human_size_with_precision(size, 3) == want


def test_human_size_and_bytes_size() -> None:
    assert human_size(2_746_000) == "2.746MB"
    assert bytes_size(1536 * 1024) == "1.5MiB"
    assert bytes_size(1024**3 * 2) == "2GiB"
    assert bytes_size(100) == "100B"
    assert bytes_size(1023.9) == "1024B"


@pytest.mark.parametrize(("secs", "want"), [
    (0, "Less than a second"), (0.99, "Less than a second"), (1, "1 second"),
    (1.9, "1 second"), (5, "5 seconds"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"),
    (3600, "About an hour"), (5399, "About an hour"), (5400, "2 hours"),
    (47 * 3600 + 1799, "47 hours"), (47 * 3600 + 1800, "2 days"), (13 * 86400, "13 days"),
    (14 * 86400, "2 weeks"), (59 * 86400, "8 weeks"), (60 * 86400, "2 months"),
    (729 * 86400, "24 months"), (730 * 86400, "2 years"), (3 * 365 * 86400, "3 years"),
])
def test_human_duration(secs: float, want: str) -> None:
    assert human_duration(secs) == want
    assert human_duration(timedelta(seconds=secs)) == want


def test_time_ago() -> None:
    assert time_ago(1000.0, now=1005.0) == "5 seconds ago"
    assert time_ago(0.0, now=7200.0) == "2 hours ago"


@pytest.mark.parametrize(("text", "want"), [
    ("512m", 512 * 1024**2), ("512M", 512 * 1024**2), ("1.5g", 3 * 1024**3 // 2),
    ("32", 32), ("32b", 32), ("32 kb", 32 * 1024), ("32KiB", 32 * 1024), ("1t", 1024**4),
    ("0.5k", 512), ("1p", 1024**5),
])
def test_ram_in_bytes(text: str, want: int) -> None:
    assert ram_in_bytes(text) == want
    assert parse_bytes(text) == want


@pytest.mark.parametrize(("text", "msg"), [
    ("12zz", "invalid suffix: 'zz'"),
    ("zz", "invalid size: 'zz'"),
    ("", "invalid size: ''"),
    ("-1", "invalid size: '-1'"),
    ("1kbb", "invalid suffix: 'kbb'"),
    ("1ba", "invalid suffix: 'ba'"),
    ("1kq", "invalid suffix: 'kq'"),
    ("1x2", 'strconv.ParseFloat: parsing "1x2": invalid syntax'),
])
def test_ram_in_bytes_errors(text: str, msg: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        ram_in_bytes(text)
    assert str(e.value) == msg


def test_from_human_size_is_decimal() -> None:
    assert from_human_size("1kB") == 1000
    assert from_human_size("1.5GB") == 1_500_000_000
