"""State records and status transitions."""

from __future__ import annotations

import json
import os
import pickle
import signal
from pathlib import Path

import pytest

from dockyard.errors import AlreadyExists, InvalidArgument, NotFound
from dockyard.runtime import fastpath, state
from dockyard.runtime.cli import _table, main


def test_status_transitions() -> None:
    S = state.Status
    assert [s for s in S.members() if s.can_start] == [S.CREATED]
    assert {s for s in S.members() if s.can_kill} == {S.CREATED, S.RUNNING, S.PAUSED}
    assert S.STOPPED.can_delete and not S.RUNNING.can_delete
    assert [s.value for s in S.members()] == ["creating", "created", "running", "paused",
                                             "stopped"]
    assert S.RUNNING is state.Status.RUNNING and S.RUNNING != S.PAUSED
    assert pickle.loads(pickle.dumps(S.PAUSED)) is S.PAUSED
    with pytest.raises(AttributeError):
        S.RUNNING.value = "x"  # type: ignore[misc]


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "x y", "../etc"])
def test_bad_ids(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        state.validate_id(bad)


def test_record_round_trip_and_status(tmp_path: Path) -> None:
    state.reserve(tmp_path, "c1")
    with pytest.raises(AlreadyExists):
        state.reserve(tmp_path, "c1")
    me = os.getpid()
    start = fastpath.process_start_time(me)
    assert start is not None
    rec = state.Record(
        id="c1",
        pid=me,
        pid_start_time=start,
        bundle="/b",
        rootfs="/b/rootfs",
        created="2026-01-01T00:00:00Z",
        annotations=(("k", "v"),),
    )
    state.save(tmp_path, rec)
    assert state.load(tmp_path, "c1") == rec
    assert state.list_ids(tmp_path) == ["c1"]
    assert state.status_of(tmp_path, rec) is state.Status.RUNNING
    (tmp_path / "c1" / fastpath.FIFO_NAME).touch()
    assert state.status_of(tmp_path, rec) is state.Status.CREATED
    stale = state.Record(
        **{
            **state.asdict(rec),
            "pid_start_time": start + 1,  # type: ignore[arg-type]
            "annotations": rec.annotations,
        }
    )
    assert state.status_of(tmp_path, stale) is state.Status.STOPPED
    doc = state.to_oci_state(tmp_path, stale)
    assert doc["status"] == "stopped" and doc["pid"] == 0
    assert doc["annotations"] == {"k": "v"}
    with pytest.raises(NotFound):
        state.load(tmp_path, "nope")


@pytest.mark.parametrize(
    ("text", "sig"),
    [
        ("9", signal.SIGKILL),
        ("KILL", signal.SIGKILL),
        ("sigterm", signal.SIGTERM),
        ("SIGHUP", signal.SIGHUP),
    ],
)
def test_parse_signal(text: str, sig: signal.Signals) -> None:
    assert state.parse_signal(text) == sig


def test_parse_bad_signal() -> None:
    with pytest.raises(InvalidArgument):
        state.parse_signal("NOPE")


def test_table_like_tabwriter() -> None:
    out = _table([["ID", "PID", "STATUS"], ["a", "12", "running"]])
    assert out == "ID          PID         STATUS\na           12          running\n"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("dockyard-runc version ")
    assert lines[1] == "spec: 1.3.0"


def test_user_error_is_one_line_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(tmp_path), "state", "missing"]) == 1
    err = capsys.readouterr().err
    assert "level=error" in err and "container does not exist: missing" in err
    assert "Traceback" not in err


def test_force_delete_of_missing_container_succeeds(tmp_path: Path) -> None:
    assert main(["--root", str(tmp_path), "delete", "--force", "missing"]) == 0
    assert main(["--root", str(tmp_path), "delete", "missing"]) == 1


def test_usage_errors_reach_the_json_log(tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    assert main(["--log", str(log), "--log-format", "json", "no-such-verb", "x"]) == 1
    entry = json.loads(log.read_text().splitlines()[0])
    assert entry["level"] == "error"
    assert "no-such-verb" in entry["msg"]


@pytest.mark.parametrize("argv", [
    ["--root", "/r", "create", "--bundle", "/b", "--pid-file", "/p", "c1"],
    ["--root=/r", "--log", "/l", "--log-format", "json", "run", "-d", "-b", "/b", "c2"],
    ["start", "c3"], ["state", "c4"], ["delete", "--force", "c5"], ["kill", "c6", "KILL"],
    ["kill", "--all", "c7"], ["--systemd-cgroup", "create", "--no-new-keyring", "c8"],
    ["run", "--preserve-fds", "2", "--console-socket", "/s", "c9"],
])
def test_fast_parser_agrees_with_argparse(argv: list[str]) -> None:
    from dockyard.runtime.cli import _fast_args, _parser

    fast = _fast_args(argv)
    assert fast is not None
    full = vars(_parser().parse_args(argv))
    assert {k: v for k, v in vars(fast).items() if k in full} == \
        {k: v for k, v in full.items() if k in vars(fast)}
    assert set(vars(fast)) >= {"command", "id", "root"}


@pytest.mark.parametrize("argv", [
    ["--help"], ["create", "--bund", "/b", "c1"], ["exec", "c1", "true"], ["create"],
    ["--version"], ["start", "a", "b"], ["run", "--preserve-fds", "x", "c"],
])
def test_fast_parser_defers_to_argparse(argv: list[str]) -> None:
    from dockyard.runtime.cli import _fast_args

    assert _fast_args(argv) is None
