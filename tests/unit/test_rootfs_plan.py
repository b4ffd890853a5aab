"""Rootfs decisions without a kernel: mount options, secure joins, the plan for a spec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.errors import InvalidArgument
from dockyard.linux import libc as k
from dockyard.linux.cgroupfs import Hierarchy, host_hierarchies, is_pure_v2, own_cgroup_dir
from dockyard.linux.paths import secure_join
from dockyard.model.oci import parse_spec
from dockyard.runtime import rootfs
from dockyard.runtime.mountopts import parse_options
from dockyard.runtime.specgen import default_spec

HYBRID = (
    Hierarchy("/sys/fs/cgroup/memory", "cgroup", "memory"),
    Hierarchy("/sys/fs/cgroup/unified", "cgroup2", ""),
)
PURE_V2 = (Hierarchy("/sys/fs/cgroup", "cgroup2", ""),)


def test_options_to_flags_and_data() -> None:
    o = parse_options(("nosuid", "noexec", "nodev", "ro", "mode=1777", "size=64k", "rprivate"))
    assert o.flags == k.MS_NOSUID | k.MS_NOEXEC | k.MS_NODEV | k.MS_RDONLY
    assert o.data == "mode=1777,size=64k"
    assert o.propagation == (k.MS_PRIVATE | k.MS_REC,)
    assert parse_options(("ro", "rw")).flags == 0
    assert parse_options(("rbind",)).flags == k.MS_BIND | k.MS_REC


def test_secure_join_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../etc", root / "rel")
    os.symlink("loop", root / "loop")
    assert secure_join(str(root), "/abs/passwd") == str(root / "etc/passwd")
    assert secure_join(str(root), "rel/passwd") == str(root / "etc/passwd")
    assert secure_join(str(root), "../../x") == str(root / "x")
    with pytest.raises(Exception, match="ELOOP"):
        secure_join(str(root), "loop/x")


@given(st.lists(st.sampled_from(["..", ".", "a", "b", "abs", "rel", ""]), max_size=12))
def test_secure_join_never_escapes(parts: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "a").mkdir()
        os.symlink("/", root / "abs")
        os.symlink("../../..", root / "a" / "rel")
        joined = secure_join(str(root), "/".join(parts))
        assert joined == str(root) or joined.startswith(str(root) + "/")


def test_plan_default_spec_on_hybrid_host() -> None:
    steps = rootfs.plan(parse_spec(default_spec()), HYBRID)
    mounts = [s for s in steps if isinstance(s, rootfs.MountStep)]
    dests = [m.destination for m in mounts]
    assert dests[:6] == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
    # v1/hybrid: a tmpfs, one mount per hierarchy, then the tmpfs made read-only
    assert dests[6:] == [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    ]
    assert mounts[7].fstype == "cgroup" and mounts[7].data == "memory"
    assert mounts[8].fstype == "cgroup2"
    assert all(m.flags & k.MS_RDONLY for m in mounts[7:])
    devices = [s.path for s in steps if isinstance(s, rootfs.DeviceStep)]
    assert devices == [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
    ]
    links = {s.path: s.target for s in steps if isinstance(s, rootfs.SymlinkStep)}
    assert links["/dev/ptmx"] == "pts/ptmx"
    assert links["/dev/fd"] == "/proc/self/fd"


def test_plan_without_cgroup_namespace_binds_the_containers_own_cgroups() -> None:
    # docker's default on cgroup v1: no cgroup namespace; a fresh mount would show the host's
    config = default_spec()
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"]
                                     if n["type"] != "cgroup"]
    steps = rootfs.plan(parse_spec(config), HYBRID)
    cg = [s for s in steps if isinstance(s, rootfs.MountStep)
          and s.destination.startswith("/sys/fs/cgroup/")]
    assert [(s.destination, s.bind, s.own_cgroup) for s in cg] == [
        ("/sys/fs/cgroup/memory", True, HYBRID[0]),
        ("/sys/fs/cgroup/unified", True, HYBRID[1]),
    ]
    assert all(s.flags & k.MS_RDONLY for s in cg)


def test_own_cgroup_dir() -> None:
    text = ("12:cpu,cpuacct:/docker/abc\n4:memory:/outer/inner/abc\n"
            "1:name=systemd:/sys\n0::/unified/abc\n")
    cpu = Hierarchy("/sys/fs/cgroup/cpu,cpuacct", "cgroup", "cpuacct,cpu")
    assert own_cgroup_dir(cpu, text) == "/sys/fs/cgroup/cpu,cpuacct/docker/abc"
    # a mount of a subtree (as in a container): paths are relative to its root
    mem = Hierarchy("/sys/fs/cgroup/memory", "cgroup", "memory", root="/outer")
    assert own_cgroup_dir(mem, text) == "/sys/fs/cgroup/memory/inner/abc"
    unified = Hierarchy("/sys/fs/cgroup/unified", "cgroup2", "")
    assert own_cgroup_dir(unified, text) == "/sys/fs/cgroup/unified/unified/abc"
    named = Hierarchy("/sys/fs/cgroup/systemd", "cgroup", "name=systemd", root="/other")
    assert own_cgroup_dir(named, text) == "/sys/fs/cgroup/systemd"   # not inside: the mount
    pids = Hierarchy("/sys/fs/cgroup/pids", "cgroup", "pids")
    assert own_cgroup_dir(pids, text) == "/sys/fs/cgroup/pids"       # not listed: the mount


def test_plan_on_pure_v2_host_mounts_cgroup2() -> None:
    steps = rootfs.plan(parse_spec(default_spec()), PURE_V2)
    cg = [s for s in steps if isinstance(s, rootfs.MountStep) and s.destination == "/sys/fs/cgroup"]
    assert len(cg) == 1
    assert cg[0].fstype == "cgroup2"
    assert cg[0].flags & k.MS_RDONLY


def test_bind_dev_gets_no_default_devices() -> None:
    config = default_spec()
    config["mounts"] = [
        {"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]}
    ]
    steps = rootfs.plan(parse_spec(config), HYBRID)
    assert not [s for s in steps if isinstance(s, rootfs.DeviceStep)]
    assert steps[0] == rootfs.MountStep("/dev", "/dev", None, k.MS_BIND | k.MS_REC, "", bind=True)


def test_bind_without_source_is_refused() -> None:
    config = default_spec()
    config["mounts"] = [{"destination": "/x", "type": "bind", "options": ["bind"]}]
    with pytest.raises(InvalidArgument, match="needs a source"):
        rootfs.plan(parse_spec(config), HYBRID)


def test_host_hierarchies_parses_mountinfo() -> None:
    info = (
        "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
        "31 25 0:27 /sub /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        "32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n"
        "33 25 0:29 / /proc rw - proc proc rw\n"
    )
    hs = host_hierarchies(info)
    assert hs == (
        Hierarchy("/sys/fs/cgroup/memory", "cgroup", "memory"),
        Hierarchy("/sys/fs/cgroup/systemd", "cgroup", "name=systemd", root="/sub"),
        Hierarchy("/sys/fs/cgroup/unified", "cgroup2", "nsdelegate"),
    )
    assert not is_pure_v2(hs)
    assert is_pure_v2(PURE_V2)


def _applied(steps: tuple[rootfs.Step, ...], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The order apply() runs the steps and calls ``before_cgroup`` in (no kernel)."""
    seen: list[str] = []
    monkeypatch.setattr(rootfs, "_apply_mount", lambda _r, s, _c=None: seen.append(s.destination))
    monkeypatch.setattr(rootfs, "_apply_device", lambda _r, d: seen.append(d.path))
    monkeypatch.setattr(rootfs, "_apply_symlink", lambda _r, s: seen.append(s.path))
    rootfs.apply("/rootfs", steps, lambda: seen.append("JOIN"))
    return seen


@pytest.mark.parametrize("cgroupns", [True, False])
def test_apply_joins_the_cgroup_right_before_the_first_cgroup_mount(
        cgroupns: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # with a cgroup namespace: a fresh cgroup mount (rooted at the namespace); without: a bind
    # of the container's own cgroup, found from /proc/self/cgroup. Either needs the init in it.
    config = default_spec()
    if not cgroupns:
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"]
                                         if n["type"] != "cgroup"]
    seen = _applied(rootfs.plan(parse_spec(config), HYBRID), monkeypatch)
    assert seen.count("JOIN") == 1
    at = seen.index("JOIN")
    assert seen[at - 2:at + 2] == ["/sys", "/sys/fs/cgroup", "JOIN", "/sys/fs/cgroup/memory"]


def test_apply_without_cgroup_mounts_joins_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    config = default_spec()
    config["mounts"] = [m for m in config["mounts"] if m["type"] != "cgroup"]
    seen = _applied(rootfs.plan(parse_spec(config), HYBRID), monkeypatch)
    assert seen[-1] == "JOIN" and seen.count("JOIN") == 1
