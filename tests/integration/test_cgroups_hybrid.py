"""The v1 manager on the real kernel of this (v1/v2 hybrid) host: limits read back from the
kernel's files, limits enforced (pids, memory, devices), freezer, pids, stats, kill_all,
destroy, and the manager rebuilt from saved paths."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cgroups import (
    CgroupManager,
    CgroupMode,
    FreezerState,
    manager_for,
    manager_from_paths,
    parse_resources,
)
from dockyard.cgroups.layout import detect_layout
from dockyard.cgroups.v1 import V1Manager
from dockyard.errors import SyscallError
from testbed import cgroupv2

pytestmark = pytest.mark.integration


class Box:
    """Processes and managers a test made; all killed (by pid) and removed afterwards."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen[str]] = []
        self.managers: list[CgroupManager] = []

    def spawn(self, argv: list[str], **kw: object) -> subprocess.Popen[str]:
        p: subprocess.Popen[str] = subprocess.Popen(argv, text=True, **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p

    def manager(self, cgroups_path: str | None = None) -> V1Manager:
        mgr = manager_for(cgroups_path or f"/{self.name}", self.name)
        assert isinstance(mgr, V1Manager)
        self.managers.append(mgr)
        return mgr

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for mgr in self.managers:
            for d in set(mgr.paths.values()):
                cgroupv2.remove_cgroup_tree(d)
            if isinstance(mgr, V1Manager):          # parents of nested paths too
                for mountpoint in set(mgr.mountpoints.values()):
                    cgroupv2.remove_cgroup_tree(os.path.join(mountpoint, self.name))


@pytest.fixture
def box() -> Iterator[Box]:
    layout = detect_layout()
    if layout.mode is CgroupMode.V2:
        pytest.skip("this host is pure cgroup v2")
    name = f"dockyard-test-{uuid.uuid4().hex[:12]}"
    b = Box(name)
    with cgroupv2.unified_guard(name):
        try:
            yield b
        finally:
            b.close()


def read(mgr: V1Manager, controller: str, name: str) -> str:
    return Path(mgr.paths[controller], name).read_text().strip()


def has(mgr: V1Manager, controller: str) -> bool:
    return controller in mgr.paths


def test_limits_read_back_from_the_kernel(box: Box) -> None:
    mgr = box.manager()
    p = box.spawn(["sleep", "60"])
    resources = parse_resources({
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swappiness": 10},
        "pids": {"limit": 16},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 136, "access": "rw"}],
    })
    mgr.apply(p.pid, resources)
    mgr.set(resources)
    assert read(mgr, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert read(mgr, "memory", "memory.soft_limit_in_bytes") == str(32 << 20)
    assert read(mgr, "memory", "memory.swappiness") == "10"
    assert read(mgr, "pids", "pids.max") == "16"
    assert read(mgr, "cpu", "cpu.shares") == "512"
    assert read(mgr, "cpu", "cpu.cfs_quota_us") == "50000"
    assert read(mgr, "cpu", "cpu.cfs_period_us") == "100000"
    assert read(mgr, "cpuset", "cpuset.cpus") == "0"
    assert read(mgr, "cpuset", "cpuset.mems") == "0"
    assert read(mgr, "devices", "devices.list").splitlines() == ["c 1:3 rwm", "c 136:* rw"]
    # the process is in every hierarchy, the unified one included
    for controller, d in mgr.paths.items():
        assert str(p.pid) in Path(d, "cgroup.procs").read_text().split(), controller
    own = Path(f"/proc/{p.pid}/cgroup").read_text()
    assert f"memory:/{box.name}\n" in own
    assert f"0::/{box.name}\n" in own

    # runc update: only what is given changes
    mgr.set(parse_resources({"memory": {"limit": 128 << 20}, "cpu": {"quota": -1}}))
    assert read(mgr, "memory", "memory.limit_in_bytes") == str(128 << 20)
    assert read(mgr, "cpu", "cpu.cfs_quota_us") == "-1"
    assert read(mgr, "pids", "pids.max") == "16"
    assert read(mgr, "cpu", "cpu.shares") == "512"

    # a later command rebuilds the manager from the saved paths
    again = manager_from_paths(json.loads(json.dumps(dict(mgr.paths))))
    assert again.pids() == [p.pid]
    again.set(parse_resources({"pids": {"limit": -1}}))
    assert read(mgr, "pids", "pids.max") == "max"


def test_hugetlb_goes_to_the_unified_tree(box: Box) -> None:
    mgr = box.manager()
    unified = mgr.paths.get("")
    if has(mgr, "hugetlb") or unified is None:
        pytest.skip("hugetlb is a v1 controller here")
    if "hugetlb" not in Path(mgr.mountpoints[""], "cgroup.controllers").read_text().split():
        pytest.skip("no hugetlb in the unified tree")
    mgr.apply(None)
    mgr.set(parse_resources({"hugepageLimits": [{"pageSize": "2MB", "limit": 8 << 20}]}))
    assert Path(unified, "hugetlb.2MB.max").read_text().strip() == str(8 << 20)
    stats = mgr.stats()
    assert "2MB" in stats.hugetlb
    assert stats.hugetlb["2MB"].usage == 0


FORKER = """
import os, sys, time
sys.stdin.readline()
ok, refused = [], 0
for _ in range(5):
    try:
        pid = os.fork()
    except BlockingIOError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    ok.append(pid)
print(len(ok), refused, *ok, flush=True)
time.sleep(60)
"""


def _reap(pids: list[int]) -> None:
    """Grandchildren whose parent was killed are ours (the suite is a subreaper)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def test_pids_limit_is_enforced(box: Box) -> None:
    mgr = box.manager()
    forker = box.spawn([sys.executable, "-c", FORKER], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE)
    mgr.apply(forker.pid)
    mgr.set(parse_resources({"pids": {"limit": 3}}))
    assert forker.stdin is not None and forker.stdout is not None
    forker.stdin.write("\n")
    forker.stdin.flush()
    started, refused, *kids = (int(v) for v in forker.stdout.readline().split())
    try:
        assert (started, refused) == (2, 3)      # itself + 2 children = pids.max
        assert sorted(mgr.pids()) == sorted([forker.pid, *kids])
        assert read(mgr, "pids", "pids.current") == "3"
        events = dict(line.split() for line in read(mgr, "pids", "pids.events").splitlines())
        assert int(events["max"]) == 3
        st = mgr.stats()
        assert (st.pids.current, st.pids.limit) == (3, 3)
        mgr.kill_all(signal.SIGKILL)
        assert forker.wait(10) == -9
    finally:
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(kids)
    mgr.destroy(timeout=5)
    assert not mgr.exists()


def test_memory_limit_is_enforced(box: Box) -> None:
    mgr = box.manager()
    hog = box.spawn([sys.executable, "-c",
                     "import sys; sys.stdin.readline(); x = b'x' * (256 << 20); print('ALIVE')"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    mgr.apply(hog.pid)
    mgr.set(parse_resources({"memory": {"limit": 48 << 20, "swap": 48 << 20}}))
    assert read(mgr, "memory", "memory.limit_in_bytes") == str(48 << 20)
    out, _ = hog.communicate("\n", timeout=60)
    assert hog.returncode == -signal.SIGKILL     # the OOM killer, inside the cgroup
    assert "ALIVE" not in out
    assert read(mgr, "memory", "memory.max_usage_in_bytes") == str(48 << 20)
    oom = dict(line.split() for line in read(mgr, "memory", "memory.oom_control").splitlines())
    assert int(oom["oom_kill"]) >= 1
    mgr.destroy()


def test_devices_are_enforced(box: Box) -> None:
    mgr = box.manager()
    sh = box.spawn(["sh", "-c", "read _; cat /dev/null && echo READ-OK; "
                    "echo x > /dev/null && echo WRITE-OK; exit 0"],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    mgr.apply(sh.pid)
    mgr.set(parse_resources({"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}]}))
    out, _ = sh.communicate("\n", timeout=30)
    assert "READ-OK" in out
    assert "WRITE-OK" not in out
    assert "Operation not permitted" in out
    mgr.destroy()


def _count(path: Path) -> int:
    """Ticks the counter has appended, two bytes each (a frozen append never half-shows)."""
    return path.stat().st_size // 2


def test_freeze_thaw_pids_stats(box: Box, tmp_path: Path) -> None:
    mgr = box.manager()
    counter_file = tmp_path / "count"
    counter = box.spawn(["sh", "-c", f": > {counter_file}; while :; do echo x >> {counter_file};"
                         " sleep 0.01; done"])
    mgr.apply(counter.pid)
    burner = box.spawn([sys.executable, "-c", "import sys, time\nsys.stdin.readline()\n"
                        "sum(range(3_000_000))\nprint('burnt', flush=True)\ntime.sleep(60)"],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    mgr.add_pid(burner.pid)
    assert burner.stdin is not None and burner.stdout is not None
    burner.stdin.write("\n")
    burner.stdin.flush()
    assert {counter.pid, burner.pid} <= set(mgr.pids())
    assert mgr.state() is FreezerState.THAWED
    time.sleep(0.5)

    mgr.freeze()
    assert mgr.state() is FreezerState.FROZEN
    assert read(mgr, "freezer", "freezer.state") == "FROZEN"
    c1 = _count(counter_file)
    time.sleep(0.4)
    assert _count(counter_file) == c1                # nothing runs
    status = Path(f"/proc/{counter.pid}/status").read_text()
    assert "State:\tD" in status or "State:\tS" in status
    mgr.thaw()
    assert mgr.state() is FreezerState.THAWED
    time.sleep(0.4)
    assert _count(counter_file) > c1                 # and runs again

    assert burner.stdout.readline().strip() == "burnt"
    st = mgr.stats()
    assert st.cpu.usage.total > 10_000_000           # the burner's loop ran in here
    assert len(st.cpu.usage.percpu) == os.cpu_count()
    assert st.memory.usage.usage > 0
    assert st.pids.current >= 2
    runc = json.loads(json.dumps(st.to_runc()))
    assert runc["cpu"]["usage"]["total"] == st.cpu.usage.total
    assert runc["memory"]["usage"]["usage"] == st.memory.usage.usage
    assert runc["pids"]["current"] == st.pids.current

    mgr.kill_all(signal.SIGTERM)
    assert counter.wait(10) == -signal.SIGTERM
    assert burner.wait(10) == -signal.SIGTERM
    assert mgr.state() is FreezerState.THAWED        # kill_all thaws what it froze
    mgr.destroy()
    assert not mgr.exists()
    assert not any(os.path.isdir(d) for d in mgr.paths.values())


def test_kill_all_on_a_paused_container(box: Box) -> None:
    mgr = box.manager()
    procs = [box.spawn(["sleep", "60"]) for _ in range(3)]
    mgr.apply(procs[0].pid)
    for p in procs[1:]:
        mgr.add_pid(p.pid)
    mgr.freeze()
    mgr.kill_all(signal.SIGKILL)                     # v1 frozen tasks die once thawed
    assert [p.wait(10) for p in procs] == [-9, -9, -9]
    assert mgr.pids() == []
    mgr.destroy()


def test_destroy_kill_and_busy(box: Box) -> None:
    mgr = box.manager()
    p = box.spawn(["sleep", "60"])
    mgr.apply(p.pid)
    os.mkdir(os.path.join(mgr.paths["memory"], "child"))     # a sub-cgroup goes first
    with pytest.raises(SyscallError) as info:
        mgr.destroy(timeout=0.2)                 # still populated, no kill asked
    assert info.value.errno == 16                # EBUSY
    assert mgr.exists()
    mgr.destroy(kill=True)
    assert p.wait(10) == -9
    assert not mgr.exists()


def test_default_cgroups_path_is_the_id_below_own_cgroup(box: Box) -> None:
    own = dict(line.split(":", 2)[1:] for line in
               Path("/proc/self/cgroup").read_text().splitlines())
    mgr = manager_for(None, box.name)
    assert isinstance(mgr, V1Manager)
    box.managers.append(mgr)
    expected = os.path.normpath(f"/sys/fs/cgroup/memory/{own['memory']}/{box.name}")
    assert mgr.paths["memory"] == expected
    p = box.spawn(["sleep", "60"])
    mgr.apply(p.pid)
    assert os.path.isdir(expected)
    assert mgr.pids() == [p.pid]
    mgr.destroy(kill=True)
    assert p.wait(10) == -9
    assert not os.path.isdir(expected)


def test_nested_path_and_parents_kept(box: Box) -> None:
    mgr = box.manager(f"/{box.name}/pod/ctr")
    p = box.spawn(["sleep", "60"])
    mgr.apply(p.pid, parse_resources({"cpu": {"cpus": "1"}}))
    # the v1 cpuset parents got cpus/mems from theirs, the container its own
    parent = Path(mgr.paths["cpuset"]).parent
    assert (parent / "cpuset.cpus").read_text().strip() == \
        Path("/sys/fs/cgroup/cpuset/cpuset.cpus").read_text().strip()
    assert read(mgr, "cpuset", "cpuset.cpus") == "1"
    mgr.destroy(kill=True)
    assert p.wait(10) == -9
    assert not mgr.exists()
    assert parent.is_dir()                      # runc leaves parents; Box removes them
