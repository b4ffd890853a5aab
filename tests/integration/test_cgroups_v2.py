"""The cgroup v2 manager on the real kernel: the eBPF device filter on the host's unified
hierarchy, and a whole lifecycle on a pure v2 layout made in a private mount namespace
(testbed/cgroupv2.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from dockyard.cgroups import FreezerState, parse_resources
from dockyard.cgroups.v2 import V2Manager
from dockyard.linux import bpf
from testbed import cgroupv2

pytestmark = pytest.mark.integration


@pytest.fixture
def name() -> str:
    return f"dockyard-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def unified(name: str) -> str:
    mountpoint = cgroupv2.host_unified()
    if mountpoint is None:
        pytest.skip("no cgroup2 hierarchy mounted")
    return mountpoint


def _procs_kill(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_device_filter_is_enforced(name: str, unified: str) -> None:
    mgr = V2Manager(os.path.join(unified, name), mountpoint=unified)
    procs: list[subprocess.Popen[str]] = []
    with cgroupv2.unified_guard(name):
        try:
            mgr.apply(None)
            mgr.set(parse_resources({"devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"},
                {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"}]}))
            fd = os.open(mgr.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                assert len(bpf.attached_programs(fd)) == 1
            finally:
                os.close(fd)
            script = ("read _; cat /dev/null && echo NULL-R; echo x > /dev/null && echo NULL-W; "
                      "head -c1 /dev/zero > /dev/full 2>/dev/null; "
                      "head -c4 /dev/zero | wc -c; head -c1 /dev/urandom | wc -c; exit 0")
            p = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(p)
            mgr.add_pid(p.pid)
            out = p.communicate("\n", timeout=30)[0]
            assert "NULL-R" in out                       # c 1:3 r allowed
            assert "NULL-W" not in out                   # w taken back by the later deny
            assert "cannot create /dev/null: Operation not permitted" in out
            assert "\n4\n" in f"\n{out}"                 # c 1:5 r: /dev/zero readable
            assert "/dev/full: Operation not permitted" in out   # c 1:7: not listed
            assert any("urandom" in line and "Operation not permitted" in line
                       for line in out.splitlines())     # c 1:9: not listed

            # an update replaces the filter: allow everything again
            mgr.set(parse_resources({"devices": [{"allow": True, "access": "rwm"}]}))
            p2 = subprocess.Popen(["sh", "-c", "read _; echo x > /dev/null && echo NULL-W"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
            procs.append(p2)
            mgr.add_pid(p2.pid)
            assert p2.communicate("\n", timeout=30)[0].strip() == "NULL-W"
            assert bpf.detach_all(mgr.path) == 1
        finally:
            _procs_kill(procs)
            mgr.destroy(kill=True)
    assert not os.path.isdir(mgr.path)


def test_v2_freeze_kill_destroy_on_host_unified_tree(name: str, unified: str) -> None:
    """The v2 freezer and cgroup.kill in the host's own cgroup2 mount (hybrid here)."""
    mgr = V2Manager(os.path.join(unified, name, "ctr"), mountpoint=unified)
    procs: list[subprocess.Popen[str]] = []
    with cgroupv2.unified_guard(name):
        try:
            for _ in range(3):
                procs.append(subprocess.Popen(["sleep", "60"], text=True))
            mgr.apply(procs[0].pid)
            for p in procs[1:]:
                mgr.add_pid(p.pid)
            assert sorted(mgr.pids()) == sorted(p.pid for p in procs)
            mgr.freeze()
            assert mgr.state() is FreezerState.FROZEN
            assert "frozen 1" in Path(mgr.path, "cgroup.events").read_text()
            mgr.thaw()
            assert mgr.state() is FreezerState.THAWED
            mgr.destroy(kill=True)
            assert [p.wait(10) for p in procs] == [-9, -9, -9]
            assert not mgr.exists()
            assert os.path.isdir(os.path.join(unified, name))   # parents stay, like runc
        finally:
            _procs_kill(procs)


def test_pure_v2_layout_lifecycle(name: str, tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    with cgroupv2.unified_guard(name):
        obs = cgroupv2.run_pure_v2("lifecycle", name, tmp_path)
    # the layout as the helper saw it, and the manager the factory picked
    assert obs["mode"] == "v2"
    assert obs["manager"] == "V2Manager"
    assert obs["path"] == f"/sys/fs/cgroup/{name}"
    assert obs["default_path"] == f"/sys/fs/cgroup/{name}"   # own cgroup "/": parent is "/"
    counter, sleeper = obs["own_pids"]
    assert {counter, sleeper} <= set(obs["pids"])
    assert obs["pids"] == obs["cgroup_procs"] or set(obs["own_pids"]) <= set(obs["cgroup_procs"])
    # freezer
    assert obs["state_frozen"] == "frozen"
    assert "frozen 1" in obs["events_frozen"]
    assert obs["progress_frozen"] == 0
    assert obs["state_thawed"] == "thawed"
    assert obs["progress_thawed"] > 0
    # limits the unified tree has here
    if "hugetlb" in obs["exercised"]:
        assert obs["hugetlb_max"] == str(4 << 20)
    if "pids" in obs["exercised"]:
        assert obs["pids_max"] == "64"
    if "memory" in obs["exercised"]:
        assert obs["memory_max"] == str(256 << 20)
    if "cpu" in obs["exercised"]:
        assert obs["cpu_weight"] == "79"
        assert obs["cpu_max"] == "20000 100000"
    # devices through eBPF
    assert obs["device_programs"] == 1
    assert "READ-OK" in obs["device_probe"]
    assert "WRITE-OK" not in obs["device_probe"]
    assert "Operation not permitted" in obs["device_probe"]
    # stats in runc's shape
    stats = obs["stats"]
    assert set(stats) >= {"cpu", "memory", "pids", "blkio", "hugetlb"}
    assert stats["cpu"]["usage"]["total"] > 0
    assert stats["pids"]["current"] >= 2
    if "hugetlb" in obs["controllers"]:
        assert "2MB" in stats["hugetlb"]
    # kill_all(SIGTERM) pid by pid under the freezer, kill_all(SIGKILL) via cgroup.kill
    assert obs["term_returncodes"] == [-15, -15]
    assert obs["kill_returncodes"] == [-9, -9]
    assert obs["exists_after_destroy"] is False
    assert obs["dir_after_destroy"] is False
