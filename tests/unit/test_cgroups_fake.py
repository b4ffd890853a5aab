"""Both backends against a fake hierarchy: the "cgroup root" is a temp dir, mkdir fills a new
directory with the control files its controller would have, and every write is recorded. The
tests check which file gets which value, in which order. The eBPF device filter is checked by
running the generated program in a small interpreter against the reference semantics."""

from __future__ import annotations

import errno
import json
import os
import signal
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.cgroups import FreezerState, manager_for, parse_resources
from dockyard.cgroups.devices import allows, normalize, v1_writes
from dockyard.cgroups.fs import CgroupFs
from dockyard.cgroups.layout import CgroupMount
from dockyard.cgroups.stats import Stats
from dockyard.cgroups.v1 import V1Manager
from dockyard.cgroups.v2 import V2Manager
from dockyard.cgroups.v2 import devices as v2devices
from dockyard.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SyscallError,
    Unavailable,
)
from dockyard.model.resources import DeviceRule

UNLIMITED = "9223372036854771712\n"
COMMON_V1 = {"cgroup.procs": "", "tasks": "", "notify_on_release": "0\n"}
V1_FILES = {
    "cpu": {"cpu.shares": "1024\n", "cpu.cfs_period_us": "100000\n",
            "cpu.cfs_quota_us": "-1\n", "cpu.cfs_burst_us": "0\n", "cpu.idle": "0\n",
            "cpu.rt_period_us": "1000000\n", "cpu.rt_runtime_us": "0\n",
            "cpu.stat": "nr_periods 10\nnr_throttled 3\nthrottled_time 4500\n"},
    "cpuacct": {"cpuacct.usage": "5000000\n", "cpuacct.usage_percpu": "3000000 2000000 \n",
                "cpuacct.stat": "user 30\nsystem 20\n",
                "cpuacct.usage_all": "cpu user system\n0 2000000 1000000\n1 1500000 500000\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpu_exclusive": "0\n"},
    "memory": {"memory.limit_in_bytes": UNLIMITED, "memory.memsw.limit_in_bytes": UNLIMITED,
               "memory.soft_limit_in_bytes": UNLIMITED, "memory.oom_control": "0\n",
               "memory.swappiness": "60\n", "memory.usage_in_bytes": "4096000\n",
               "memory.max_usage_in_bytes": "8192000\n", "memory.failcnt": "2\n",
               "memory.memsw.usage_in_bytes": "4096000\n",
               "memory.memsw.max_usage_in_bytes": "8192000\n", "memory.memsw.failcnt": "0\n",
               "memory.stat": "cache 1024\nrss 4000000\ntotal_cache 1024\n"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED\n", "freezer.self_freezing": "0\n"},
    "blkio": {"blkio.bfq.weight": "100\n", "blkio.bfq.weight_device": "",
              "blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
              "blkio.throttle.read_iops_device": "", "blkio.throttle.write_iops_device": "",
              "blkio.throttle.io_service_bytes_recursive":
                  "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n",
              "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\nTotal 3\n"},
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
    "name=systemd": {},
}
# cpu,cpuacct is one hierarchy: its directories carry both controllers' files.
V1_FILES["cpu,cpuacct"] = {**V1_FILES["cpu"], **V1_FILES["cpuacct"]}
HUGETLB_V2 = {
    "hugetlb.2MB.max": "max\n", "hugetlb.2MB.rsvd.max": "max\n", "hugetlb.2MB.current": "0\n",
    "hugetlb.2MB.rsvd.current": "0\n", "hugetlb.2MB.events": "max 4\n",
    "hugetlb.1GB.max": "max\n", "hugetlb.1GB.rsvd.max": "max\n", "hugetlb.1GB.current": "0\n",
    "hugetlb.1GB.events": "max 0\n",
}
V2_CORE = {"cgroup.procs": "", "cgroup.threads": "", "cgroup.subtree_control": "",
           "cgroup.freeze": "0\n", "cgroup.events": "populated 0\nfrozen 0\n",
           "cgroup.kill": "", "cgroup.type": "domain\n",
           "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"}
V2_CONTROLLER_FILES = {
    "cpu": {"cpu.weight": "100\n", "cpu.max": "max 100000\n", "cpu.max.burst": "0\n",
            "cpu.idle": "0\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": "0-3\n",
               "cpuset.mems.effective": "0\n"},
    "memory": {"memory.max": "max\n", "memory.swap.max": "max\n", "memory.low": "0\n",
               "memory.high": "max\n", "memory.current": "4096\n", "memory.peak": "8192\n",
               "memory.swap.current": "0\n", "memory.events": "low 0\nhigh 0\nmax 3\n",
               "memory.stat": "anon 2048\nfile 1024\n"},
    "pids": {"pids.max": "max\n", "pids.current": "2\n"},
    "io": {"io.weight": "default 100\n", "io.max": "",
           "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"},
    "hugetlb": HUGETLB_V2,
}


class FakeFs(CgroupFs):
    """A cgroup filesystem in a temp dir. ``mounts`` maps a hierarchy's mountpoint to its kind
    (a v1 controller name, "unified" or "v2"); mkdir fills the new directory the way the
    kernel would, writes are recorded as (path relative to the root, value)."""

    def __init__(self, root: Path, mounts: dict[str, str]) -> None:
        self.root = root
        self.mounts = mounts
        self.writes: list[tuple[str, str]] = []
        self.kills: list[tuple[int, int]] = []
        self.programs: list[tuple[str, bytes]] = []
        self.events: list[str] = []     # writes, kills and attaches, in order

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def _kind(self, path: str) -> tuple[str, str]:
        for mp, kind in self.mounts.items():
            if path == mp or path.startswith(mp + "/"):
                return mp, kind
        raise AssertionError(f"{path} is in no fake hierarchy")

    def _files_for(self, path: str) -> dict[str, str]:
        _mp, kind = self._kind(path)
        if kind in V1_FILES:
            return {**COMMON_V1, **V1_FILES[kind]}
        parent = os.path.dirname(path)
        enabled = Path(parent, "cgroup.subtree_control").read_text().split()
        files = dict(V2_CORE)
        files["cgroup.controllers"] = " ".join(enabled) + "\n"
        for c in enabled:
            files.update(V2_CONTROLLER_FILES[c])
        return files

    def write(self, path: str, data: str) -> None:
        if not os.path.isfile(path):
            raise SyscallError("open", errno.ENOENT, path)
        name = os.path.basename(path)
        self.writes.append((self.rel(path), data))
        self.events.append(f"write {self.rel(path)} {data}")
        p = Path(path)
        if name == "cgroup.procs":
            p.write_text(p.read_text() + data + "\n")
        elif name == "cgroup.subtree_control":
            enabled = p.read_text().split()
            for item in data.split():
                c = item[1:]
                if item[0] == "+" and c not in enabled:
                    enabled.append(c)
                elif item[0] == "-" and c in enabled:
                    enabled.remove(c)
            p.write_text(" ".join(enabled) + "\n")
        elif name == "cgroup.freeze":
            Path(path).with_name("cgroup.events").write_text(
                f"populated 1\nfrozen {data.strip()}\n")
            p.write_text(data + "\n")
        else:
            p.write_text(data + "\n")

    def mkdir(self, path: str) -> bool:
        created = super().mkdir(path)
        if created:
            for name, content in self._files_for(path).items():
                Path(path, name).write_text(content)
        return created

    def rmdir(self, path: str) -> None:
        if not os.path.isdir(path):
            return
        if Path(path, "cgroup.procs").is_file() and Path(path, "cgroup.procs").read_text():
            raise SyscallError("rmdir", errno.EBUSY, path)
        for name in os.listdir(path):
            if os.path.isfile(os.path.join(path, name)):
                os.unlink(os.path.join(path, name))
        os.rmdir(path)

    def kill(self, pid: int, sig: int) -> bool:
        self.kills.append((pid, sig))
        self.events.append(f"kill {pid} {sig}")
        return True

    def attach_device_filter(self, path: str, program: bytes) -> None:
        self.programs.append((self.rel(path), program))
        self.events.append(f"attach {self.rel(path)}")

    def sleep(self, seconds: float) -> None:
        pass

    def content(self, rel: str) -> str:
        return (self.root / rel).read_text().strip()

    def written(self, name: str) -> list[str]:
        """Every value written to files called ``name``."""
        return [v for p, v in self.writes if os.path.basename(p) == name]


# --- a hybrid host (v1 controllers + unified hugetlb) -----------------------------------------

@pytest.fixture
def hybrid(tmp_path: Path) -> tuple[FakeFs, list[CgroupMount]]:
    mounts: list[CgroupMount] = []
    kinds: dict[str, str] = {}
    for name in ("cpu,cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                 "systemd"):
        mp = tmp_path / name
        mp.mkdir()
        controllers = "name=systemd" if name == "systemd" else name
        mounts.append(CgroupMount(str(mp), "cgroup", controllers))
        kind = "name=systemd" if name == "systemd" else name
        kinds[str(mp)] = kind
        for fname, content in {**COMMON_V1, **V1_FILES[kind]}.items():
            (mp / fname).write_text(content)
    (tmp_path / "cpuset" / "cpuset.cpus").write_text("0-3\n")
    (tmp_path / "cpuset" / "cpuset.mems").write_text("0\n")
    u = tmp_path / "unified"
    u.mkdir()
    (u / "cgroup.controllers").write_text("hugetlb\n")
    (u / "cgroup.subtree_control").write_text("\n")
    (u / "cgroup.procs").write_text("")
    mounts.append(CgroupMount(str(u), "cgroup2", ""))
    kinds[str(u)] = "unified"
    return FakeFs(tmp_path, kinds), mounts


def _v1(fake: FakeFs, mounts: list[CgroupMount], path: str = "/dy/c1") -> V1Manager:
    mgr = manager_for(path, "c1", hierarchies=mounts, fs=fake)
    assert isinstance(mgr, V1Manager)
    return mgr


def test_v1_apply_creates_every_hierarchy_and_joins_once_per_dir(
        hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    mgr.apply(4242, parse_resources({"cpu": {"cpus": "1", "realtimeRuntime": 1000}}))
    procs = [p for p, v in fake.writes if p.endswith("cgroup.procs")]
    assert sorted(procs) == sorted(f"{h}/dy/c1/cgroup.procs" for h in (
        "cpu,cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd",
        "unified"))
    # cpuset: the parent gets its parent's cpus/mems, the container the spec's cpus.
    assert fake.content("cpuset/dy/cpuset.cpus") == "0-3"
    assert fake.content("cpuset/dy/c1/cpuset.cpus") == "1"
    assert fake.content("cpuset/dy/c1/cpuset.mems") == "0"
    # the rt budget is in place before the process joins
    rt = fake.events.index("write cpu,cpuacct/dy/c1/cpu.rt_runtime_us 1000")
    join = fake.events.index("write cpu,cpuacct/dy/c1/cgroup.procs 4242")
    assert rt < join
    # the unified tree: hugetlb enabled on the way down
    assert ("unified/cgroup.subtree_control", "+hugetlb") in fake.writes
    assert ("unified/dy/cgroup.subtree_control", "+hugetlb") in fake.writes
    assert mgr.pids() == [4242]
    assert mgr.exists()


def test_v1_apply_rolls_back_on_failure(hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    os.unlink(fake.root / "cpuset" / "cpuset.mems")     # the parent's mems cannot be read
    with pytest.raises(Unavailable, match="cpuset"):
        mgr.apply(1)
    assert not mgr.exists()
    assert not (fake.root / "memory" / "dy").exists()


def test_v1_set_writes(hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    mgr.apply(None)
    fake.writes.clear()
    mgr.set(parse_resources({
        "memory": {"limit": 104857600, "swap": 209715200, "reservation": 52428800,
                   "swappiness": 0, "disableOOMKiller": True, "kernel": 1},
        "cpu": {"shares": 512, "quota": 25000, "period": 50000, "burst": 1000, "idle": 1,
                "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 3},
        "blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 50}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 50}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 136, "access": "rw"}],
        "rdma": {"mlx5_0": {"hcaHandles": 1}},
    }))
    assert fake.writes == [
        ("cpuset/dy/c1/cpuset.cpus", "0-1"),
        ("cpuset/dy/c1/cpuset.mems", "0"),
        ("devices/dy/c1/devices.deny", "a"),
        ("devices/dy/c1/devices.allow", "c 1:3 rwm"),
        ("devices/dy/c1/devices.allow", "c 136:* rw"),
        # memory <= memory+swap must hold after every write: memsw is unlimited now,
        # so the limit goes first
        ("memory/dy/c1/memory.limit_in_bytes", "104857600"),
        ("memory/dy/c1/memory.memsw.limit_in_bytes", "209715200"),
        ("memory/dy/c1/memory.soft_limit_in_bytes", "52428800"),
        ("memory/dy/c1/memory.oom_control", "1"),
        ("memory/dy/c1/memory.swappiness", "0"),
        ("cpu,cpuacct/dy/c1/cpu.shares", "512"),
        ("cpu,cpuacct/dy/c1/cpu.cfs_period_us", "50000"),
        ("cpu,cpuacct/dy/c1/cpu.cfs_burst_us", "1000"),
        ("cpu,cpuacct/dy/c1/cpu.cfs_quota_us", "25000"),
        ("cpu,cpuacct/dy/c1/cpu.idle", "1"),
        ("pids/dy/c1/pids.max", "3"),
        ("blkio/dy/c1/blkio.bfq.weight", "300"),
        ("blkio/dy/c1/blkio.bfq.weight_device", "8:0 50"),
        ("blkio/dy/c1/blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio/dy/c1/blkio.throttle.write_iops_device", "8:16 50"),
        ("unified/dy/c1/hugetlb.2MB.max", "4194304"),
        ("unified/dy/c1/hugetlb.2MB.rsvd.max", "4194304"),
    ]


def test_v1_memory_write_order_keeps_limit_below_memsw(
        hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    mgr.apply(None)
    (fake.root / "memory/dy/c1/memory.limit_in_bytes").write_text("1000\n")
    fake.writes.clear()
    mgr.set(parse_resources({"memory": {"limit": 5000, "swap": 8000}}))   # growing
    assert fake.writes == [("memory/dy/c1/memory.memsw.limit_in_bytes", "8000"),
                           ("memory/dy/c1/memory.limit_in_bytes", "5000")]
    (fake.root / "memory/dy/c1/memory.limit_in_bytes").write_text("500000000\n")
    fake.writes.clear()
    mgr.set(parse_resources({"memory": {"limit": 1000, "swap": 2000}}))   # shrinking
    assert fake.writes == [("memory/dy/c1/memory.limit_in_bytes", "1000"),
                           ("memory/dy/c1/memory.memsw.limit_in_bytes", "2000")]
    fake.writes.clear()
    mgr.set(parse_resources({"memory": {"limit": -1}}))   # unlimited: memsw follows
    assert fake.writes == [("memory/dy/c1/memory.memsw.limit_in_bytes", "-1"),
                           ("memory/dy/c1/memory.limit_in_bytes", "-1")]


def test_v1_zero_is_a_value(hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    mgr.apply(None)
    fake.writes.clear()
    mgr.set(parse_resources({"cpu": {"idle": 0}, "memory": {"swappiness": 0}}))
    assert fake.writes == [("memory/dy/c1/memory.swappiness", "0"),
                           ("cpu,cpuacct/dy/c1/cpu.idle", "0")]


def test_v1_memory_check_before_update(hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    mgr.apply(None)
    with pytest.raises(FailedPrecondition, match="at or below current usage 4096000"):
        mgr.set(parse_resources({"memory": {"limit": 4000000, "checkBeforeUpdate": True}}))


def test_v1_partial_update_only_touches_given_fields(
        hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    mgr.apply(None)
    fake.writes.clear()
    mgr.set(parse_resources({"pids": {"limit": -1}, "cpu": {"quota": -1}, "memory": {}}))
    assert fake.writes == [("cpu,cpuacct/dy/c1/cpu.cfs_quota_us", "-1"),
                           ("pids/dy/c1/pids.max", "max")]


def test_v1_refusals(hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    mgr.apply(None)
    with pytest.raises(InvalidArgument, match="unified needs cgroup v2"):
        mgr.set(parse_resources({"unified": {"memory.high": "1"}}))
    with pytest.raises(Unavailable, match="net_cls cgroup controller is not mounted"):
        mgr.set(parse_resources({"network": {"classID": 5}}))
    with pytest.raises(Unavailable, match="hugepage size 16GB is not supported"):
        mgr.set(parse_resources({"hugepageLimits": [{"pageSize": "16GB", "limit": 1}]}))
    (fake.root / "cpu,cpuacct/dy/c1/cpu.shares").write_text("2\n")
    # the kernel clamps cpu.shares silently: read back and say so (runc does)
    fake.write = lambda path, data: None  # type: ignore[method-assign]
    with pytest.raises(InvalidArgument, match=r"cpu\.shares 1: the minimum allowed is 2"):
        mgr.set(parse_resources({"cpu": {"shares": 1}}))


def test_v1_missing_cgroup_is_not_found(hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    with pytest.raises(NotFound, match="does not exist"):
        mgr.set(parse_resources({"pids": {"limit": 5}}))
    with pytest.raises(NotFound):
        mgr.add_pid(1)
    assert mgr.pids() == []
    assert not mgr.exists()
    mgr.destroy()   # nothing to do


def test_v1_freezer_and_kill_all(hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    mgr.apply(11)
    mgr.add_pid(12)
    assert mgr.state() is FreezerState.THAWED
    mgr.freeze()
    assert fake.content("freezer/dy/c1/freezer.state") == "FROZEN"
    (fake.root / "freezer/dy/c1/freezer.self_freezing").write_text("1\n")
    assert mgr.state() is FreezerState.FROZEN
    mgr.thaw()
    (fake.root / "freezer/dy/c1/freezer.self_freezing").write_text("0\n")
    assert mgr.state() is FreezerState.THAWED
    fake.events.clear()
    mgr.kill_all(signal.SIGTERM)
    assert fake.events == ["write freezer/dy/c1/freezer.state FROZEN",
                           f"kill 11 {signal.SIGTERM}", f"kill 12 {signal.SIGTERM}",
                           "write freezer/dy/c1/freezer.state THAWED"]
    fake.events.clear()
    (fake.root / "unified/dy/c1/cgroup.kill").write_text("")
    mgr.kill_all(signal.SIGKILL)
    assert fake.events[0] == "write unified/dy/c1/cgroup.kill 1"
    assert f"kill 11 {signal.SIGKILL}" in fake.events


def test_v1_freeze_gives_up_and_thaws(hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    mgr.apply(None)
    real_write = fake.write

    def stuck(path: str, data: str) -> None:   # the kernel keeps saying FREEZING
        real_write(path, "FREEZING" if data == "FROZEN" else data)
    fake.write = stuck  # type: ignore[method-assign]
    with pytest.raises(Unavailable, match="did not freeze within"):
        mgr.freeze(timeout=0.05)
    assert fake.content("freezer/dy/c1/freezer.state") == "THAWED"


def test_v1_destroy(hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    mgr.apply(None)
    fake.mkdir(str(fake.root / "memory/dy/c1/sub"))     # a child cgroup goes first
    mgr.destroy()
    assert not mgr.exists()
    assert (fake.root / "memory/dy").is_dir()           # parents stay (as with runc)


def test_v1_destroy_busy_raises_ebusy(hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    mgr.apply(7)
    with pytest.raises(SyscallError) as info:
        mgr.destroy(timeout=0.01)       # a process is still in there: no kill asked
    assert info.value.errno == errno.EBUSY
    assert info.value.path is not None and info.value.path.endswith("/dy/c1")


def test_v1_stats(hybrid: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = hybrid
    mgr = _v1(fake, mounts)
    mgr.apply(None, parse_resources({"cpu": {"cpus": "2-3"}}))
    (fake.root / "pids/dy/c1/pids.current").write_text("2\n")
    (fake.root / "pids/dy/c1/pids.max").write_text("10\n")
    (fake.root / "unified/dy/c1/hugetlb.2MB.current").write_text("2097152\n")
    s = mgr.stats()
    assert s.cpu.usage.total == 5000000
    assert s.cpu.usage.percpu == [3000000, 2000000]
    assert s.cpu.usage.percpu_user == [2000000, 1500000]
    assert s.cpu.usage.percpu_kernel == [1000000, 500000]
    assert (s.cpu.usage.user, s.cpu.usage.kernel) == (300_000_000, 200_000_000)
    assert (s.cpu.throttling.periods, s.cpu.throttling.throttled_periods,
            s.cpu.throttling.throttled_time) == (10, 3, 4500)
    assert s.cpuset.cpus == [2, 3]
    assert s.memory.usage.usage == 4096000
    assert s.memory.usage.max == 8192000
    assert s.memory.usage.failcnt == 2
    assert s.memory.usage.limit == 9223372036854771712
    assert s.memory.cache == 1024
    assert s.memory.raw["rss"] == 4000000
    assert (s.pids.current, s.pids.limit) == (2, 10)
    assert [(e.op, e.value) for e in s.blkio.io_service_bytes_recursive] == [
        ("Read", 4096), ("Write", 8192), ("Total", 12288)]
    assert s.hugetlb["2MB"].usage == 2097152
    assert s.hugetlb["2MB"].failcnt == 4
    assert set(s.hugetlb) == {"1GB", "2MB"}


# --- a pure v2 host ----------------------------------------------------------------------------

@pytest.fixture
def v2host(tmp_path: Path) -> tuple[FakeFs, list[CgroupMount]]:
    root = tmp_path / "cg2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    (root / "cgroup.subtree_control").write_text("\n")
    (root / "cgroup.procs").write_text("1\n")
    return FakeFs(tmp_path, {str(root): "v2"}), [CgroupMount(str(root), "cgroup2", "")]


def _v2(fake: FakeFs, mounts: list[CgroupMount], path: str = "/pod/c1") -> V2Manager:
    mgr = manager_for(path, "c1", hierarchies=mounts, fs=fake)
    assert isinstance(mgr, V2Manager)
    return mgr


def test_v2_apply_enables_controllers_down_the_path(
        v2host: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = v2host
    mgr = _v2(fake, mounts)
    mgr.apply(99)
    everything = "+cpuset +cpu +io +memory +hugetlb +pids"
    assert fake.writes == [("cg2/cgroup.subtree_control", everything),
                           ("cg2/pod/cgroup.subtree_control", everything),
                           ("cg2/pod/c1/cgroup.procs", "99")]
    assert mgr.pids() == [99]
    assert mgr.paths == {"": str(fake.root / "cg2/pod/c1")}


def test_v2_enable_falls_back_to_one_by_one(v2host: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = v2host
    real_write = fake.write

    def picky(path: str, data: str) -> None:   # the kernel refuses io here
        if path.endswith("subtree_control") and "+io" in data:
            raise SyscallError("write", errno.ENOENT, path)
        real_write(path, data)
    fake.write = picky  # type: ignore[method-assign]
    mgr = _v2(fake, mounts, "/c1")
    mgr.apply(None)
    assert fake.content("cg2/cgroup.subtree_control") == "cpuset cpu memory hugetlb pids"
    with pytest.raises(Unavailable, match="controller 'io' is not available"):
        mgr.set(parse_resources({"blockIO": {"weight": 100}}))


def test_v2_set_writes(v2host: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = v2host
    mgr = _v2(fake, mounts)
    mgr.apply(None)
    fake.writes.clear()
    mgr.set(parse_resources({
        "memory": {"limit": 104857600, "swap": 209715200, "reservation": 52428800,
                   "swappiness": 10},
        "cpu": {"shares": 1024, "quota": 25000, "period": 50000, "burst": 1000, "idle": 0,
                "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 0},
        "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 10}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}]},
        "hugepageLimits": [{"pageSize": "1GB", "limit": 0}],
        "devices": [{"allow": False, "access": "rwm"}],
        "unified": {"memory.high": "99999999", "pids.max": "7"},
    }))
    assert fake.writes == [
        ("cg2/pod/c1/pids.max", "1"),
        ("cg2/pod/c1/memory.swap.max", "104857600"),     # swap alone = memory+swap - memory
        ("cg2/pod/c1/memory.max", "104857600"),
        ("cg2/pod/c1/memory.low", "52428800"),
        ("cg2/pod/c1/io.weight", "4950"),
        ("cg2/pod/c1/io.weight", "8:0 1"),
        ("cg2/pod/c1/io.max", "8:0 rbps=1048576"),
        ("cg2/pod/c1/io.max", "8:16 wiops=max"),
        ("cg2/pod/c1/cpu.idle", "0"),
        ("cg2/pod/c1/cpu.weight", "39"),
        ("cg2/pod/c1/cpu.max.burst", "1000"),
        ("cg2/pod/c1/cpu.max", "25000 50000"),
        ("cg2/pod/c1/cpuset.cpus", "0-1"),
        ("cg2/pod/c1/cpuset.mems", "0"),
        ("cg2/pod/c1/hugetlb.1GB.max", "0"),
        ("cg2/pod/c1/hugetlb.1GB.rsvd.max", "0"),
        ("cg2/pod/c1/memory.high", "99999999"),           # unified last: it wins
        ("cg2/pod/c1/pids.max", "7"),
    ]
    assert [p for p, _ in fake.programs] == ["cg2/pod/c1"]
    # The device filter goes in after io/cpu and before cpuset, as runc orders it.
    assert fake.events.index("attach cg2/pod/c1") < fake.events.index(
        "write cg2/pod/c1/cpuset.cpus 0-1")


def test_v2_partial_updates_keep_what_is_not_given(
        v2host: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = v2host
    mgr = _v2(fake, mounts)
    mgr.apply(None)
    (fake.root / "cg2/pod/c1/cpu.max").write_text("30000 100000\n")
    (fake.root / "cg2/pod/c1/memory.max").write_text("1000\n")
    fake.writes.clear()
    mgr.set(parse_resources({"cpu": {"period": 200000}}))
    mgr.set(parse_resources({"cpu": {"quota": -1}}))
    mgr.set(parse_resources({"memory": {"swap": 3000}}))       # against the current limit
    mgr.set(parse_resources({"memory": {"limit": -1}}))        # unlimited: swap follows
    assert fake.writes == [("cg2/pod/c1/cpu.max", "30000 200000"),
                           ("cg2/pod/c1/cpu.max", "max 200000"),
                           ("cg2/pod/c1/memory.swap.max", "2000"),
                           ("cg2/pod/c1/memory.swap.max", "max"),
                           ("cg2/pod/c1/memory.max", "max")]


def test_v2_refusals(v2host: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = v2host
    mgr = _v2(fake, mounts)
    mgr.apply(None)
    with pytest.raises(Unavailable, match="real-time group scheduling does not exist"):
        mgr.set(parse_resources({"cpu": {"realtimeRuntime": 100}}))
    with pytest.raises(Unavailable, match="net_cls/net_prio"):
        mgr.set(parse_resources({"network": {"classID": 1}}))
    with pytest.raises(Unavailable, match="hugepage size 64KB is not supported here"):
        mgr.set(parse_resources({"hugepageLimits": [{"pageSize": "64KB", "limit": 1}]}))
    with pytest.raises(Unavailable, match="controller 'misc' is not available"):
        mgr.set(parse_resources({"unified": {"misc.max": "x 1"}}))
    os.unlink(fake.root / "cg2/pod/c1/memory.max")     # no limit to subtract swap from
    with pytest.raises(InvalidArgument, match="swap cannot be set on cgroup v2 without"):
        mgr.set(parse_resources({"memory": {"swap": 100}}))
    with pytest.raises(InvalidArgument, match="no device has number"):
        mgr.set(parse_resources({"devices": [{"allow": True, "type": "c",
                                              "major": 2**31}]}))


def test_v2_freezer_and_kill_all(v2host: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = v2host
    mgr = _v2(fake, mounts)
    mgr.apply(5)
    child = str(fake.root / "cg2/pod/c1/sub")
    fake.mkdir(child)
    fake.write(child + "/cgroup.procs", "6")
    assert mgr.pids() == [5, 6]
    assert mgr.state() is FreezerState.THAWED
    mgr.freeze()
    assert mgr.state() is FreezerState.FROZEN
    mgr.thaw()
    assert mgr.state() is FreezerState.THAWED
    fake.events.clear()
    mgr.kill_all(signal.SIGKILL)
    assert fake.events == ["write cg2/pod/c1/cgroup.kill 1"]
    fake.events.clear()
    mgr.kill_all(signal.SIGHUP)
    assert fake.events == ["write cg2/pod/c1/cgroup.freeze 1", f"kill 5 {signal.SIGHUP}",
                           f"kill 6 {signal.SIGHUP}", "write cg2/pod/c1/cgroup.freeze 0"]
    # Without cgroup.kill (kernel < 5.14) SIGKILL goes pid by pid, frozen.
    os.unlink(fake.root / "cg2/pod/c1/cgroup.kill")
    fake.events.clear()
    mgr.kill_all(signal.SIGKILL)
    assert fake.events[0] == "write cg2/pod/c1/cgroup.freeze 1"
    assert f"kill 6 {signal.SIGKILL}" in fake.events


def test_v2_destroy_kill_waits_then_removes(v2host: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = v2host
    mgr = _v2(fake, mounts)
    mgr.apply(5)
    real_write = fake.write

    def killing(path: str, data: str) -> None:   # cgroup.kill empties the cgroup
        real_write(path, data)
        if path.endswith("cgroup.kill"):
            Path(path).with_name("cgroup.procs").write_text("")
    fake.write = killing  # type: ignore[method-assign]
    mgr.destroy(kill=True)
    assert not mgr.exists()
    assert (fake.root / "cg2/pod").is_dir()


def test_v2_stats(v2host: tuple[FakeFs, list[CgroupMount]]) -> None:
    fake, mounts = v2host
    mgr = _v2(fake, mounts)
    mgr.apply(None)
    (fake.root / "cg2/pod/c1/memory.max").write_text("1048576\n")
    (fake.root / "cg2/pod/c1/hugetlb.2MB.events").write_text("max 1\n")
    s = mgr.stats()
    assert (s.cpu.usage.total, s.cpu.usage.user, s.cpu.usage.kernel) == (1500000, 1000000,
                                                                         500000)
    assert s.memory.usage.usage == 4096
    assert s.memory.usage.limit == 1048576
    assert s.memory.usage.max == 8192
    assert s.memory.usage.failcnt == 3
    assert s.memory.cache == 1024
    assert s.memory.swap.usage == 4096              # memory + swap, as v1 reports it
    assert s.pids.current == 2
    assert s.pids.limit == 0
    assert [(e.major, e.minor, e.op, e.value) for e in s.blkio.io_service_bytes_recursive] == [
        (8, 0, "Read", 4096), (8, 0, "Write", 8192)]
    assert [e.value for e in s.blkio.io_serviced_recursive] == [1, 2]
    assert s.cpuset.cpus == [0, 1, 2, 3]
    assert s.hugetlb["2MB"].failcnt == 1


def test_v2_stats_without_controllers(tmp_path: Path) -> None:
    """Only hugetlb enabled (this host's unified tree): cpu.stat and a count of procs."""
    root = tmp_path / "cg2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("hugetlb\n")
    (root / "cgroup.subtree_control").write_text("\n")
    fake = FakeFs(tmp_path, {str(root): "v2"})
    mgr = _v2(fake, [CgroupMount(str(root), "cgroup2", "")], "/c1")
    mgr.apply(31)
    s = mgr.stats()
    assert s.pids.current == 1
    assert s.cpu.usage.total == 1500000
    assert s.memory.usage.usage == 0
    assert set(s.hugetlb) == {"1GB", "2MB"}


# --- the runc JSON shape -------------------------------------------------------------------

def test_to_runc_shape_and_omitempty() -> None:
    empty = Stats().to_runc()
    assert empty == {"cpu": {}, "cpuset": {"cpu_exclusive": 0, "mem_hardwall": 0,
                                           "mem_exclusive": 0, "memory_migrate": 0,
                                           "memory_spread_page": 0, "memory_spread_slab": 0,
                                           "memory_pressure": 0, "sched_load_balance": 0,
                                           "sched_relax_domain_level": 0},
                     "memory": {}, "pids": {}, "blkio": {}, "hugetlb": {}, "intel_rdt": {},
                     "network_interfaces": None}
    s = Stats()
    s.cpu.usage.total = 10
    s.memory.usage.limit = 100
    s.pids.current = 3
    from dockyard.cgroups.stats import BlkioEntry, HugetlbStats
    s.blkio.io_service_bytes_recursive = [BlkioEntry(8, 0, "Read", 0)]
    s.hugetlb["2MB"] = HugetlbStats()
    out = json.loads(json.dumps(s.to_runc()))
    assert out["cpu"] == {"usage": {"total": 10, "kernel": 0, "user": 0}}
    assert out["memory"] == {"usage": {"limit": 100, "failcnt": 0}}
    assert out["pids"] == {"current": 3}
    assert out["blkio"] == {"ioServiceBytesRecursive": [{"major": 8, "op": "Read"}]}
    assert out["hugetlb"] == {"2MB": {"failcnt": 0}}


# --- device rules: v1 writes, and the eBPF program against the reference -------------------

def test_v1_device_writes() -> None:
    rules = (DeviceRule(True, "c", 1, 3, "r"), DeviceRule(False, "a"),
             DeviceRule(True, "c", 1, 5, "rwm"), DeviceRule(False, "c", 1, 5, "w"))
    assert v1_writes(rules) == [("devices.deny", "a"), ("devices.allow", "c 1:5 rwm"),
                                ("devices.deny", "c 1:5 w")]
    assert v1_writes(()) == [("devices.allow", "a")]
    assert v1_writes((DeviceRule(False, "b", 8, None, "m"),)) == [
        ("devices.allow", "a"), ("devices.deny", "b 8:* m")]
    assert normalize((DeviceRule(True, "a", 1, 1, "r"),)).default_allow is True


def test_reference_semantics() -> None:
    rules = (DeviceRule(False, "a"), DeviceRule(True, "c", 1, 3, "rwm"),
             DeviceRule(False, "c", 1, 3, "w"), DeviceRule(True, "c", 136, None, "rw"))
    assert allows(rules, "c", 1, 3, "r")
    assert not allows(rules, "c", 1, 3, "rw")      # w was taken back
    assert allows(rules, "c", 1, 3, "m")
    assert allows(rules, "c", 136, 7, "rw")
    assert not allows(rules, "c", 136, 7, "m")
    assert not allows(rules, "b", 1, 3, "r")
    assert allows((), "b", 8, 0, "rwm")             # no rules: allow all
    # bits may come from different rules
    split = (DeviceRule(False, "a"), DeviceRule(True, "c", 1, 3, "r"),
             DeviceRule(True, "c", 1, 3, "w"))
    assert allows(split, "c", 1, 3, "rw")


def run_program(program: bytes, dev_type: int, access: int, major: int, minor: int) -> int:
    """Interpret the subset of eBPF the device filter uses (64-bit regs, 32-bit ALU)."""
    assert len(program) % 8 == 0
    insns = [struct.unpack("=BBhi", program[i:i + 8]) for i in range(0, len(program), 8)]
    ctx = (access << 16 | dev_type, major, minor)
    regs = [0] * 11
    pc = 0
    mask32 = 0xFFFFFFFF
    steps = 0
    while True:
        steps += 1
        assert steps < 10000 and 0 <= pc < len(insns)
        op, r, off, imm = insns[pc]
        dst, src = r & 0xF, r >> 4
        pc += 1
        if op == v2devices.LDXW:
            assert src == 1 and off in (0, 4, 8)
            regs[dst] = ctx[off // 4]
        elif op == v2devices.AND32_K:
            regs[dst] = (regs[dst] & imm) & mask32
        elif op == v2devices.RSH32_K:
            regs[dst] = (regs[dst] & mask32) >> imm
        elif op == v2devices.MOV32_K:
            regs[dst] = imm & mask32
        elif op == v2devices.MOV32_X:
            regs[dst] = regs[src] & mask32
        elif op == v2devices.JNE_K:
            if regs[dst] != imm:
                pc += off
        elif op == v2devices.JEQ_K:
            if regs[dst] == imm:
                pc += off
        elif op == v2devices.EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")


_rule = st.builds(DeviceRule, allow=st.booleans(), type=st.sampled_from("abc"),
                  major=st.one_of(st.none(), st.integers(1, 3)),
                  minor=st.one_of(st.none(), st.integers(1, 3)),
                  access=st.sampled_from(["r", "w", "m", "rw", "rm", "wm", "rwm"]))


@settings(max_examples=300, deadline=None)
@given(rules=st.lists(_rule, max_size=6), dev_type=st.sampled_from("bc"),
       major=st.integers(1, 4), minor=st.integers(1, 4),
       access=st.sampled_from(["r", "w", "m", "rw", "rwm", "wm"]))
def test_bpf_program_matches_reference(rules: list[DeviceRule], dev_type: str, major: int,
                                       minor: int, access: str) -> None:
    program = v2devices.device_filter(rules)
    from dockyard.cgroups.devices import TYPE_CODES, access_mask
    got = run_program(program, TYPE_CODES[dev_type], access_mask(access), major, minor)
    assert got == int(allows(rules, dev_type, major, minor, access))


def test_bpf_program_shape() -> None:
    # Always starts by loading the context and ends with the default verdict.
    deny_all = v2devices.device_filter([DeviceRule(False, "a")])
    assert len(deny_all) == 9 * 8
    assert struct.unpack("=BBhi", deny_all[-16:-8]) == (v2devices.MOV32_K, 0, 0, 0)
    allow_all = v2devices.device_filter([])
    assert struct.unpack("=BBhi", allow_all[-16:-8]) == (v2devices.MOV32_K, 0, 0, 1)


def test_fake_is_clean(tmp_path: Path) -> None:
    """The fake itself: writes to missing files fail as on cgroupfs."""
    fake = FakeFs(tmp_path, {str(tmp_path): "v2"})
    with pytest.raises(SyscallError) as info:
        fake.write(str(tmp_path / "nope"), "1")
    assert info.value.errno == errno.ENOENT
    assert not (tmp_path / "nope").exists()


def test_runc_default_devices_on_top_of_deny_all() -> None:
    from dockyard.cgroups.devices import RUNC_DEFAULT_ALLOWED
    rules = (DeviceRule(False, "a"), *RUNC_DEFAULT_ALLOWED)
    program = v2devices.device_filter(rules)
    cases = [("c", 1, 3, "rw", True), ("c", 1, 9, "r", True), ("c", 136, 4, "rw", True),
             ("b", 8, 0, "r", False), ("b", 8, 0, "m", True), ("c", 4, 1, "rw", False),
             ("c", 10, 200, "rwm", True), ("c", 10, 229, "r", False)]
    from dockyard.cgroups.devices import TYPE_CODES, access_mask
    for dev_type, major, minor, access, ok in cases:
        assert allows(rules, dev_type, major, minor, access) is ok
        assert run_program(program, TYPE_CODES[dev_type], access_mask(access), major,
                           minor) == int(ok)


def test_kernel_fs_errors_carry_the_path(tmp_path: Path) -> None:
    from dockyard.cgroups.fs import KERNEL, read_knob, remove_tree, write_knob
    missing = str(tmp_path / "nope" / "memory.max")
    with pytest.raises(SyscallError) as info:
        KERNEL.write(missing, "1")
    assert (info.value.errno, info.value.path) == (errno.ENOENT, missing)
    assert missing in str(info.value)
    with pytest.raises(NotFound, match="does not exist"):
        write_knob(KERNEL, str(tmp_path / "nope"), "memory.max", "1", controller="memory")
    with pytest.raises(Unavailable, match="controller 'memory' is not available"):
        read_knob(KERNEL, str(tmp_path), "memory.max", controller="memory")
    assert KERNEL.mkdir(str(tmp_path / "d")) is True
    assert KERNEL.mkdir(str(tmp_path / "d")) is False
    KERNEL.mkdir(str(tmp_path / "d" / "e"))
    remove_tree(KERNEL, str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()
    assert KERNEL.kill(2**22 + 12345, 0) is False   # no such process


def test_is_frozen_does_not_hang_on_freezing(tmp_path: Path) -> None:
    """A v1 cgroup that stays FREEZING (its processes keep forking) must not hang a caller."""
    import time

    from dockyard.cgroups.fs import KERNEL
    from dockyard.cgroups.v1 import freezer

    (tmp_path / "freezer.state").write_text("FREEZING\n")
    (tmp_path / "freezer.self_freezing").write_text("1\n")
    start = time.monotonic()
    assert freezer.is_frozen(KERNEL, str(tmp_path), settle=0.2) is True
    assert time.monotonic() - start < 2
