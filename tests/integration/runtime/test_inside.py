"""What a process sees of its own world inside a container made from runc's default spec."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dockyard.linux.cgroupfs import host_hierarchies, is_pure_v2
from testbed.bundles import make_bundle
from testbed.images import BuiltImage
from tests.integration.runtime.conftest import DOCKYARD_RUNC, Runtime

pytestmark = pytest.mark.integration

PROBE = r"""
echo "pid=$$"
echo "hostname=$(hostname)"
grep -E '^Cap(Eff|Bnd|Amb)' /proc/self/status | tr -d '\t' | sed 's/:/=/'
grep '^NoNewPrivs' /proc/self/status | tr -d '\t' | sed 's/:/=/'
echo "nofile=$(ulimit -n)"
if touch /rootfs-write 2>/dev/null; then echo root=rw; else echo root=ro; fi
echo "timer_list=$(wc -c < /proc/timer_list) $(stat -c %t,%T /proc/timer_list)"
if echo 1 > /proc/sys/kernel/domainname 2>/dev/null; then echo procsys=rw; else echo procsys=ro; fi
echo "devnull=$(stat -c %t,%T /dev/null)"
echo "links=$(ls /sys/class/net | tr '\n' ' ')"
echo "maxpid=$(ls /proc | grep '^[0-9]' | sort -n | tail -1)"
echo "shm=$(stat -f -c %T /dev/shm)"
"""


def _probe(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> dict[str, str]:
    bundle = make_bundle(
        busybox,
        tmp_path / "b",
        runtime.binary,
        ["sh", "-c", PROBE],
        edit=lambda c: c.update(hostname="probe"),
    )
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle), "probe")
    assert rc == 0, err
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_default_spec_world(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> None:
    seen = _probe(runtime, busybox, tmp_path)
    assert seen["pid"] == "1"
    assert seen["hostname"] == "probe"
    # AUDIT_WRITE, KILL, NET_BIND_SERVICE
    assert seen["CapEff"] == "0000000020000420"
    assert seen["CapBnd"] == "0000000020000420"
    assert seen["NoNewPrivs"] == "1"
    assert seen["nofile"] == "1024"
    assert seen["root"] == "ro"
    assert seen["timer_list"] == "0 1,3"  # masked: /dev/null bound over it
    assert seen["procsys"] == "ro"  # read-only path
    assert seen["devnull"] == "1,3"
    assert seen["links"].split() == ["lo"]  # a network namespace of its own
    assert int(seen["maxpid"]) < 200  # a pid namespace of its own: only its own few
    assert int(seen["maxpid"]) < os.getpid()
    assert seen["shm"] == "tmpfs"


CGROUP_PROBE = "grep ' /sys/fs/cgroup' /proc/self/mountinfo | awk '{print $5, $(NF-2)}'"


def test_cgroup_view_on_hybrid_host(busybox: BuiltImage, tmp_path: Path) -> None:
    bundle = make_bundle(busybox, tmp_path / "b", DOCKYARD_RUNC, ["sh", "-c", CGROUP_PROBE])
    out = subprocess.run([DOCKYARD_RUNC, "--root", str(tmp_path / "root"), "run", "--bundle",
                          str(bundle), "cg"], capture_output=True, text=True, check=True).stdout
    seen = dict(line.split() for line in out.splitlines())
    host = {h.mountpoint.replace("/sys/fs/cgroup", "", 1): h.fstype
            for h in host_hierarchies()}
    if is_pure_v2(host_hierarchies()):
        assert seen == {"/sys/fs/cgroup": "cgroup2"}
    else:
        assert seen.pop("/sys/fs/cgroup") == "tmpfs"
        assert seen == {f"/sys/fs/cgroup{k}": v for k, v in host.items()}


def test_cgroup_view_on_pure_v2_host(busybox: BuiltImage, tmp_path: Path) -> None:
    """A pure cgroup v2 host, made in a private mount namespace: the v1 hierarchies are
    unmounted there and cgroup2 mounted at /sys/fs/cgroup, as on most distributions."""
    bundle = make_bundle(busybox, tmp_path / "b", DOCKYARD_RUNC, ["sh", "-c", CGROUP_PROBE])
    script = (f"umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && "
              f"exec {DOCKYARD_RUNC} --root {tmp_path / 'root'} run --bundle {bundle} cg")
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["/sys/fs/cgroup", "cgroup2"]


@pytest.mark.parametrize("joined", [("network", "ipc", "uts"), ("pid", "network", "ipc", "uts")])
def test_namespaces_joined_by_path(runtime: Runtime, busybox: BuiltImage, tmp_path: Path,
                                   joined: tuple[str, ...]) -> None:
    """A second container in the first one's namespaces (a pod). dockyard-runc's init joins
    them itself; a pid namespace joined by path goes through its middle child."""
    import json

    first = make_bundle(busybox, tmp_path / "first", runtime.binary, ["sleep", "300"],
                        edit=lambda c: c.update(hostname="first"))
    rc, _, err = runtime.run_to_files(tmp_path, "create", "--bundle", str(first), "first")
    assert rc == 0, err
    runtime.run("start", "first", check=True)
    pid = json.loads(runtime.run("state", "first", check=True).stdout)["pid"]

    def join(config: dict[str, object]) -> None:
        config.pop("hostname", None)
        linux = config["linux"]
        assert isinstance(linux, dict)
        for ns in linux["namespaces"]:
            if ns["type"] in joined:
                ns["path"] = f"/proc/{pid}/ns/{'net' if ns['type'] == 'network' else ns['type']}"

    probe = ("echo hostname=$(hostname); echo net=$(readlink /proc/self/ns/net); "
             "echo sleepers=$(ps -o comm | grep -c sleep)")
    second = make_bundle(busybox, tmp_path / "second", runtime.binary, ["sh", "-c", probe],
                         edit=join)
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(second), "second")
    assert rc == 0, err
    seen = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert seen["hostname"] == "first"
    assert seen["net"] == os.readlink(f"/proc/{pid}/ns/net")
    assert seen["sleepers"] == ("1" if "pid" in joined else "0")
    runtime.run("delete", "--force", "first", check=True)


def test_rlimits_unlimited_and_locks(runtime: Runtime, busybox: BuiltImage,
                                     tmp_path: Path) -> None:
    """OCI's RLIM_INFINITY is the kernel's unsigned 2**64-1 (what the engine writes for
    ``--ulimit core=-1``), and RLIMIT_LOCKS is a limit runc knows as well."""
    def edit(config: dict[str, Any]) -> None:
        config["process"]["rlimits"] += [
            {"type": "RLIMIT_CORE", "soft": 2**64 - 1, "hard": 2**64 - 1},
            {"type": "RLIMIT_LOCKS", "soft": 100, "hard": 200}]

    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary,
                         ["grep", "-E", "^Max (core file size|file locks)", "/proc/self/limits"],
                         edit=edit)
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle), "limits")
    assert rc == 0, err
    limits = {line[4:25].strip(): line[25:].split()[:2] for line in out.splitlines()}
    assert limits == {"core file size": ["unlimited", "unlimited"],
                      "file locks": ["100", "200"]}
