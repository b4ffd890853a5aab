"""The launcher's fast path for start and delete: it acts only on the plain case and, for
anything else, hands over to the full CLI having changed nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dockyard.runtime import fastpath


def _container(root: Path, cid: str, *, pid: int, start_time: int, hooks: tuple[str, ...] = (),
               cgroups: dict[str, str] | None = None, fifo: bool = False) -> Path:
    d = root / cid
    d.mkdir(parents=True)
    doc = {"id": cid, "pid": pid, "pid_start_time": start_time, "bundle": "/b",
           "rootfs": "/b/rootfs", "created": "2026-11-28T00:00:00Z", "owner": "",
           "annotations": {}, "hooks": list(hooks), "cgroup_paths": cgroups or {}}
    (d / "state.json").write_text(json.dumps(doc))
    (d / "config.json").write_text("{}")
    if fifo:
        os.mkfifo(d / "exec.fifo")
    return d


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _my_start_time() -> int:
    start = fastpath.process_start_time(os.getpid())
    assert start is not None
    return start


@pytest.mark.parametrize(("argv", "expected"), [
    (["start", "c1"], ("start", "/r", "c1")),
    (["--root", "/x", "start", "c1"], ("start", "/x", "c1")),
    (["--root=/x", "--log", "/l", "--log-format=json", "--debug", "delete", "-f", "c1"],
     ("delete", "/x", "c1")),
    (["delete", "--force", "c1"], ("delete", "/r", "c1")),
    (["--systemd-cgroup", "delete", "c1"], ("delete", "/r", "c1")),
    (["state", "c1"], ("state", "/r", "c1")),
])
def test_parses_the_plain_command_lines(argv: list[str], expected: tuple[str, str, str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "default_root", lambda: "/r")
    assert fastpath._parse(argv) == expected


@pytest.mark.parametrize("argv", [
    [], ["start"], ["start", "a", "b"], ["kill", "c1"], ["list"], ["start", "-f", "c1"],
    ["--root"], ["--log-format", "xml", "start", "c1"], ["start", "../c1"], ["start", "a/b"],
    ["--help"], ["start", "--help", "c1"], ["--roo", "/x", "start", "c1"], ["-v"],
])
def test_anything_else_goes_to_the_full_cli(argv: list[str]) -> None:
    assert fastpath._parse(argv) is None
    assert fastpath.main(argv) is None


def test_default_root_follows_runc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_RUNC_ROOT", "/somewhere/else")
    assert fastpath.default_root() == "/somewhere/else"
    monkeypatch.delenv("DOCKYARD_RUNC_ROOT")
    if os.geteuid() == 0:
        assert fastpath.default_root() == "/run/dockyard-runc"
    else:
        monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000/")
        assert fastpath.default_root() == "/run/user/1000/dockyard-runc"


def test_deletes_a_stopped_container_and_its_empty_cgroups(tmp_path: Path) -> None:
    cg = tmp_path / "cg"
    (cg / "memory").mkdir(parents=True)
    (cg / "pids").mkdir()
    d = _container(tmp_path / "root", "c1", pid=_dead_pid(), start_time=1,
                   cgroups={"memory": str(cg / "memory"), "pids": str(cg / "pids"),
                            "": str(cg / "gone")})
    assert fastpath.main(["--root", str(tmp_path / "root"), "delete", "c1"]) == 0
    assert not d.exists()
    assert os.listdir(cg) == []


@pytest.mark.parametrize("case", ["running", "poststop-hook", "busy-cgroup", "other-id"])
def test_leaves_what_it_does_not_handle_untouched(tmp_path: Path, case: str) -> None:
    root = tmp_path / "root"
    cg = tmp_path / "cg"
    (cg / "busy" / "child").mkdir(parents=True)
    pid, start = _dead_pid(), 1
    hooks: tuple[str, ...] = ()
    cgroups: dict[str, str] = {}
    if case == "running":
        pid, start = os.getpid(), _my_start_time()
    elif case == "poststop-hook":
        hooks = ("poststop",)
    elif case == "busy-cgroup":
        cgroups = {"memory": str(cg / "busy")}
    d = _container(root, "c1", pid=pid, start_time=start, hooks=hooks, cgroups=cgroups)
    if case == "other-id":
        (d / "state.json").write_text((d / "state.json").read_text().replace('"c1"', '"c2"'))
    before = sorted(os.listdir(d))
    assert fastpath.main(["--root", str(root), "delete", "c1"]) is None
    assert sorted(os.listdir(d)) == before
    assert (cg / "busy" / "child").is_dir()


def test_start_releases_the_waiting_init(tmp_path: Path) -> None:
    root = tmp_path / "root"
    d = _container(root, "c1", pid=0, start_time=0, fifo=True)
    child = os.fork()
    if child == 0:  # the "init": blocks in open until start opens the fifo, writes its byte
        fd = os.open(d / "exec.fifo", os.O_WRONLY)
        os.write(fd, b"0")
        os._exit(0)
    try:
        start = fastpath.process_start_time(child)
        assert start is not None
        doc = json.loads((d / "state.json").read_text())
        doc.update(pid=child, pid_start_time=start)
        (d / "state.json").write_text(json.dumps(doc))
        assert fastpath.main(["--root", str(root), "start", "c1"]) == 0
        assert not (d / "exec.fifo").exists()
    finally:
        os.waitpid(child, 0)


@pytest.mark.parametrize("case", ["no-fifo", "stopped", "poststart-hook"])
def test_start_leaves_other_cases_to_the_full_cli(tmp_path: Path, case: str) -> None:
    root = tmp_path / "root"
    pid, start = (os.getpid(), _my_start_time()) if case != "stopped" else (_dead_pid(), 1)
    d = _container(root, "c1", pid=pid, start_time=start, fifo=case != "no-fifo",
                   hooks=("poststart",) if case == "poststart-hook" else ())
    before = sorted(os.listdir(d))
    assert fastpath.main(["--root", str(root), "start", "c1"]) is None
    assert sorted(os.listdir(d)) == before


@pytest.mark.parametrize("case", ["stopped", "running", "created", "annotated"])
def test_state_prints_what_the_full_cli_prints(tmp_path: Path, case: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from dockyard.runtime import cli

    root = tmp_path / "root"
    pid, start = (_dead_pid(), 1) if case == "stopped" else (os.getpid(), _my_start_time())
    d = _container(root, "c1", pid=pid, start_time=start, fifo=case == "created")
    if case == "annotated":
        doc = json.loads((d / "state.json").read_text())
        doc["annotations"] = {"z": "1", "a": "2"}
        (d / "state.json").write_text(json.dumps(doc))
    argv = ["--root", str(root), "state", "c1"]
    assert fastpath.main(argv) == 0
    fast = capsys.readouterr().out
    assert cli.main(argv) == 0
    assert fast == capsys.readouterr().out
    expected = {"stopped": "stopped", "running": "running", "created": "created",
                "annotated": "running"}[case]
    assert json.loads(fast)["status"] == expected
    assert list(json.loads(fast).get("annotations", {})) == (["a", "z"] if case == "annotated"
                                                              else [])


def test_state_of_a_record_it_does_not_understand_goes_to_the_full_cli(tmp_path: Path) -> None:
    d = _container(tmp_path / "root", "c1", pid=_dead_pid(), start_time=1)
    (d / "state.json").write_text('{"id": "c1", "pid": "twelve"}')
    assert fastpath.main(["--root", str(tmp_path / "root"), "state", "c1"]) is None
