"""--log-driver and --log-opt: docker's messages for what it refuses, each driver's defaults."""

from __future__ import annotations

import pytest

from dockyard.engine.logopts import check_log_config, file_limits
from dockyard.errors import InvalidArgument


@pytest.mark.parametrize(("driver", "opts", "message"), [
    ("syslog", {}, "logger: no log driver named 'syslog' is registered"),
    ("json-file", {"mode": "x"}, "unknown log opt 'mode' for json-file log driver"),
    ("local", {"tag": "x"}, "unknown log opt 'tag' for log driver local"),
    ("json-file", {"max-size": "0"}, "max-size must be a positive number"),
    ("json-file", {"max-size": "12zz"}, "invalid suffix: 'zz'"),
    ("local", {"max-size": "12zz"}, "invalid value for max-size: 12zz: invalid suffix: 'zz'"),
    ("json-file", {"max-file": "0"}, "max-file cannot be less than 1"),
    ("json-file", {"max-file": "x"}, 'strconv.Atoi: parsing "x": invalid syntax'),
    ("local", {"max-file": "x"},
     'invalid value for max-file: x: strconv.Atoi: parsing "x": invalid syntax'),
    ("local", {"max-file": "-1", "compress": "false"}, "max-file must not be negative"),
    ("local", {"max-file": "1"}, "compression cannot be enabled when max file count is 1"),
    ("local", {"compress": "yes"},
     'invalid boolean value for compress: strconv.ParseBool: parsing "yes": invalid syntax'),
    ("json-file", {"compress": "true", "max-file": "1"},
     "compress cannot be true when max-file is less than 2 or max-size is not set"),
])
def test_refused(driver: str, opts: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        check_log_config(driver, opts)
    assert exc.value.message == message


def test_accepted_with_sizes_in_decimal_units() -> None:
    assert check_log_config("local", {"max-size": "1k", "max-file": "2"}) == {
        "max-size": "1000", "max-file": "2"}
    assert check_log_config("local", {"max-file": "1", "compress": "false"}) == {
        "max-file": "1", "compress": "false"}
    assert check_log_config("json-file", {"max-size": "-1"}) == {"max-size": "-1"}
    assert check_log_config("none", {"anything": "goes"}) == {"anything": "goes"}


def test_defaults_and_limits() -> None:
    assert file_limits("local", {}) == (20 * 1024 * 1024, 5)           # docker's
    assert file_limits("json-file", {}) == (10 * 1024 * 1024, 3)       # dockyard's
    assert file_limits("local", {"max-size": "1000", "max-file": "2"}) == (1000, 2)
    assert file_limits("json-file", {"max-size": "-1"}) == (None, 3)
    assert file_limits("local", {"max-file": "0", "compress": "false"}) == (20 * 1024 * 1024, 1)
