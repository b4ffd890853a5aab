"""What the API fuzzer (tests/integration/test_api_fuzz.py) found, pinned as unit cases: create
bodies of the wrong JSON types are a 400 (never a TypeError's 500), deep JSON, out-of-range
signals, and the list's row cache."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.api.http import Request
from dockyard.api.listcache import ParsedRows
from dockyard.api.translate import create_request
from dockyard.engine.runopts import parse_stop_signal
from dockyard.errors import InvalidArgument

BASE: dict[str, Any] = {"Image": "busybox", "Cmd": ["true"],
                        "HostConfig": {"NetworkMode": "none"}}


@pytest.mark.parametrize("host", [
    {"Ulimits": [{}]},
    {"Ulimits": [{"Name": "nofile", "Soft": 1.5, "Hard": 2}]},
    {"Ulimits": 5},
    {"Devices": [1]},
    {"Devices": [{"PathOnHost": 3}]},
    {"PortBindings": {"80": 1}},
    {"PortBindings": []},
    {"PortBindings": {"80": [{"HostPort": 8080}]}},
    {"RestartPolicy": []},
    {"RestartPolicy": {"Name": 1}},
    {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": "3"}},
    {"Tmpfs": [None]},
    {"Tmpfs": {"/x": 1}},
    {"Mounts": [{"Type": "bind", "BindOptions": 356}]},
    {"Mounts": [{"Type": "tmpfs", "TmpfsOptions": [None]}]},
    {"Mounts": [{"Type": "volume", "VolumeOptions": {"Labels": []}}]},
    {"LogConfig": "json-file"},
    {"LogConfig": {"Config": {"max-size": 1}}},
    {"Privileged": "yes"},
    {"Memory": 2**64},
    {"Memory": 1.5},
    {"NetworkMode": ["none"]},
    {"PidsLimit": "5"},
    {"AutoRemove": {}},
])
def test_mistyped_host_config_is_a_400(host: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        create_request({**BASE, "HostConfig": {"NetworkMode": "none", **host}}, "")


@pytest.mark.parametrize("top", [
    {"Labels": {"a": 1}}, {"Labels": []}, {"Tty": 1}, {"WorkingDir": 5},
    {"Healthcheck": {"Test": 5}}, {"Healthcheck": {"Interval": "1s"}}, {"StopTimeout": "3"},
    {"HostConfig": [1]}, {"Env": [1]},
])
def test_mistyped_config_is_a_400(top: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        create_request({**BASE, **top}, "")


def test_null_label_values_read_as_empty_as_go_reads_them() -> None:
    r = create_request({**BASE, "Labels": {"a": None, "b": "x"}}, "")
    assert dict(r.opts.labels) == {"a": "", "b": "x"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8)
HOST_KEYS = ["Ulimits", "Devices", "PortBindings", "RestartPolicy", "Tmpfs", "Mounts",
             "LogConfig", "Privileged", "Memory", "PidsLimit", "Binds", "CapAdd", "SecurityOpt",
             "ShmSize", "Init", "ReadonlyRootfs", "NetworkMode", "CpusetCpus"]


@given(key=st.sampled_from(HOST_KEYS), value=json_values)
def test_any_value_is_taken_or_refused_never_a_crash(key: str, value: Any) -> None:
    try:
        create_request({**BASE, "HostConfig": {"NetworkMode": "none", key: value}}, "")
    except InvalidArgument:
        pass


@pytest.mark.parametrize("text", ["99999999999999999999999", "-9223372036854775809"])
def test_integers_past_int64_are_a_400(text: str) -> None:
    with pytest.raises(InvalidArgument):
        Request("POST", "/x", {"t": [text]}, headers={}, body=b"", version="1.44").int_arg("t")


def test_deep_json_is_a_400() -> None:
    req = Request("POST", "/x", {}, headers={}, body=b"[" * 100_000, version="1.44")
    with pytest.raises(InvalidArgument):
        req.json()
    deep = Request("GET", "/x", {"filters": ["[" * 100_000]}, headers={}, body=b"",
                   version="1.44")
    with pytest.raises(InvalidArgument):
        deep.filters()


@pytest.mark.parametrize("text", ["0", "65", "4644", "-1", "99999999999999999999"])
def test_signals_out_of_range_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_stop_signal(text)


def test_signal_numbers_in_range_are_taken() -> None:
    assert parse_stop_signal("9") == 9
    assert parse_stop_signal("64") == 64


def _row(db: sqlite3.Connection, state: str) -> sqlite3.Row:
    db.execute("DELETE FROM containers")
    db.execute("INSERT INTO containers VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, '', 0, 0, 0, 0, 0)",
               ("c" * 64, "n", "sha256:x", "busybox", 1.0,
                json.dumps({"Labels": {"a": "b"}}), state))
    row: sqlite3.Row = db.execute("SELECT * FROM containers").fetchone()
    return row


def test_the_row_cache_reparses_a_changed_row() -> None:
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.execute("CREATE TABLE containers (id, name, image_id, image_name, created, config, state,"
               " pid, supervisor_pid, exit_code, error, started_at, finished_at, restart_count,"
               " supervisor_start, stopped_by_user)")
    rows = ParsedRows(limit=2)
    first = rows.parse(_row(db, "created"))
    assert rows.parse(_row(db, "created")) is first            # the same row: kept
    changed = rows.parse(_row(db, "running"))
    assert changed is not first and changed.state == "running"
    assert changed.labels == {"a": "b"}
    rows.parse(_row(db, "exited"))                              # past the limit: starts again
    assert rows.parse(_row(db, "created")) is not first
