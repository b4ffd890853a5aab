"""The runtime's cgroup verbs: limits from linux.resources, pause/resume, ps, update, events,
kill --all, and the cgroup removed by delete."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from testbed.bundles import make_bundle
from testbed.images import BuiltImage
from tests.integration.runtime.conftest import Runtime, reap_children, wait_for_status

pytestmark = pytest.mark.integration


def _limited(runtime: Runtime, busybox: BuiltImage, tmp_path: Path, cid: str,
             args: list[str]) -> tuple[Path, str]:
    cg = f"/dockyard-test-{uuid.uuid4().hex[:8]}/{cid}"

    def edit(c: dict[str, Any]) -> None:
        c["linux"]["cgroupsPath"] = cg
        c["linux"]["resources"] = {
            "devices": [{"allow": False, "access": "rwm"}],
            "memory": {"limit": 64 * 1024 * 1024},
            "pids": {"limit": 20},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        }

    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, args, edit=edit)
    return bundle, cg


def _cgroup_file(cg: str, controller: str, name: str) -> Path:
    v1 = Path("/sys/fs/cgroup") / controller
    if v1.is_dir():
        return v1 / cg.lstrip("/") / name
    return Path("/sys/fs/cgroup") / cg.lstrip("/") / name


def _cleanup_parent(cg: str) -> None:
    parent = cg.rsplit("/", 1)[0].lstrip("/")
    for base in Path("/sys/fs/cgroup").iterdir():
        d = base / parent
        if d.is_dir() and base.name != parent:
            d.rmdir()
    d = Path("/sys/fs/cgroup") / parent
    if d.is_dir() and (d / "cgroup.procs").exists():
        d.rmdir()


def test_limits_pause_ps_update_events(runtime: Runtime, busybox: BuiltImage, tmp_path: Path
                                       ) -> None:
    bundle, cg = _limited(runtime, busybox, tmp_path, "cg1", ["sleep", "300"])
    try:
        rc, _, err = runtime.run_to_files(tmp_path, "run", "-d", "--bundle", str(bundle), "cg1")
        assert rc == 0, err
        pid = json.loads(runtime.run("state", "cg1", check=True).stdout)["pid"]
        assert _cgroup_file(cg, "memory", "memory.limit_in_bytes").read_text().strip() == \
            str(64 * 1024 * 1024)
        assert _cgroup_file(cg, "pids", "pids.max").read_text().strip() == "20"
        assert _cgroup_file(cg, "cpu", "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert str(pid) in _cgroup_file(cg, "pids", "cgroup.procs").read_text().split()

        # ps: the container's processes
        assert json.loads(runtime.run("ps", "--format", "json", "cg1", check=True).stdout) \
            == [pid]
        table = runtime.run("ps", "cg1", check=True).stdout.splitlines()
        assert "PID" in table[0] and len(table) == 2 and "sleep 300" in table[1]

        # pause / resume
        runtime.run("pause", "cg1", check=True)
        assert json.loads(runtime.run("state", "cg1").stdout)["status"] == "paused"
        assert _cgroup_file(cg, "freezer", "freezer.state").read_text().strip() == "FROZEN"
        assert runtime.run("pause", "cg1").returncode != 0  # already paused
        runtime.run("resume", "cg1", check=True)
        assert json.loads(runtime.run("state", "cg1").stdout)["status"] == "running"
        assert runtime.run("resume", "cg1").returncode != 0  # not paused

        # update
        runtime.run("update", "--memory", "32m", "--pids-limit", "10", "cg1", check=True)
        assert _cgroup_file(cg, "memory", "memory.limit_in_bytes").read_text().strip() == \
            str(32 * 1024 * 1024)
        assert _cgroup_file(cg, "pids", "pids.max").read_text().strip() == "10"
        res_file = tmp_path / "res.json"
        res_file.write_text(json.dumps({"pids": {"limit": 15}}))
        runtime.run("update", "-r", str(res_file), "cg1", check=True)
        assert _cgroup_file(cg, "pids", "pids.max").read_text().strip() == "15"

        # events --stats
        event = json.loads(runtime.run("events", "--stats", "cg1", check=True).stdout)
        assert event["type"] == "stats" and event["id"] == "cg1"
        assert event["data"]["pids"]["current"] == 1
        assert event["data"]["memory"]["usage"]["limit"] == 32 * 1024 * 1024

        runtime.run("delete", "--force", "cg1", check=True)
        reap_children()
        assert not _cgroup_file(cg, "pids", "").exists()
        assert not _cgroup_file(cg, "memory", "").exists()
    finally:
        runtime.run("delete", "--force", "cg1")
        reap_children()
        _cleanup_parent(cg)


def test_pids_limit_is_enforced(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> None:
    # builtins only after the forks: once the limit is reached nothing more can be started
    script = "sh -c 'i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done' 2>/dev/null; " \
             "set -- /proc/[0-9]*; echo $#"
    bundle, cg = _limited(runtime, busybox, tmp_path, "cg2", ["sh", "-c", script])
    try:
        rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle), "cg2")
        assert rc == 0, err
        assert 10 <= int(out.split()[-1]) <= 20  # sh and the sleeps that fit under pids.max
    finally:
        runtime.run("delete", "--force", "cg2")
        reap_children()
        _cleanup_parent(cg)


def test_kill_all_signals_every_process(runtime: Runtime, busybox: BuiltImage, tmp_path: Path
                                        ) -> None:
    bundle, cg = _limited(runtime, busybox, tmp_path, "cg3",
                          ["sh", "-c", "sleep 300 & sleep 300 & wait"])
    try:
        rc, _, err = runtime.run_to_files(tmp_path, "run", "-d", "--bundle", str(bundle), "cg3")
        assert rc == 0, err
        deadline = time.monotonic() + 5
        pids: list[int] = []
        while time.monotonic() < deadline and len(pids) < 3:
            pids = json.loads(runtime.run("ps", "--format", "json", "cg3").stdout or "[]")
        assert len(pids) == 3
        runtime.run("kill", "--all", "cg3", "KILL", check=True)
        assert wait_for_status(runtime, "cg3", "stopped") == "stopped"
        runtime.run("delete", "cg3", check=True)
    finally:
        runtime.run("delete", "--force", "cg3")
        reap_children()
        _cleanup_parent(cg)


def test_delete_of_a_stopped_container_kills_what_its_cgroup_still_holds(
        runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> None:
    """Without a pid namespace the init's exit leaves its children running in the cgroup:
    delete (not forced) of the stopped container kills them and removes the cgroup."""
    cg = f"/dockyard-test-{uuid.uuid4().hex[:8]}/orphan"

    def edit(c: dict[str, Any]) -> None:
        c["linux"]["cgroupsPath"] = cg
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]

    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary,
                         ["sh", "-c", "sleep 300 </dev/null >/dev/null 2>&1 & exit 0"], edit=edit)
    try:
        rc, _, err = runtime.run_to_files(tmp_path, "run", "-d", "--bundle", str(bundle),
                                          "orphan")
        assert rc == 0, err
        assert wait_for_status(runtime, "orphan", "stopped") == "stopped"
        procs = _cgroup_file(cg, "pids", "cgroup.procs")
        left = [int(p) for p in procs.read_text().split()]
        assert left, "the background sleep should still be in the container's cgroup"
        res = runtime.run("delete", "orphan")
        assert res.returncode == 0, res.stderr
        assert not procs.parent.exists()
        deadline = time.monotonic() + 5
        while any(Path(f"/proc/{p}").exists() for p in left) and time.monotonic() < deadline:
            reap_children()
            time.sleep(0.05)
        assert not any(Path(f"/proc/{p}").exists() for p in left)
    finally:
        runtime.run("delete", "--force", "orphan")
        reap_children()
        _cleanup_parent(cg)
