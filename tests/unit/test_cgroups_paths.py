"""cgroupsPath resolution, mountinfo -> layout, and which manager the factory picks."""

from __future__ import annotations

import pytest

from dockyard.cgroups import CgroupMode, manager_for, manager_from_paths
from dockyard.cgroups.layout import CgroupMount, cgroup_mounts, detect_layout
from dockyard.cgroups.paths import (
    clean_path,
    inner_path,
    parse_proc_cgroup,
    v1_dir,
    v2_dir,
)
from dockyard.cgroups.v1 import V1Manager
from dockyard.cgroups.v2 import V2Manager
from dockyard.errors import InvalidArgument, Unavailable
from dockyard.linux.cgroupfs import Hierarchy, host_hierarchies

HYBRID_MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_PROC_CGROUP = """\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/abc
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""
V2_MOUNTINFO = ("30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - "
                "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n")
LEGACY_MOUNTINFO = """\
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory,clone_children
27 24 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
"""


@pytest.mark.parametrize(("raw", "clean"), [
    ("", ""), ("/", "/"), ("/a/b", "/a/b"), ("/a//b/", "/a/b"), ("/../../x", "/x"),
    ("/a/./b/../c", "/a/c"), ("a/b", "a/b"), ("../../../etc", "etc"), ("a/../..", ""),
])
def test_clean_path(raw: str, clean: str) -> None:
    assert clean_path(raw) == clean


def test_inner_path_rules() -> None:
    assert inner_path(None, "ctr1") == "ctr1"            # runc: Name = id, relative
    assert inner_path("", "ctr1") == "ctr1"
    assert inner_path("/machine/ctr1", "x") == "/machine/ctr1"
    assert inner_path("/../../machine/../ctr", "x") == "/ctr"
    assert inner_path("pod/../../ctr", "x") == "ctr"
    with pytest.raises(InvalidArgument, match="names the root cgroup"):
        inner_path("/", "x")
    with pytest.raises(InvalidArgument, match="names the root cgroup"):
        inner_path("..", "x")
    with pytest.raises(InvalidArgument, match="cannot name a cgroup"):
        inner_path(None, "a/b")


def test_systemd_paths_are_refused_clearly() -> None:
    with pytest.raises(Unavailable, match="systemd cgroup driver not available: no systemd"):
        inner_path("system.slice:docker:abc", "abc")
    with pytest.raises(Unavailable, match="systemd cgroup driver not available"):
        inner_path("/machine/abc", "abc", systemd=True)
    with pytest.raises(Unavailable, match="systemd cgroup driver not available"):
        manager_for(":runc:abc", "abc", hierarchies=cgroup_mounts(V2_MOUNTINFO))


def test_parse_proc_cgroup() -> None:
    own = parse_proc_cgroup(HYBRID_PROC_CGROUP + "10:cpu,cpuacct:/x\n")
    assert own["memory"] == "/process_api/abc"
    assert own[""] == "/"
    assert own["name=systemd"] == "/"
    assert own["cpuacct"] == "/x"


def test_cgroup_mounts_hybrid() -> None:
    mounts = cgroup_mounts(HYBRID_MOUNTINFO)
    assert len(mounts) == 10
    assert mounts[0] == CgroupMount("/sys/fs/cgroup/cpu", "cgroup", "cpu", "/")
    assert mounts[8].options == "name=systemd"
    assert mounts[9] == CgroupMount("/sys/fs/cgroup/unified", "cgroup2", "", "/")
    layout = detect_layout(mounts)
    assert layout.mode is CgroupMode.HYBRID
    assert sorted(layout.v1) == sorted(["cpu", "cpuacct", "cpuset", "memory", "devices",
                                        "freezer", "blkio", "pids", "name=systemd"])


def test_cgroup_mounts_escapes_roots_and_options() -> None:
    text = (r"40 31 0:37 /docker/abc /sys/fs/cgroup/my\040mem rw - cgroup cgroup "
            "rw,memory,clone_children,noprefix\n")
    (m,) = cgroup_mounts(text)
    assert m.mountpoint == "/sys/fs/cgroup/my mem"
    assert m.root == "/docker/abc"
    assert m.controllers == ("memory",)


def test_layout_modes() -> None:
    assert detect_layout(cgroup_mounts(V2_MOUNTINFO)).mode is CgroupMode.V2
    legacy = detect_layout(cgroup_mounts(LEGACY_MOUNTINFO))
    assert legacy.mode is CgroupMode.V1
    assert legacy.v1["cpu"] is legacy.v1["cpuacct"]          # co-mounted
    assert set(legacy.v1) == {"cpu", "cpuacct", "memory", "name=systemd"}


def test_layout_from_linux_cgroupfs_hierarchies() -> None:
    layout = detect_layout(host_hierarchies(HYBRID_MOUNTINFO))
    assert layout.mode is CgroupMode.HYBRID
    assert layout.v1["memory"].root == "/"
    assert layout.unified is not None and layout.unified.mountpoint == "/sys/fs/cgroup/unified"


def test_dirs_absolute_and_relative() -> None:
    mem = CgroupMount("/sys/fs/cgroup/memory", "cgroup", "memory")
    own = parse_proc_cgroup(HYBRID_PROC_CGROUP)
    assert v1_dir(mem, "memory", "/a/b", own) == "/sys/fs/cgroup/memory/a/b"
    assert v1_dir(mem, "memory", "ctr", own) == "/sys/fs/cgroup/memory/process_api/abc/ctr"
    # A mount of a subtree (a container without cgroupns): own path is taken below its root.
    sub = CgroupMount("/sys/fs/cgroup/memory", "cgroup", "memory", root="/process_api")
    assert v1_dir(sub, "memory", "ctr", own) == "/sys/fs/cgroup/memory/abc/ctr"
    u = CgroupMount("/sys/fs/cgroup", "cgroup2", "")
    in_scope = {"": "/user.slice/session-1.scope"}
    # Pure v2: relative to the *parent* of our own cgroup (ours holds processes).
    assert v2_dir(u, "ctr", in_scope, pure=True) == "/sys/fs/cgroup/user.slice/ctr"
    assert v2_dir(u, "ctr", {"": "/"}, pure=True) == "/sys/fs/cgroup/ctr"
    assert v2_dir(u, "/a/ctr", in_scope, pure=True) == "/sys/fs/cgroup/a/ctr"
    assert (v2_dir(u, "ctr", in_scope, pure=False)
            == "/sys/fs/cgroup/user.slice/session-1.scope/ctr")


def test_manager_for_hybrid() -> None:
    mgr = manager_for("/dockyard/c1", "c1", hierarchies=cgroup_mounts(HYBRID_MOUNTINFO))
    assert isinstance(mgr, V1Manager)
    assert mgr.version == 1
    assert mgr.paths["memory"] == "/sys/fs/cgroup/memory/dockyard/c1"
    assert mgr.paths["name=systemd"] == "/sys/fs/cgroup/systemd/dockyard/c1"
    assert mgr.paths[""] == "/sys/fs/cgroup/unified/dockyard/c1"
    assert mgr.path == "/sys/fs/cgroup/pids/dockyard/c1"


def test_manager_for_default_path_is_the_id_below_own_cgroup() -> None:
    mgr = manager_for(None, "c1", hierarchies=cgroup_mounts(HYBRID_MOUNTINFO),
                      own_cgroup=HYBRID_PROC_CGROUP)
    assert mgr.paths["memory"] == "/sys/fs/cgroup/memory/process_api/abc/c1"
    assert mgr.paths["pids"] == "/sys/fs/cgroup/pids/c1"
    assert mgr.paths[""] == "/sys/fs/cgroup/unified/c1"


def test_manager_for_pure_v2() -> None:
    mgr = manager_for("pod/c1", "c1", hierarchies=cgroup_mounts(V2_MOUNTINFO),
                      own_cgroup="0::/system.slice/runtime.service\n")
    assert isinstance(mgr, V2Manager)
    assert mgr.version == 2
    assert mgr.path == "/sys/fs/cgroup/system.slice/pod/c1"
    assert mgr.paths == {"": "/sys/fs/cgroup/system.slice/pod/c1"}


def test_manager_for_needs_a_hierarchy() -> None:
    with pytest.raises(Unavailable, match="no cgroup hierarchy is mounted"):
        manager_for("/x", "x", hierarchies=[])
    with pytest.raises(Unavailable, match="no cgroup hierarchy"):
        manager_for("/x", "x", hierarchies=[Hierarchy("/proc", "proc", "")])


def test_manager_from_paths_round_trip() -> None:
    for text in (HYBRID_MOUNTINFO, V2_MOUNTINFO, LEGACY_MOUNTINFO):
        mounts = cgroup_mounts(text)
        mgr = manager_for("/a/b", "b", hierarchies=mounts)
        again = manager_from_paths(mgr.paths, hierarchies=mounts)
        assert type(again) is type(mgr)
        assert again.paths == mgr.paths
        assert again.path == mgr.path
    v1 = manager_from_paths({"memory": "/sys/fs/cgroup/memory/x", "": "/sys/fs/cgroup/unified/x"},
                            hierarchies=cgroup_mounts(HYBRID_MOUNTINFO))
    assert isinstance(v1, V1Manager)
    assert v1.mountpoints == {"memory": "/sys/fs/cgroup/memory", "": "/sys/fs/cgroup/unified"}
    with pytest.raises(InvalidArgument):
        manager_from_paths({}, hierarchies=cgroup_mounts(V2_MOUNTINFO))
