"""The OCI lifecycle through the runc command line: create, start, state, list, kill, delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.bundles import make_bundle
from testbed.images import BuiltImage
from tests.integration.runtime.conftest import Runtime, reap_children, wait_for_status

pytestmark = pytest.mark.integration


def test_run_prints_from_inside_and_returns_exit_code(
    runtime: Runtime, busybox: BuiltImage, tmp_path: Path
) -> None:
    bundle = make_bundle(
        busybox,
        tmp_path / "b",
        runtime.binary,
        ["sh", "-c", "echo hello from $(hostname) as pid $$; exit 3"],
        edit=lambda c: c.update(hostname="box1"),
    )
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle), "c1")
    assert rc == 3, err
    assert out.strip() == "hello from box1 as pid 1"
    assert runtime.run("list", "-q").stdout.split() == []  # run deletes what it created


def test_create_start_state_kill_delete(
    runtime: Runtime, busybox: BuiltImage, tmp_path: Path
) -> None:
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["sleep", "300"])
    pid_file = tmp_path / "pid"
    rc, _, err = runtime.run_to_files(
        tmp_path, "create", "--bundle", str(bundle), "--pid-file", str(pid_file), "c2"
    )
    assert rc == 0, err
    state = json.loads(runtime.run("state", "c2", check=True).stdout)
    assert state["status"] == "created"
    assert state["id"] == "c2"
    assert state["pid"] == int(pid_file.read_text())
    assert state["bundle"] == str(bundle)
    # created: the init exists but has not exec'd the user's program yet
    assert "sleep" not in Path(f"/proc/{state['pid']}/cmdline").read_text()

    runtime.run("start", "c2", check=True)
    assert wait_for_status(runtime, "c2", "running") == "running"
    assert Path(f"/proc/{state['pid']}/cmdline").read_bytes().startswith(b"sleep\x00300")
    listing = json.loads(runtime.run("list", "--format", "json", check=True).stdout)
    assert [(c["id"], c["status"]) for c in listing] == [("c2", "running")]
    table = runtime.run("list", check=True).stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert table[1].split()[:3] == ["c2", str(state["pid"]), "running"]

    again = runtime.run("start", "c2")
    assert again.returncode != 0

    refused = runtime.run("delete", "c2")
    assert refused.returncode != 0
    assert "running" in refused.stderr

    runtime.run("kill", "c2", "KILL", check=True)
    assert wait_for_status(runtime, "c2", "stopped") == "stopped"
    runtime.run("delete", "c2", check=True)
    assert runtime.run("state", "c2").returncode != 0
    reap_children()


def test_delete_force_removes_running(
    runtime: Runtime, busybox: BuiltImage, tmp_path: Path
) -> None:
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["sleep", "300"])
    assert runtime.run_to_files(tmp_path, "run", "-d", "--bundle", str(bundle), "c3")[0] == 0
    pid = json.loads(runtime.run("state", "c3", check=True).stdout)["pid"]
    runtime.run("delete", "--force", "c3", check=True)
    reap_children()
    assert (
        not Path(f"/proc/{pid}").exists()
        or Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    )
    assert runtime.run("list", "-q").stdout.split() == []


def test_duplicate_id_is_refused(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> None:
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["sleep", "300"])
    assert runtime.run_to_files(tmp_path, "create", "--bundle", str(bundle), "dup")[0] == 0
    rc, _, err = runtime.run_to_files(tmp_path, "create", "--bundle", str(bundle), "dup")
    assert rc != 0
    assert "exists" in err
    assert json.loads(runtime.run("state", "dup").stdout)["status"] == "created"


def test_missing_executable_fails_create(
    runtime: Runtime, busybox: BuiltImage, tmp_path: Path
) -> None:
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["no-such-program"])
    rc, _, err = runtime.run_to_files(tmp_path, "create", "--bundle", str(bundle), "c4")
    assert rc != 0
    assert "executable file not found" in err
    assert runtime.run("list", "-q").stdout.split() == []


def test_unknown_container_errors(runtime: Runtime) -> None:
    for verb in (["state"], ["start"], ["kill"], ["delete"]):
        res = runtime.run(*verb, "nope")
        assert res.returncode == 1
        assert "does not exist" in res.stderr


def test_non_root_process_user(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> None:
    """The init drops to the process user before it waits on the exec fifo."""

    def edit(c: dict[str, object]) -> None:
        c["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 7],  # type: ignore[index]
                                "umask": 0o077}

    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary,
                         ["sh", "-c", "id -u; id -g; id -G; umask"], edit=edit)
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle), "u1000")
    assert rc == 0, err
    assert out.split() == ["1000", "1000", "1000", "5", "7", "0077"]
